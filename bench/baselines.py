"""Baselines for the detection benchmark: the nightly rules retailers run today, and River's drift detectors.

Pure functions over one item's series; no simulator, files or clocks. The benchmark
(:mod:`bench.detection`) builds the series from a simulator run, calls these per SKU-store and
turns the returned indices into event times.

- :func:`static_daily`: a nightly batch over daily unit sales and the end-of-day book stock.
  A spike when the day sold more than ``multiplier`` x the trailing week's daily mean, a drop
  when it sold less than that mean / ``multiplier``, out of stock when the books show nothing
  left, phantom inventory after ``silent_days`` whole days without a sale while the books show
  stock. An alarm opens an episode; the same type does not open again until a day without it.
- :func:`drift_alarms`: a River drift detector fed one value per open hour (units sold); every
  alarm is a DEMAND_SPIKE or DEMAND_DROP by the direction of the change in mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

SPIKE = "DEMAND_SPIKE"
DROP = "DEMAND_DROP"
PHANTOM = "PHANTOM_INVENTORY"
OOS = "OUT_OF_STOCK"


@dataclass(frozen=True)
class StaticRule:
    """The nightly exception report: fixed ratios on daily sales, fixed silence on book stock."""

    multiplier: float = 2.0  # spike above multiplier x the trailing daily mean, drop below mean / multiplier
    silent_days: int = 2  # phantom: whole days without a sale while the books show stock
    history_days: int = 7  # the trailing window ("last week")
    min_history_days: int = 2  # fewer days of history: the ratio rules do not judge the day
    min_daily_mean: float = 3.0  # items selling less a day are not judged by the ratio and silence rules

    def __post_init__(self) -> None:
        if not self.multiplier > 1:
            raise ValueError(f"multiplier must be above 1, got {self.multiplier}")
        if self.silent_days < 1 or self.history_days < 1 or self.min_history_days < 1:
            raise ValueError("silent_days, history_days and min_history_days must be 1 or more")

    @property
    def label(self) -> str:
        """Short name of the setting, e.g. ``2x/2d``."""
        return f"{self.multiplier:g}x/{self.silent_days}d"


def static_daily(
    units: Sequence[float],
    stock_eod: Sequence[float | None],
    promo: Sequence[bool] | None = None,
    rule: StaticRule = StaticRule(),  # noqa: B008 (frozen, so a shared default is safe)
) -> list[tuple[int, str]]:
    """``(day, alert_type)`` of every alarm the nightly rule opens for one item, in day order.

    ``units[d]`` is day ``d``'s units sold; ``stock_eod[d]`` the book stock at the end of day
    ``d`` (None or NaN while unknown); ``promo[d]`` whether the item was on promotion that day
    (planned lifts are not exceptions: such days are not judged by the ratio rules). An alarm for
    day ``d`` is raised at the end of day ``d``.
    """
    n = len(units)
    promo = promo if promo is not None else [False] * n
    out: list[tuple[int, str]] = []
    was: set[str] = set()
    for d in range(n):
        now: set[str] = set()
        hist = units[max(0, d - rule.history_days) : d]
        mean = sum(hist) / len(hist) if hist else 0.0
        judged = len(hist) >= rule.min_history_days and mean >= rule.min_daily_mean and not promo[d]
        if judged and units[d] > rule.multiplier * mean:
            now.add(SPIKE)
        if judged and units[d] < mean / rule.multiplier:
            now.add(DROP)
        stock = _known(stock_eod[d])
        if stock is not None and stock <= 0 and any(u > 0 for u in units[: d + 1]):
            now.add(OOS)
        first_silent = d - rule.silent_days + 1
        if stock is not None and stock > 0 and first_silent >= 0 and not any(units[first_silent : d + 1]):
            before = units[max(0, first_silent - rule.history_days) : first_silent]
            if len(before) >= rule.min_history_days and sum(before) / len(before) >= rule.min_daily_mean:
                now.add(PHANTOM)
        out += [(d, kind) for kind in (SPIKE, DROP, OOS, PHANTOM) if kind in now and kind not in was]
        was = now
    return out


def _known(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def drift_alarms(values: Sequence[float], make_detector: Callable[[], Any]) -> list[tuple[int, str]]:
    """``(index, alert_type)`` of every alarm of a fresh detector fed ``values`` in order.

    The type is DEMAND_SPIKE when the mean went up and DEMAND_DROP when it went down: for ADWIN,
    the mean of the window it keeps after the alarm against the mean before; for Page-Hinkley,
    which of its two one-sided statistics crossed; for other detectors, the last six values'
    mean against the mean of the values since the previous alarm.
    """
    det = make_detector()
    out: list[tuple[int, str]] = []
    since: list[float] = []
    for i, x in enumerate(values):
        before = getattr(det, "estimation", None)
        det.update(x)
        since.append(x)
        if det.drift_detected:
            out.append((i, SPIKE if _went_up(det, before, since) else DROP))
            since = []
    return out


def _went_up(det: Any, before: float | None, since: list[float]) -> bool:
    name = type(det).__name__
    if name == "ADWIN" and before is not None:
        return det.estimation > before
    if name == "PageHinkley":
        try:  # river's internals (0.22-0.26): its two one-sided test statistics
            return det._sum_increase - det._min_increase >= det._max_decrease - det._sum_decrease
        except AttributeError:
            pass
    recent, older = since[-6:], since[:-6]
    base = sum(older) / len(older) if older else 0.0
    return sum(recent) / len(recent) > base
