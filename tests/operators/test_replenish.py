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
    "lead_mean": 96.0,
    "lead_variance": 150.0,
    "cycle_mean": 48.0,
    "service_level": 0.95,
    "pack_size": 6,
}


def reorder_point(**kw: float) -> float:
    args = BASE | kw
    z = NormalDist().inv_cdf(args["service_level"])
    return args["lead_mean"] + z * math.sqrt(args["lead_variance"])


def test_reorder_point_is_lead_time_demand_plus_safety_stock() -> None:
    plan = order_up_to(0, **BASE)  # type: ignore[arg-type]
    assert plan is not None
    assert plan.reorder_point == pytest.approx(96 + 1.6448536 * math.sqrt(150), abs=0.01)
    assert plan.reorder_point > 96  # safety stock on top of the mean
    assert plan.policy == ORDER_UP_TO and plan.fallback is False


def test_order_up_to_is_the_reorder_point_plus_the_cycle_demand() -> None:
    plan = order_up_to(0, **BASE)  # type: ignore[arg-type]
    assert plan is not None and plan.order_up_to == pytest.approx(plan.reorder_point + 48, abs=0.01)
    # the safety stock is held once: more variance raises S only as much as s
    wide = order_up_to(0, **(BASE | {"lead_variance": 600.0}))  # type: ignore[arg-type]
    assert wide is not None
    assert wide.order_up_to - wide.reorder_point == pytest.approx(48, abs=0.01)
    # a cycle shorter than a pack still leaves a pack of room above s
    small = order_up_to(0, **(BASE | {"cycle_mean": 2.0}))  # type: ignore[arg-type]
    assert small is not None and small.order_up_to == pytest.approx(small.reorder_point + 6, abs=0.01)


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
    assert points[0] == pytest.approx(96, abs=0.01)  # 50%: no safety stock


def test_more_variable_demand_gives_a_higher_reorder_point() -> None:
    points = []
    for var in (0.0, 96.0, 400.0, 2_000.0):
        plan = order_up_to(0, **(BASE | {"lead_variance": var}))  # type: ignore[arg-type]
        assert plan is not None
        points.append(plan.reorder_point)
    assert points[0] == pytest.approx(96, abs=0.01)  # no variance: no safety stock
    assert points == sorted(points) and len(set(points)) == len(points)


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


def test_govern_counts_units_in_good_english() -> None:
    rules = Governance(max_auto_qty=0, max_auto_value=500.0)
    assert govern(OrderPlan(1, 0, 1, ORDER_UP_TO, False), 3.4, Governance())[1] == (
        "1 unit worth 3.40 is within policy limits"
    )
    assert govern(OrderPlan(1, 0, 1, ORDER_UP_TO, False), 3.4, rules)[1].startswith("1 unit is over")
    assert govern(OrderPlan(2, 0, 2, ORDER_UP_TO, False), 3.4, Governance())[1].startswith("2 units worth 6.80")


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
