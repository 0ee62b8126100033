"""Replenishment: order-up-to with safety stock, static min-max fallback, governance."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest

from operators.policy import Governance
from operators.replenish import (
    ORDER_UP_TO,
    STATIC_MIN_MAX,
    OrderPlan,
    govern,
    order_up_to,
    round_to_pack,
    static_min_max,
)

BASE = {
    "rate_per_hour": 2.0,
    "variance_ratio": 1.5,
    "lead_time_hours": 48.0,
    "cycle_hours": 72.0,
    "service_level": 0.95,
    "pack_size": 6,
}


def reorder_point(**kw: float) -> float:
    args = BASE | kw
    mean_l = args["rate_per_hour"] * args["lead_time_hours"]
    z = NormalDist().inv_cdf(args["service_level"])
    return mean_l + z * math.sqrt(args["variance_ratio"] * mean_l)


def test_reorder_point_is_lead_time_demand_plus_safety_stock() -> None:
    plan = order_up_to(0, **BASE)  # type: ignore[arg-type]
    assert plan is not None
    assert plan.reorder_point == pytest.approx(reorder_point(), abs=0.01)
    assert plan.reorder_point > 2.0 * 48  # safety stock on top of the mean
    assert plan.order_up_to > plan.reorder_point
    assert plan.policy == ORDER_UP_TO and plan.fallback is False


def test_nothing_is_ordered_above_the_reorder_point() -> None:
    s = reorder_point()
    assert order_up_to(math.floor(s) + 1, **BASE) is None  # type: ignore[arg-type]
    assert order_up_to(10_000, **BASE) is None  # type: ignore[arg-type]
    assert order_up_to(math.floor(s), **BASE) is not None  # type: ignore[arg-type]


@pytest.mark.parametrize("pack", [1, 6, 12, 24])
@pytest.mark.parametrize("position", [-5, 0, 37, 100])
def test_orders_are_whole_packs_reaching_the_order_up_to_level(pack: int, position: int) -> None:
    plan = order_up_to(position, **(BASE | {"pack_size": pack}))  # type: ignore[arg-type]
    assert plan is not None
    assert plan.order_quantity % pack == 0
    assert position + plan.order_quantity >= plan.order_up_to - 0.01
    assert position + plan.order_quantity - pack < plan.order_up_to  # not a pack more than needed


def test_higher_service_level_gives_a_higher_reorder_point() -> None:
    levels = [0.5, 0.8, 0.9, 0.95, 0.99, 0.999]
    points = []
    for sl in levels:
        plan = order_up_to(0, **(BASE | {"service_level": sl}))  # type: ignore[arg-type]
        assert plan is not None
        points.append(plan.reorder_point)
    assert points == sorted(points) and len(set(points)) == len(points)
    assert points[0] == pytest.approx(2.0 * 48, abs=0.01)  # 50%: no safety stock


def test_more_variable_demand_gives_a_higher_reorder_point() -> None:
    low = order_up_to(0, **(BASE | {"variance_ratio": 1.0}))  # type: ignore[arg-type]
    high = order_up_to(0, **(BASE | {"variance_ratio": 4.0}))  # type: ignore[arg-type]
    assert low is not None and high is not None
    assert high.reorder_point > low.reorder_point


def test_round_to_pack() -> None:
    assert round_to_pack(0, 6) == 0
    assert round_to_pack(-3.5, 6) == 0
    assert round_to_pack(0.1, 6) == 6
    assert round_to_pack(6, 6) == 6
    assert round_to_pack(6.01, 6) == 12
    assert round_to_pack(13, 1) == 13


def test_static_min_max_fallback() -> None:
    assert static_min_max(5, min_qty=4, max_qty=24, pack_size=1) is None  # above min
    plan = static_min_max(4, min_qty=4, max_qty=24, pack_size=1)
    assert plan == OrderPlan(20, 4.0, 24.0, STATIC_MIN_MAX, True)
    plan = static_min_max(-2, min_qty=4, max_qty=24, pack_size=12)
    assert plan is not None
    assert plan.order_quantity == 36  # 26 units needed, in packs of 12
    assert plan.fallback and plan.policy == STATIC_MIN_MAX


def test_govern_auto_approves_within_limits() -> None:
    rules = Governance(max_auto_qty=100, max_auto_value=500.0)
    approval, reason = govern(OrderPlan(100, 10, 50, ORDER_UP_TO, False), 5.0, rules)  # exactly at both limits
    assert approval == "AUTO_APPROVED"
    assert "within policy limits" in reason


def test_govern_sends_over_quantity_orders_to_review() -> None:
    rules = Governance(max_auto_qty=100, max_auto_value=1e9)
    approval, reason = govern(OrderPlan(101, 10, 50, ORDER_UP_TO, False), 0.01, rules)
    assert approval == "NEEDS_REVIEW"
    assert "101 units" in reason and "100" in reason


def test_govern_sends_over_value_orders_to_review() -> None:
    rules = Governance(max_auto_qty=1000, max_auto_value=500.0)
    approval, reason = govern(OrderPlan(60, 10, 50, ORDER_UP_TO, False), 9.0, rules)
    assert approval == "NEEDS_REVIEW"
    assert "540.00" in reason and "500.00" in reason
