"""The closed-loop business benchmark's pure pieces: ledger, arrival times, order rules, matching."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench import business as B
from operators.policy import Policy

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
START = 1_772_409_600_000  # 2026-03-02 00:00 UTC


def ledger(shelf: list[int], hours: int = 48, **kw: object) -> B.Ledger:
    return B.Ledger(np.array(shelf), hours, **kw)  # type: ignore[arg-type]


def test_a_sale_needs_stock_and_the_rest_is_lost() -> None:
    led = ledger([5, 0, 3], price=np.full((3, 48), 2.0), cost=np.ones(3))
    led.receive(0)
    sold = led.sell(0, np.array([3, 4, 7]))
    assert sold.tolist() == [3, 0, 3]
    assert led.shelf.tolist() == [2, 0, 0]
    led.end_hour(0)
    s = led.score
    assert (s["demand"], s["sold"], s["lost"], s["lost_value"]) == (14, 6, 8, 16.0)
    assert s["stockout_hours"] == 2 and s["inv_units"] == 2 and s["inv_value"] == 2.0
    m = B.metrics(s)
    assert m["fill_rate"] == pytest.approx(6 / 14) and m["lost_units"] == 8


def test_orders_arrive_at_their_hour_and_count_on_order_until_then() -> None:
    led = ledger([0, 0])
    led.place(0, np.array([6, 0]), np.array([24, 1]))
    assert led.on_order.tolist() == [6, 0] and led.position().tolist() == [6, 0]
    for h in range(24):
        assert led.receive(h).tolist() == [0, 0]
        assert led.sell(h, np.array([1, 1])).tolist() == [0, 0]  # nothing on the shelf yet: all lost
    assert led.receive(24).tolist() == [6, 0]
    assert led.shelf.tolist() == [6, 0] and led.on_order.tolist() == [0, 0]
    assert led.sell(24, np.array([2, 0])).tolist() == [2, 0]
    assert led.score["lost"] == 48 and led.score["orders"] == 1 and led.score["order_units"] == 6


def test_orders_beyond_the_run_never_arrive_and_scoring_starts_at_score_from() -> None:
    led = ledger([1], hours=4, score_from=2)
    led.place(0, np.array([3]), np.array([99]))
    for h in range(4):
        led.receive(h)
        led.sell(h, np.array([1]))
        led.end_hour(h)
    assert led.shelf.tolist() == [0] and led.on_order.tolist() == [3]
    assert led.score["hours"] == 2 and led.score["demand"] == 2 and led.score["lost"] == 2
    assert led.score["orders"] == 0  # placed before scoring started


def test_fill_rate_arithmetic_over_hours() -> None:
    led = ledger([10])
    for h, d in enumerate([4, 4, 4, 4]):  # 10 on the shelf, 16 asked for
        led.receive(h)
        led.sell(h, np.array([d]))
        led.end_hour(h)
    m = B.metrics(led.score)
    assert m["fill_rate"] == pytest.approx(10 / 16) and m["lost_units"] == 6
    assert m["avg_inv_units"] == pytest.approx((6 + 2 + 0 + 0) / 4)
    assert m["stockout_hours"] == 2


def test_stockout_hours_count_open_hours_only() -> None:
    mask = np.zeros((1, 48), bool)
    mask[0, 8:22] = True
    led = ledger([0], open_mask=mask)
    for h in range(24):
        led.end_hour(h)
    assert led.score["stockout_hours"] == 14 and B.metrics(led.score)["stockout_pct"] == 100


def test_arrival_after_the_lead_time_put_away_at_opening() -> None:
    lead, open_h, close_h = np.array([24.0, 24.0, 48.0]), np.array([8, 8, 8]), np.array([22, 22, 22])
    # ordered at 10:00 day 0: arrives 10:00 day 1 (hour 34) or day 2 (hour 58)
    assert B.arrival_hours(START + 10 * HOUR_MS, lead, open_h, close_h, START).tolist() == [34, 34, 58]
    # ordered at 23:00: arrives 23:00 the next day, after closing: on the shelf at 08:00 the day after
    assert B.arrival_hours(START + 23 * HOUR_MS, lead[:1], open_h[:1], close_h[:1], START).tolist() == [56]
    # ordered at 03:30: arrives 03:30, before opening: 08:00 the same day
    at = B.arrival_hours(START + 3 * HOUR_MS + HOUR_MS // 2, lead[:1], open_h[:1], close_h[:1], START)
    assert at.tolist() == [24 + 8]
    # mid-hour arrival counts from the next whole hour
    assert B.arrival_hours(START + 10 * HOUR_MS + 1, lead[:1], open_h[:1], close_h[:1], START).tolist() == [35]


def test_round_up_packs() -> None:
    assert B.round_up_packs(np.array([0.0, -3.0, 0.2, 6.0, 6.5, 13.0]), np.array([6, 6, 6, 6, 6, 1])).tolist() == [
        0, 0, 6, 6, 12, 13,
    ]  # fmt: skip


def test_static_min_max_levels_from_the_first_weeks_sales() -> None:
    daily = np.array([[10, 10, 10, 10], [0, 0, 0, 0], [2, 6, 2, 6]])
    lead, pack = np.array([48.0, 24.0, 24.0]), np.array([1, 4, 1])
    mn, mx = B.static_min_max_levels(daily, lead, pack, z=0.0, cycle_days=3)
    assert mn.tolist() == [20, 0, 4] and mx.tolist() == [50, 4, 16]
    mn2, _ = B.static_min_max_levels(daily, lead, pack, z=2.0, cycle_days=3)
    # item 0: Poisson floor (ratio 1): 20 + 2 sqrt(20); item 2: variance 16/3 over mean 4
    assert mn2.tolist() == [math.ceil(20 + 2 * math.sqrt(20)), 0, math.ceil(4 + 2 * math.sqrt(16 / 3 / 4 * 4))]


def test_min_max_orders_up_to_max_in_packs_at_or_below_min() -> None:
    position, mn, mx = np.array([5, 4, 0, 9]), np.array([4, 4, 0, 4]), np.array([10, 10, 1, 10])
    q = B.min_max_orders(position, mn, mx, np.array([1, 3, 6, 1]))
    assert q.tolist() == [0, 6, 6, 0]


def test_daily_batch_orders_up_to_forecast_over_lead_and_review() -> None:
    history = np.array([[7] * 14, [0] * 14, [0] * 7 + [14] * 7])
    lead, pack = np.array([48.0, 24.0, 24.0]), np.array([1, 1, 5])
    q = B.daily_batch_orders(np.array([10, 0, 30]), history, lead, pack, z=0.0)
    # item 0: 7/day x 3 days = 21 - 10; item 1: at least one unit on the shelf; item 2: last 7 days only: 28 - 30
    assert q.tolist() == [11, 1, 0]
    assert B.daily_batch_orders(np.array([1]), history[1:2], lead[1:2], pack[1:2], z=0.0).tolist() == [0]


def test_variance_ratio_is_at_least_poisson() -> None:
    r = B.variance_ratio(np.array([[5, 5, 5, 5], [0, 0, 0, 0], [0, 10, 0, 10]]))
    assert r[0] == 1 and r[1] == 1 and r[2] == pytest.approx((100 / 3) / 5)


def test_interpolation_at_matched_inventory() -> None:
    curve = {0.9: {"avg_inv_value": 100.0, "lost_units": 50.0}, 0.99: {"avg_inv_value": 200.0, "lost_units": 10.0}}
    m = B.at_inventory(curve, 150.0)
    assert m["lost_units"] == pytest.approx(30) and m["level"] == pytest.approx(0.945)
    assert math.isnan(B.at_inventory(curve, 250.0)["lost_units"])
    rows = {
        "demandsense": {"lost_units": 30.0, "lost_value": 60.0},
        "static min-max": {"lost_units": 60.0, "lost_value": 100.0},
        "daily batch": {"lost_units": 40.0, "lost_value": 70.0},
    }
    met, text = B.verdict(rows)
    assert met and "0.50x (50% fewer than)" in text
    rows["daily batch"]["lost_units"] = 35.0
    assert not B.verdict(rows)[0]


def test_closed_loop_end_to_end_small() -> None:
    setup = B.Setup(1, 40, 17, (3,), (0.95,))
    curves = B.sweep(setup, log=lambda _: None)
    for p in B.POLICIES:
        m = curves[p][0.95]
        assert m["demand_units"] > 0 and 0.5 < m["fill_rate"] <= 1 and m["avg_inv_units"] > 0
        assert m["lost_units"] == pytest.approx(m["demand_units"] * (1 - m["fill_rate"]))
    assert curves["demandsense"][0.95]["triggers"] > 0


def test_what_if_parses_its_variants() -> None:
    assert B.WhatIf.parse("day-cv2=0.25,cycle=24") == B.WhatIf(0.25, 24.0)
    assert B.WhatIf.parse("cycle=24").policy().items.cycle_hours == 24
    assert B.WhatIf.parse("day-cv2=0").label() == "day-to-day CV\u00b2 fixed at 0"
    for spec in ("faster", "lean-S", "day-dispersion"):
        with pytest.raises(ValueError, match="unknown what-if"):
            B.WhatIf.parse(spec)


def test_what_if_is_installed_only_inside_the_context() -> None:
    from operators.item import ItemState

    item = ItemState(0)
    learned = item.day_cv2()
    with B.WhatIf(day_cv2=0.6).installed() as policy:
        assert item.day_cv2() == 0.6 and policy.items.cycle_hours == Policy().items.cycle_hours
    assert item.day_cv2() == learned
    with B.WhatIf(cycle_hours=12).installed() as policy:
        assert item.day_cv2() == learned and policy.items.cycle_hours == 12
