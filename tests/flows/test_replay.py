"""`demandsense replay` end to end over JSONL and Avro container files: scenarios, governance, dead letters."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fastavro
import pytest

from demandsense.cli import main
from demandsense.evaluate import score
from demandsense.serde import iso_from_ms, schema_json
from demandsense.simulate import SimConfig, generate, write_files

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
DAY3 = T0 + timedelta(days=3, hours=10)  # scenarios start Thursday 10:00


def _sales_for(sku: str, rng: random.Random, rate_at) -> list[dict]:
    """Poisson sale lines over 6 days of 08-22 opening, ``rate_at(t)`` lines per hour."""
    out, t = [], T0 + timedelta(hours=8)
    end = T0 + timedelta(days=6)
    while t < end:
        rate = rate_at(t) if 8 <= t.hour < 22 else 0.0
        if rate <= 0:  # closed or silent: move on to the next hour
            t = t.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            continue
        t += timedelta(hours=rng.expovariate(rate))
        if 8 <= t.hour < 22 and t < end:
            out.append({"sku": sku, "t": t})
    return out


def _scenarios(d: Path, *, shuffle: bool = False) -> None:
    rng = random.Random(42)
    stock = {"STEADY": 10_000, "SPIKE": 10_000, "DROP": 10_000, "PHANTOM": 10_000, "SELLS-OUT": 400, "NEWBIE": 3}
    rates = {
        "STEADY": lambda t: 10.0,
        "SPIKE": lambda t: 40.0 if DAY3 <= t < DAY3 + timedelta(hours=2) else 8.0,
        "DROP": lambda t: 3.0 if t >= DAY3 else 20.0,
        "PHANTOM": lambda t: 0.0 if t >= DAY3 else 10.0,
        "SELLS-OUT": lambda t: 10.0,
        "NEWBIE": lambda t: 0.0,
    }
    lines = [s for sku, f in rates.items() for s in _sales_for(sku, rng, f)]
    lines.sort(key=lambda s: s["t"])
    sold = Counter()
    sales = []
    for i, s in enumerate(lines):
        if s["sku"] == "SELLS-OUT" and sold["SELLS-OUT"] >= stock["SELLS-OUT"]:
            continue  # an empty shelf sells nothing
        sold[s["sku"]] += 1
        sales.append(
            {"event_id": f"s{i}", "event_time": iso_from_ms(int(s["t"].timestamp() * 1000)), "store_id": "S1",
             "sku": s["sku"], "channel": "STORE", "quantity": 1, "unit_price": 4.0, "promo_id": None}
        )  # fmt: skip
    if shuffle:  # arrival out of order, within two minutes: less than the allowed lateness
        keyed = [(datetime.fromisoformat(s["event_time"].replace("Z", "+00:00")).timestamp() + rng.uniform(0, 120), s)
                 for s in sales]  # fmt: skip
        sales = [s for _, s in sorted(keyed, key=lambda x: x[0])]
    inventory = [
        {"event_id": f"i-{sku}", "event_time": iso_from_ms(int(T0.timestamp() * 1000)), "store_id": "S1", "sku": sku,
         "event_type": "SNAPSHOT", "quantity": 0, "on_hand": n, "in_transit": 0}
        for sku, n in stock.items()
    ]  # fmt: skip
    items = [
        {"store_id": "S1", "sku": sku, "unit_price": 4.0, "unit_cost": 2.5, "lead_time_hours": 24,
         "service_level": 0.95, "pack_size": 100 if sku == "SELLS-OUT" else 1, "min_qty": 5, "max_qty": 20}
        for sku in stock
    ]  # fmt: skip
    for name, rows in (("sales", sales), ("inventory", inventory), ("items", items)):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _replay(d: Path, *extra: str, suffix: str = ".jsonl") -> tuple[list[dict], list[dict], list[dict]]:
    outs = {k: d / f"out-{k}.jsonl" for k in ("alerts", "triggers", "dead")}
    args = ["replay", "--sales", str(d / f"sales{suffix}"), "--alerts-out", str(outs["alerts"]),
            "--triggers-out", str(outs["triggers"]), "--dead-letter-out", str(outs["dead"])]  # fmt: skip
    for name in ("inventory", "items"):
        if (d / f"{name}{suffix}").exists():
            args += [f"--{name}", str(d / f"{name}{suffix}")]
    assert main([*args, *extra]) == 0
    return tuple([json.loads(x) for x in p.read_text().splitlines()] for p in outs.values())  # type: ignore[return-value]


def _opened(alerts: list[dict], sku: str) -> list[tuple[str, datetime]]:
    return [
        (a["alert_type"], datetime.fromisoformat(a["event_time"].replace("Z", "+00:00")))
        for a in alerts
        if a["sku"] == sku and a["status"] == "OPEN"
    ]


@pytest.fixture(scope="module")
def obvious(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], list[dict], list[dict]]:
    d = tmp_path_factory.mktemp("obvious")
    _scenarios(d)
    policy = d / "policy.toml"
    policy.write_text("[governance]\nmax_auto_qty = 150\n")
    return _replay(d, "--policy", str(policy))


def _first(alerts: list[dict], sku: str, kind: str) -> datetime:
    times = [t for k, t in _opened(alerts, sku) if k == kind]
    assert times, f"no {kind} for {sku}: {_opened(alerts, sku)}"
    return times[0]


def test_spike_is_raised_within_the_spike(obvious) -> None:
    t = _first(obvious[0], "SPIKE", "DEMAND_SPIKE")
    assert DAY3 <= t <= DAY3 + timedelta(minutes=45)


def test_drop_is_raised_within_hours(obvious) -> None:
    t = _first(obvious[0], "DROP", "DEMAND_DROP")
    assert DAY3 <= t <= DAY3 + timedelta(hours=3)
    # the first silences of a drop look like an empty shelf; once the drop is seen, no phantom stays open
    phantom = [a for a in obvious[0] if a["sku"] == "DROP" and a["alert_type"] == "PHANTOM_INVENTORY"]
    assert all(a["status"] == "RESOLVED" for a in phantom[1::2]) and len(phantom) % 2 == 0


def test_phantom_inventory_when_sales_stop_with_stock_on_the_books(obvious) -> None:
    t = _first(obvious[0], "PHANTOM", "PHANTOM_INVENTORY")
    assert DAY3 <= t <= DAY3 + timedelta(hours=2)


def test_stockout_risk_comes_before_out_of_stock_and_a_trigger_before_both(obvious) -> None:
    alerts, triggers, _ = obvious
    risk, out = _first(alerts, "SELLS-OUT", "STOCKOUT_RISK"), _first(alerts, "SELLS-OUT", "OUT_OF_STOCK")
    assert risk <= out - timedelta(hours=1)
    first_trigger = min(t["event_time"] for t in triggers if t["sku"] == "SELLS-OUT")
    assert datetime.fromisoformat(first_trigger.replace("Z", "+00:00")) < risk


def test_a_stationary_item_raises_no_rate_alerts(obvious) -> None:
    assert not [k for k, _ in _opened(obvious[0], "STEADY") if k != "STOCKOUT_RISK"]


def test_governance_routes_large_orders_to_review_and_new_items_to_the_fallback(obvious) -> None:
    _, triggers, _ = obvious
    large = [t for t in triggers if t["sku"] == "SELLS-OUT" and t["order_quantity"] > 150]
    assert large and all(t["approval"] == "NEEDS_REVIEW" and "150" in t["approval_reason"] for t in large)
    assert all(t["order_quantity"] % 100 == 0 for t in triggers if t["sku"] == "SELLS-OUT")  # whole packs
    newbie = [t for t in triggers if t["sku"] == "NEWBIE"]
    assert newbie and all(t["fallback"] and t["policy"] == "static-min-max/v1" for t in newbie)
    model = [t for t in triggers if not t["fallback"]]
    assert model and all(t["policy"] == "order-up-to/v1" and t["model_version"] for t in model)


def test_out_of_order_arrival_within_the_lateness_gives_the_same_alerts(obvious, tmp_path: Path) -> None:
    _scenarios(tmp_path, shuffle=True)
    policy = tmp_path / "policy.toml"
    policy.write_text("[governance]\nmax_auto_qty = 150\n")
    alerts, triggers, dead = _replay(tmp_path, "--policy", str(policy))
    assert not dead
    assert [a["alert_id"] for a in alerts] == [a["alert_id"] for a in obvious[0]]
    assert [t["trigger_id"] for t in triggers] == [t["trigger_id"] for t in obvious[1]]


def test_the_low_latency_setting_gives_the_same_alerts_on_ordered_input(obvious, tmp_path: Path) -> None:
    """Partition progress and zero lateness change when a store applies an event, not what it decides."""
    _scenarios(tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text(
        "[detection]\nallowed_lateness_s = 0.0\nstream_idle_s = 0.25\npartition_progress = true\n"
        "[governance]\nmax_auto_qty = 150\n"
    )
    alerts, triggers, dead = _replay(tmp_path, "--policy", str(policy))
    assert not dead
    assert [a["alert_id"] for a in alerts] == [a["alert_id"] for a in obvious[0]]
    assert [t["trigger_id"] for t in triggers] == [t["trigger_id"] for t in obvious[1]]


def _as_avro_containers(d: Path, *, extra_sales: tuple[dict, ...] = ()) -> None:
    """``<name>.avro`` (Avro object container, the contract's schema) beside each ``<name>.jsonl`` of ``d``."""
    for name, kind in (("sales", "Sale"), ("inventory", "InventoryEvent"), ("items", "ItemParams")):
        rows = [json.loads(line) for line in (d / f"{name}.jsonl").read_text().splitlines()]
        for r in rows:
            if "event_time" in r:
                r["event_time"] = datetime.fromisoformat(r["event_time"].replace("Z", "+00:00"))
        rows += list(extra_sales) if kind == "Sale" else []
        with (d / f"{name}.avro").open("wb") as f:
            fastavro.writer(f, fastavro.parse_schema(schema_json(kind)), rows)


def test_avro_container_files_give_the_same_outputs_as_jsonl(obvious, tmp_path: Path) -> None:
    _scenarios(tmp_path)
    negative = {"event_id": "neg", "event_time": DAY3, "store_id": "S1", "sku": "STEADY", "channel": "STORE",
                "quantity": -3, "unit_price": 4.0, "promo_id": None}  # fmt: skip
    _as_avro_containers(tmp_path, extra_sales=(negative,))
    policy = tmp_path / "policy.toml"
    policy.write_text("[governance]\nmax_auto_qty = 150\n")
    alerts, triggers, dead = _replay(tmp_path, "--policy", str(policy), suffix=".avro")
    assert [a["alert_id"] for a in alerts] == [a["alert_id"] for a in obvious[0]]
    assert [t["trigger_id"] for t in triggers] == [t["trigger_id"] for t in obvious[1]]
    (bad,) = dead  # the record after the last sale: its number in the file is its offset
    sales = len((tmp_path / "sales.jsonl").read_text().splitlines())
    assert (bad["stage"], bad["source_topic"], bad["offset"]) == ("validate", str(tmp_path / "sales.avro"), sales + 1)
    assert "quantity" in bad["error"] and json.loads(bad["raw"])["event_id"] == "neg"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("sim")
    sim = generate(SimConfig(stores=4, skus=250, days=10, seed=1))
    write_files(sim, d)
    alerts, triggers, dead = _replay(d)
    return sim, alerts, triggers, dead


def test_simulated_scenarios_are_detected_with_few_false_alarms(simulated) -> None:
    sim, alerts, _, _ = simulated
    scores, false_alarms = score(sim.labels, alerts)
    assert scores["STOCKOUT"].recall >= 0.9
    assert scores["DEMAND_SPIKE"].recall >= 0.4
    assert scores["PHANTOM_INVENTORY"].recall >= 0.5
    assert scores["DEMAND_DROP"].detected >= 1
    key_days = 4 * 250 * 10
    assert 1000 * sum(false_alarms.values()) / key_days <= 20


def test_late_and_duplicate_records_are_accounted_for(simulated) -> None:
    sim, _, _, dead = simulated
    late = [d for d in dead if d["stage"] == "late"]
    assert all(d["reason"] == "late" and "behind the watermark" in d["error"] for d in late)
    lines = {p: Path(p).read_text().splitlines() for p in {d["source_topic"] for d in late}}
    assert late and all(d["raw"] == lines[d["source_topic"]][d["offset"] - 1] for d in late)  # the line as it came
    assert len(late) <= sim.manifest["noise"]["late"] if "noise" in sim.manifest else True
    assert not [d for d in dead if d["stage"] != "late"]  # the simulator writes only valid records
