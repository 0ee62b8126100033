"""Day-to-day demand variation: the learned day-level CV², lead-time demand moments, today's multiplier."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from operators.events import HOUR_MS, Sale
from operators.item import DAY_CV2_PRIOR, DAY_CV2_PRIOR_DAYS, ItemState
from operators.policy import Detection, ItemDefaults
from operators.profile import StoreProfile

from . import DAY_MS, T0

DET = Detection()
KEEP = math.exp(-24 / DET.memory_hours)  # weight a day keeps per day


def seasoned(t: int = T0) -> ItemState:
    """An item with enough sales history to learn from, single-unit baskets (variance ratio 1.25)."""
    item = ItemState(t)
    item.n_sales = DET.min_history_sales
    return item


def close(item: ItemState, expected: float, units: float) -> None:
    item.day_expected, item.day_units = expected, units
    item._close_day(DET)


def test_no_history_gives_the_prior() -> None:
    item = ItemState(T0)
    assert item.day_cv2() == DAY_CV2_PRIOR
    assert item.today(1.25, DAY_CV2_PRIOR) == pytest.approx((1.0, DAY_CV2_PRIOR))  # nothing sold or expected today


def test_a_day_is_folded_in_with_its_precision_weight() -> None:
    item = seasoned()
    close(item, 100.0, 150.0)
    weight = (0.2 / (1.25 / 100 + 0.2)) ** 2
    estimate = (50.0**2 - 1.25 * 100) / 100**2  # ((U - E)² - r E) / E² = 0.2375
    assert item.cv2_w == pytest.approx(weight) and item.cv2_sum == pytest.approx(weight * estimate)
    expected = (weight * estimate + DAY_CV2_PRIOR_DAYS * DAY_CV2_PRIOR) / (weight + DAY_CV2_PRIOR_DAYS)
    assert item.day_cv2() == pytest.approx(expected)
    assert (item.day_units, item.day_expected) == (0.0, 0.0)
    close(item, 100.0, 100.0)  # the next day decays the first
    assert item.cv2_w == pytest.approx(weight * KEEP + weight)


def test_a_sparse_day_says_little_and_a_short_history_nothing() -> None:
    sparse, fast = seasoned(), seasoned()
    close(sparse, 0.5, 5.0)
    close(fast, 200.0, 400.0)
    assert sparse.cv2_w < 0.05 < 0.9 < fast.cv2_w
    assert abs(sparse.day_cv2() - DAY_CV2_PRIOR) < abs(fast.day_cv2() - DAY_CV2_PRIOR)
    new = ItemState(T0)  # fewer sales than min_history_sales: the day decays but teaches nothing
    new.cv2_w = 1.0
    close(new, 200.0, 400.0)
    assert new.cv2_w == pytest.approx(KEEP) and new.cv2_sum == 0.0
    close(new, 0.0, 0.0)  # nothing expected (closed, out of stock, not warm): nothing learned
    assert new.cv2_sum == 0.0


def test_the_estimate_follows_the_true_day_to_day_variation() -> None:
    rng = random.Random(3)
    estimates = []
    for cv2 in (0.0, 0.25, 1.0):
        item = seasoned()
        for _ in range(120):
            mult = rng.gammavariate(1 / cv2, cv2) if cv2 else 1.0
            mean = 300.0 * mult
            units = max(0.0, round(rng.gauss(mean, math.sqrt(mean))))  # Poisson around the day's multiplier
            close(item, 300.0, units)
        estimates.append(item.day_cv2())
    # 14 days' memory against 7 days of prior: a third of the way to the prior at most
    assert estimates[0] < 0.1 and 0.15 < estimates[1] < 0.35 and estimates[2] > 0.4
    assert estimates == sorted(estimates)


def test_advancing_past_midnight_closes_the_day() -> None:
    p, item = StoreProfile(), seasoned(T0 + 20 * HOUR_MS)
    item.x = item.p = item.units = 100.0  # one transaction per profile-hour, one unit each
    item.advance(T0 + 22 * HOUR_MS, p, 1.0, DET)
    assert item.day_expected == pytest.approx(2.0, rel=1e-6)  # a flat profile: one profile-hour per hour
    item.on_sale(Sale("s", T0 + 23 * HOUR_MS, "S1", "A", "STORE", 3, 5.0), p, 1.0, DET)
    assert item.day_units == 3
    item.advance(T0 + DAY_MS + 2 * HOUR_MS, p, 1.0, DET)
    assert item.cv2_w > 0 and item.day_units == 0.0
    assert item.day_expected == pytest.approx(2.0, rel=0.05)  # two hours of the new day
    before = (item.cv2_w, item.cv2_sum)
    item.advance(T0 + 4 * DAY_MS, p, 1.0, DET)  # three idle days, each closed with nothing sold
    assert item.cv2_w > before[0] * KEEP**3 and item.cv2_sum > before[1] * KEEP**3


def test_out_of_stock_time_is_not_learned_from() -> None:
    p, item = StoreProfile(), seasoned(T0 + 9 * HOUR_MS)
    item.on_hand = 0
    item.advance(T0 + 12 * HOUR_MS, p, 1.0, DET)
    item.on_sale(Sale("s", T0 + 12 * HOUR_MS, "S1", "A", "STORE", 2, 5.0), p, 1.0, DET)
    assert (item.day_expected, item.day_units) == (0.0, 0.0)
    cold = seasoned(T0 + 9 * HOUR_MS)  # nor is the store's warm-up
    cold.advance(T0 + 12 * HOUR_MS, p, 1.0, DET, warm=False)
    cold.on_sale(Sale("s", T0 + 12 * HOUR_MS, "S1", "A", "STORE", 2, 5.0), p, 1.0, DET, warm=False)
    assert (cold.day_expected, cold.day_units) == (0.0, 0.0)


def test_lead_time_variance_adds_the_day_level_term_per_calendar_day() -> None:
    p, item = StoreProfile(), ItemState(T0)  # no history: 2 units per hour from the prior, variance ratio 1.25
    c = DAY_CV2_PRIOR
    mean, var = item.demand_moments(T0 + 6 * HOUR_MS, 12, p, 2.0, DET)  # within one day
    assert mean == pytest.approx(24.0) and var == pytest.approx(1.25 * 24 + c * 24**2)
    mean, var = item.demand_moments(T0 + 12 * HOUR_MS, 24, p, 2.0, DET)  # noon to noon: two half days
    assert mean == pytest.approx(48.0) and var == pytest.approx(1.25 * 48 + c * (24**2 + 24**2))
    mean, var = item.demand_moments(T0, 96, p, 2.0, DET)  # four whole days: their swings partly cancel
    assert mean == pytest.approx(192.0) and var == pytest.approx(1.25 * 192 + c * 4 * 48**2)
    assert var < 1.25 * 192 + c * 192**2


def test_more_day_to_day_variation_means_more_lead_time_variance() -> None:
    p = StoreProfile()
    variances = []
    for cv2_sum in (0.0, 5.0, 50.0):
        item = ItemState(T0)
        item.cv2_w, item.cv2_sum = 20.0, cv2_sum
        variances.append(item.demand_moments(T0, 48, p, 2.0, DET)[1])
    assert variances == sorted(variances) and len(set(variances)) == 3
    assert variances[0] == pytest.approx(1.25 * 96 + 1.4 / 27 * 2 * 48**2)  # the prior's share only


def test_todays_sales_so_far_set_the_rest_of_today() -> None:
    p = StoreProfile()
    quiet, busy = ItemState(T0 + 12 * HOUR_MS), ItemState(T0 + 12 * HOUR_MS)
    quiet.day_expected = busy.day_expected = 50.0
    quiet.day_units, busy.day_units = 25.0, 100.0
    mult, left = busy.today(1.25, 0.2)
    assert mult == pytest.approx((0.2 * 100 + 1.25) / (0.2 * 50 + 1.25))
    assert left == pytest.approx(0.2 * 1.25 / (0.2 * 50 + 1.25))
    assert quiet.today(1.25, 0.2)[0] < 1.0 < mult
    # noon to noon: only today's half moves, tomorrow's is as expected
    q_mean, q_var = quiet.demand_moments(T0 + 12 * HOUR_MS, 24, p, 2.0, DET)
    b_mean, b_var = busy.demand_moments(T0 + 12 * HOUR_MS, 24, p, 2.0, DET)
    assert b_mean == pytest.approx(mult * 24 + 24) and q_mean < 48 < b_mean
    assert b_var == pytest.approx(1.25 * mult * 24 + left * 24**2 + 1.25 * 24 + 0.2 * 24**2)
    assert left < 0.2  # what is left of today's swing is less than a day not yet seen


def test_snapshots_keep_the_estimate_and_old_ones_still_load() -> None:
    item = seasoned()
    close(item, 100.0, 180.0)
    item.day_units, item.day_expected = 4.0, 3.5
    copy = pickle.loads(pickle.dumps(item))
    assert copy.__getstate__() == item.__getstate__() and copy.day_cv2() == item.day_cv2()
    old = ItemState.__new__(ItemState)
    old.__setstate__(item.__getstate__()[:-5])  # a snapshot from before the day-level CV² (and ``queued``)
    assert (old.day_units, old.day_expected, old.cv2_w, old.cv2_sum) == (0.0, 0.0, 0.0, 0.0)
    assert old.day_cv2() == DAY_CV2_PRIOR and old.n_sales == item.n_sales
    assert old.queued == old.due  # the store's heap then held an entry at the due time


def test_the_cheap_ceiling_stays_above_a_busy_days_demand() -> None:
    p = StoreProfile()  # flat: peak intensity 1
    item = ItemState(T0 + 12 * HOUR_MS)
    assert item.demand_ceiling(24, p, 2.0, DET) == pytest.approx(48 + 10 * math.sqrt(1.25 * 48 + 0.2 * 48**2))
    item.day_expected, item.day_units = 20.0, 200.0  # ten times the expected so far
    mean, var = item.demand_moments(T0 + 12 * HOUR_MS, 24, p, 2.0, DET)
    assert mean > 48 * 3
    assert item.demand_ceiling(24, p, 2.0, DET) > mean + 10 * math.sqrt(var)


def risk(item: ItemState, on_hand: int) -> float:
    item.on_hand = on_hand
    return item.look(item.t, StoreProfile(), 2.0, None, ItemDefaults(), DET).stockout_risk(False).confidence


def test_stockout_risk_counts_day_to_day_variation_and_todays_pace() -> None:
    steady, swinging, busy = (seasoned(T0 + 12 * HOUR_MS) for _ in range(3))
    steady.cv2_w, steady.cv2_sum = 50.0, 0.0
    swinging.cv2_w, swinging.cv2_sum = 50.0, 50.0
    busy.day_expected, busy.day_units = 24.0, 72.0
    # 48 h lead time (ItemDefaults) at 2 units/h: 96 expected
    assert risk(steady, 140) < risk(seasoned(T0 + 12 * HOUR_MS), 140) < risk(swinging, 140)
    assert risk(steady, 140) < 0.01 < 0.1 < risk(swinging, 140)
    assert risk(busy, 120) > 0.5 > risk(seasoned(T0 + 12 * HOUR_MS), 120)
