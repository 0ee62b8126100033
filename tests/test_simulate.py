"""The simulator: determinism, contract-valid records, demand shape, scenarios, noise, files."""

from __future__ import annotations

import json
import random
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest

from demandsense.errors import ConfigError
from demandsense.serde import iso_from_ms
from demandsense.simulate import SimConfig, Simulation, _Iso, generate, write_files
from demandsense.validate import to_inventory, to_item_params, to_sale

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
SMALL = SimConfig(stores=2, skus=60, days=3, seed=7)
MID = SimConfig(stores=5, skus=400, days=7, seed=42)


@pytest.fixture(scope="module")
def mid() -> Simulation:
    return generate(MID)


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def sales_by_item(sim: Simulation) -> dict[tuple[str, str], list[dict]]:
    seen, out = set(), defaultdict(list)
    for s in sim.sales:
        if s["event_id"] not in seen:
            seen.add(s["event_id"])
            out[(s["store_id"], s["sku"])].append(s)
    return out


def test_same_seed_same_output_and_different_seed_differs() -> None:
    a, b = generate(SMALL), generate(SMALL)
    assert list(a.sales) == list(b.sales)
    assert list(a.inventory) == list(b.inventory)
    assert (a.items, a.labels, a.manifest) == (b.items, b.labels, b.manifest)
    c = generate(SimConfig(stores=2, skus=60, days=3, seed=8))
    assert [(s["event_time"], s["sku"]) for s in c.sales] != [(s["event_time"], s["sku"]) for s in a.sales]
    assert a.sales[0]["event_id"] != c.sales[0]["event_id"]  # ids differ between configs


def test_every_record_validates(mid: Simulation) -> None:
    now = max(r["event_time"] for r in mid.sales) + DAY_MS
    sales = [to_sale(r, now) for r in mid.sales]
    inventory = [to_inventory(r, now) for r in mid.inventory]
    items = [to_item_params(r, now) for r in mid.items]
    assert len(sales) > 10_000 and len(inventory) > 5_000 and len(items) == MID.stores * MID.skus
    assert {s.channel for s in sales} == {"STORE", "ONLINE", "PICKUP", "MARKETPLACE"}
    assert {i.event_type for i in inventory} >= {"SNAPSHOT", "RECEIPT", "SHRINK", "RETURN", "ADJUSTMENT"}
    dupes = len(sales) - len({s.event_id for s in sales})
    assert dupes == mid.manifest["counts"]["sales_noise"]["duplicates"]  # only the intended duplicates
    assert len({i.event_id for i in inventory}) == len(inventory)
    start = int(MID.start.timestamp() * 1000)
    assert all(start <= r.event_time < start + MID.days * DAY_MS for r in [*sales, *inventory])


def test_items_are_plausible_master_data(mid: Simulation) -> None:
    for it in mid.items:
        assert 0.55 * it["unit_price"] - 0.01 <= it["unit_cost"] <= 0.70 * it["unit_price"] + 0.01
        assert 24 <= it["lead_time_hours"] <= 96
        assert 0 < it["min_qty"] < it["max_qty"]
    assert 8 <= len({it["category"] for it in mid.items}) <= 12
    assert all(len(it["sku"]) == 10 and it["sku"][3] == "-" for it in mid.items)


def test_long_tail(mid: Simulation) -> None:
    units: Counter[tuple[str, str]] = Counter()
    for key, lines in sales_by_item(mid).items():
        units[key] = sum(s["quantity"] for s in lines)
    per_day = [units[(it["store_id"], it["sku"])] / MID.days for it in mid.items]
    assert statistics.median(per_day) < 1.0  # most items sell under a unit a day
    assert max(per_day) / 14 > 10  # and the top one dozens an open hour (14-16 open hours)
    assert sum(d == 0 for d in per_day) > 0.2 * len(per_day)  # intermittent: many never sell in a week


def test_no_store_sales_when_closed_but_online_at_night(mid: Simulation) -> None:
    hours: defaultdict[str, set[int]] = defaultdict(set)
    night_remote = 0
    for s in mid.sales:
        h = s["event_time"] // HOUR_MS % 24
        if s["channel"] == "STORE":
            hours[s["store_id"]].add(h)
        elif h < 6:
            night_remote += 1
    for store, seen in hours.items():
        assert seen <= set(range(8, 22)) or seen <= set(range(7, 23)), store
        assert min(seen) >= 7 and max(seen) <= 22
    assert night_remote > 0


def test_weekend_and_intraday_shape(mid: Simulation) -> None:
    by_day, by_hour = Counter(), Counter()
    for s in mid.sales:
        by_day[s["event_time"] // DAY_MS] += s["quantity"]
        by_hour[s["event_time"] // HOUR_MS % 24] += s["quantity"]
    days = [by_day[d] for d in sorted(by_day)]  # Monday..Sunday
    assert days[5] > 1.1 * statistics.mean(days[:4])  # Saturday over the early weekdays
    assert by_hour[12] > by_hour[9] and by_hour[18] > by_hour[15]  # lunch and after-work peaks


def test_promotions_cut_the_price(mid: Simulation) -> None:
    price = {(it["store_id"], it["sku"]): it["unit_price"] for it in mid.items}
    promo = [s for s in mid.sales if s["promo_id"] is not None]
    assert promo and len(mid.manifest["promotions"]) == round(MID.promo_rate * MID.skus)
    assert all(s["unit_price"] < price[(s["store_id"], s["sku"])] for s in promo)
    assert all(s["unit_price"] == price[(s["store_id"], s["sku"])] for s in mid.sales if s["promo_id"] is None)


def test_labels_cover_each_scenario(mid: Simulation) -> None:
    kinds = Counter(x["scenario"] for x in mid.labels)
    assert set(kinds) == {"DEMAND_SPIKE", "DEMAND_DROP", "STOCKOUT", "PHANTOM_INVENTORY"}
    assert kinds["DEMAND_SPIKE"] == round(MID.scenario_rate * MID.stores * MID.skus)
    warm_end = int(MID.start.timestamp() * 1000) + 2 * DAY_MS
    for x in mid.labels:
        assert ms(x["start"]) >= warm_end
        assert x["baseline_rate_per_hour"] > 0
        assert x["expected_alert"]
    assert len({(x["store_id"], x["sku"]) for x in mid.labels}) == len(mid.labels)  # one scenario per item


def test_spikes_sell_well_above_baseline_and_drops_below(mid: Simulation) -> None:
    lines = sales_by_item(mid)
    observed = expected = 0.0
    for x in (x for x in mid.labels if x["scenario"] == "DEMAND_SPIKE"):
        a, b = ms(x["start"]), ms(x["end"])
        observed += sum(s["quantity"] for s in lines[(x["store_id"], x["sku"])] if a <= s["event_time"] < b)
        expected += x["baseline_rate_per_hour"] * (b - a) / HOUR_MS
    assert observed > 2 * expected
    before = after = 0.0
    for x in (x for x in mid.labels if x["scenario"] == "DEMAND_DROP"):
        t0 = ms(x["start"])
        sold = [s for s in lines[(x["store_id"], x["sku"])]]
        span_before = (t0 - int(MID.start.timestamp() * 1000)) / HOUR_MS
        span_after = (int(MID.start.timestamp() * 1000) + MID.days * DAY_MS - t0) / HOUR_MS
        before += sum(s["quantity"] for s in sold if s["event_time"] < t0) / span_before
        after += sum(s["quantity"] for s in sold if s["event_time"] >= t0) / span_after
    assert after < 0.5 * before


def test_stockout_and_phantom_items_stop_selling(mid: Simulation) -> None:
    lines = sales_by_item(mid)
    snapshots = defaultdict(list)
    for r in mid.inventory:
        if r["event_type"] == "SNAPSHOT":
            snapshots[(r["store_id"], r["sku"])].append(r)
    checked = 0
    for x in (x for x in mid.labels if x["scenario"] in ("STOCKOUT", "PHANTOM_INVENTORY")):
        key, t0 = (x["store_id"], x["sku"]), ms(x["start"])
        assert any(s["event_time"] < t0 for s in lines[key])  # it sold before
        assert not [s for s in lines[key] if s["event_time"] > t0]  # and nothing after
        later = [r["on_hand"] for r in snapshots[key] if r["event_time"] > t0]  # none after the last opening
        checked += bool(later)
        if x["scenario"] == "PHANTOM_INVENTORY":
            assert all(n > 0 for n in later)  # the books still show stock
        else:
            assert all(n == 0 for n in later) and ms(x["risk_from"]) < t0
    assert checked > 10


def test_replenishment_keeps_normal_items_in_stock(mid: Simulation) -> None:
    assert len(mid.manifest["natural_stockouts"]) < 0.02 * len(mid.items)
    assert mid.manifest["counts"]["inventory_by_type"]["RECEIPT"] > 0.2 * len(mid.items)


def test_noise_rates_roughly_as_configured() -> None:
    cfg = SimConfig(stores=3, skus=300, days=4, seed=3, duplicate_rate=0.03, disorder_rate=0.03, late_rate=0.01)
    sim = generate(cfg)
    n = len(sim.sales)
    ids = Counter(s["event_id"] for s in sim.sales)
    dup = sum(c - 1 for c in ids.values()) / n
    high = late = 0
    for s in sim.sales:
        late += s["event_time"] < high - 10 * 60_000
        high = max(high, s["event_time"])
    disordered = sum(a["event_time"] > b["event_time"] for a, b in zip(sim.sales[:-1], sim.sales[1:], strict=True))
    assert 0.02 < dup < 0.04
    assert 0.004 < late / n < 0.015  # some late records land in quiet night hours, unnoticeable
    assert 0.02 < disordered / n < 0.06
    assert sim.manifest["counts"]["sales_noise"]["late"] == pytest.approx(0.01 * n, rel=0.3)


def test_without_noise_arrival_is_event_time_order() -> None:
    sim = generate(SimConfig(stores=2, skus=60, days=3, duplicate_rate=0, disorder_rate=0, late_rate=0))
    for records in (sim.sales, sim.inventory):
        times = [r["event_time"] for r in records]
        assert times == sorted(times)
        assert len({r["event_id"] for r in records}) == len(records)


def test_write_files(tmp_path) -> None:
    sim = generate(SMALL)
    paths = write_files(sim, tmp_path / "out")
    assert {p.name for p in paths.values()} == {
        "sales.jsonl",
        "inventory.jsonl",
        "items.jsonl",
        "labels.jsonl",
        "manifest.json",
    }
    sales = [json.loads(line) for line in paths["sales"].read_text().splitlines()]
    assert len(sales) == len(sim.sales)
    first = sim.sales[0]
    assert sales[0] == first | {"event_time": iso_from_ms(first["event_time"])}
    assert len(paths["inventory"].read_text().splitlines()) == len(sim.inventory)
    assert len(paths["items"].read_text().splitlines()) == len(sim.items)
    labels = [json.loads(line) for line in paths["labels"].read_text().splitlines()]
    assert labels == sim.labels and {x["scenario"] for x in labels} >= {"DEMAND_SPIKE", "DEMAND_DROP"}
    manifest = json.loads(paths["manifest"].read_text())
    assert manifest["seed"] == SMALL.seed and manifest["counts"]["sales"] == len(sim.sales)


def test_fast_iso_matches_serde() -> None:
    iso, rng = _Iso(), random.Random(1)
    base = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp() * 1000)
    for t in [base, base + 59_999, base + 60_000, *(base + rng.randrange(40 * DAY_MS) for _ in range(2000))]:
        assert iso(t) == iso_from_ms(t)


@pytest.mark.parametrize(
    "bad",
    [{"stores": 0}, {"days": 0}, {"duplicate_rate": 1.5}, {"categories": 13}, {"start": datetime(2026, 3, 2)}],  # noqa: DTZ001
)
def test_bad_config_is_refused(bad: dict) -> None:
    with pytest.raises(ConfigError):
        generate(SimConfig(**bad))
