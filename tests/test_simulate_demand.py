"""demand_paths: the simulator's demand before the shelf censors it."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from demandsense.simulate import SimConfig, demand_paths, generate

CFG = SimConfig(stores=2, skus=80, days=6, seed=11)


def test_uncensored_demand_is_what_generate_sells_where_the_shelf_never_empties() -> None:
    dp, sim = demand_paths(CFG), generate(CFG)
    assert dp.items == sim.items
    index = {(it["store_id"], it["sku"]): i for i, it in enumerate(dp.items)}
    out = {(x["store_id"], x["sku"]) for x in sim.manifest["natural_stockouts"]}
    out |= {(x["store_id"], x["sku"]) for x in sim.labels if x["scenario"] in ("STOCKOUT", "PHANTOM_INVENTORY")}
    out |= {(x["store_id"], x["sku"]) for x in sim.manifest["unrealised_scenarios"]}
    sold: dict[int, list[tuple[int, int]]] = defaultdict(list)
    seen = set()
    for s in sim.sales:
        if s["event_id"] not in seen:
            seen.add(s["event_id"])
            sold[index[s["store_id"], s["sku"]]].append((s["event_time"], s["quantity"]))
    checked = 0
    for key, i in index.items():
        if key in out:
            continue
        m = dp.item == i
        assert sorted(sold[i]) == list(zip(dp.t[m].tolist(), dp.qty[m].tolist(), strict=True)), key
        checked += bool(m.any())
    assert checked > 50
    assert sum(sum(q for _, q in v) for v in sold.values()) <= int(dp.qty.sum())


def test_shapes_hourly_and_scenarios() -> None:
    dp = demand_paths(CFG)
    n = CFG.stores * CFG.skus
    assert len(dp.items) == len(dp.promo_price) == len(dp.promo_id) == n
    assert np.all(np.diff(dp.item) >= 0) and np.all((dp.t >= dp.start_ms) & (dp.t < dp.end_ms))
    h = dp.hourly()
    assert h.shape == (n, 6 * 24) and h.sum() == dp.qty.sum()
    assert {s["scenario"] for s in dp.scenarios} <= {"DEMAND_SPIKE", "DEMAND_DROP"} and dp.scenarios
    for sc in dp.scenarios:
        assert dp.items[sc["item"]]["sku"] == sc["sku"] and dp.items[sc["item"]]["store_id"] == sc["store_id"]
    assert demand_paths(CFG).t.tolist() == dp.t.tolist()  # deterministic
