"""Replenishment: order-up-to with safety stock, static min-max fallback, and governance."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Final

from operators.policy import Governance

ORDER_UP_TO: Final = "order-up-to/v1"
STATIC_MIN_MAX: Final = "static-min-max/v1"


@dataclass(slots=True, init=False)
class OrderPlan:
    """What to order and why, before governance (a native class when compiled: see ``operators.events.Event``)."""

    order_quantity: int
    reorder_point: float
    order_up_to: float
    policy: str
    fallback: bool

    def __init__(
        self, order_quantity: int, reorder_point: float, order_up_to: float, policy: str, fallback: bool
    ) -> None:
        self.order_quantity, self.reorder_point, self.order_up_to = order_quantity, reorder_point, order_up_to
        self.policy, self.fallback = policy, fallback


def n_units(n: int) -> str:
    """``n`` with its noun, for reasons: "1 unit", "5 units"."""
    return f"{n} unit" if n == 1 else f"{n} units"


def round_to_pack(units: float, pack_size: int) -> int:
    """Whole packs covering ``units`` (0 when nothing is needed)."""
    if units <= 0:
        return 0
    return math.ceil(units / pack_size) * pack_size


def order_up_to(
    position: int,
    *,
    lead_mean: float,
    lead_variance: float,
    cycle_mean: float,
    service_level: float,
    pack_size: int,
) -> OrderPlan | None:
    """Continuous review (s, S): order when the position is at or below the reorder point.

    The reorder point ``s`` is lead-time demand plus safety stock, ``lead_mean + z * sqrt(lead_variance)``:
    under continuous review the stock is exposed only over the lead time. The order-up-to level
    ``S`` is ``s`` plus the demand of one review cycle (at least a pack above ``s``), so the order
    buys the cycle's stock and the safety stock is held once.
    """
    s = reorder_point(lead_mean, lead_variance, service_level)
    big_s = s + max(cycle_mean, pack_size)
    if position > s:
        return None
    qty = round_to_pack(big_s - position, pack_size)
    return OrderPlan(qty, round(s, 2), round(big_s, 2), ORDER_UP_TO, False) if qty > 0 else None


def reorder_point(lead_mean: float, lead_variance: float, service_level: float) -> float:
    """Lead-time demand plus safety stock: the ``s`` of :func:`order_up_to`."""
    return lead_mean + _z(service_level) * math.sqrt(max(lead_variance, 0.0))


@functools.lru_cache(maxsize=64)
def _z(service_level: float) -> float:
    """The standard normal quantile of ``service_level`` (memoised: few levels recur in every order)."""
    return NormalDist().inv_cdf(service_level)


def static_min_max(position: int, *, min_qty: int, max_qty: int, pack_size: int) -> OrderPlan | None:
    """The static rule retailers run today: at or below ``min_qty``, order up to ``max_qty``."""
    if position > min_qty:
        return None
    qty = round_to_pack(max_qty - position, pack_size)
    return OrderPlan(qty, float(min_qty), float(max_qty), STATIC_MIN_MAX, True) if qty > 0 else None


def govern(plan: OrderPlan, unit_cost: float, rules: Governance) -> tuple[str, str]:
    """AUTO_APPROVED within the quantity and value limits, NEEDS_REVIEW above them; with the reason."""
    value = plan.order_quantity * unit_cost
    if plan.order_quantity > rules.max_auto_qty:
        return "NEEDS_REVIEW", f"{n_units(plan.order_quantity)} is over the auto-approval limit of {rules.max_auto_qty}"
    if value > rules.max_auto_value:
        return "NEEDS_REVIEW", f"order value {value:.2f} is over the auto-approval limit of {rules.max_auto_value:.2f}"
    return "AUTO_APPROVED", f"{n_units(plan.order_quantity)} worth {value:.2f} is within policy limits"
