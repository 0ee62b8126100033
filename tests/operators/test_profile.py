"""Store profile: hour of week, learned intensity, exposure, pickling."""

from __future__ import annotations

import pickle
import random

import pytest

from operators.events import HOUR_MS
from operators.profile import HOURS_PER_WEEK, WEEK_MS, StoreProfile, hour_of_week

from . import DAY_MS, MINUTE_MS, T0, is_open


def test_hour_of_week_of_known_times() -> None:
    assert hour_of_week(T0) == 0  # 2026-03-02T00:00Z is a Monday
    assert hour_of_week(T0 + 59 * MINUTE_MS) == 0
    assert hour_of_week(T0 + HOUR_MS) == 1
    assert hour_of_week(T0 + DAY_MS + 8 * HOUR_MS) == 32  # Tuesday 08:00
    assert hour_of_week(T0 + 6 * DAY_MS + 23 * HOUR_MS + 30 * MINUTE_MS) == 167  # Sunday 23:30
    assert hour_of_week(T0 + WEEK_MS) == 0
    assert hour_of_week(T0 - 1) == 167  # the Sunday before
    assert hour_of_week(0) == 3 * 24  # 1970-01-01 was a Thursday


@pytest.fixture(scope="module")
def learned() -> StoreProfile:
    """A store open 08-22 UTC, 30 transactions an hour, for 8 days."""
    rng = random.Random(11)
    profile = StoreProfile()
    t, end = T0, T0 + 8 * DAY_MS
    while t < end:
        if is_open(t):
            profile.record_sale(t)
            t += max(1, int(rng.expovariate(30 / HOUR_MS)))
        else:
            t += 5 * MINUTE_MS
    profile.advance(end)
    return profile


def test_a_flat_profile_before_any_data() -> None:
    p = StoreProfile()
    assert all(p.intensity(T0 + h * HOUR_MS) == 1.0 for h in range(HOURS_PER_WEEK))
    assert p.exposure(T0, T0 + 5 * HOUR_MS) == pytest.approx(5.0)
    assert p.mean_rate() == 0.0


def test_closed_nights_learn_near_zero_and_open_days_above_one(learned: StoreProfile) -> None:
    open_values = []
    for day in range(7):
        for h in range(24):
            value = learned.intensity(T0 + day * DAY_MS + h * HOUR_MS + 17 * MINUTE_MS)
            if 8 <= h < 22:
                assert 0.8 < value < 2.6, (day, h, value)  # one week of Poisson noise per cell
                open_values.append(value)
            else:
                assert value < 0.02, (day, h, value)
    assert sum(open_values) / len(open_values) == pytest.approx(24 / 14, rel=0.02)  # all the week's mass


def test_the_mean_intensity_over_a_week_is_one(learned: StoreProfile) -> None:
    values = [learned.intensity(T0 + h * HOUR_MS) for h in range(HOURS_PER_WEEK)]
    assert sum(values) / HOURS_PER_WEEK == pytest.approx(1.0)
    assert learned.mean_rate() == pytest.approx(30 * 14 / 24, rel=0.1)


@pytest.mark.parametrize("start", [T0, T0 + 5 * HOUR_MS + 12_345, T0 + 3 * DAY_MS + 21 * HOUR_MS + 59 * MINUTE_MS])
def test_exposure_over_a_whole_week_is_168_hours(learned: StoreProfile, start: int) -> None:
    assert learned.exposure(start, start + WEEK_MS) == pytest.approx(168.0)
    assert learned.exposure(start, start + 3 * WEEK_MS) == pytest.approx(3 * 168.0)


def test_exposure_is_additive(learned: StoreProfile) -> None:
    rng = random.Random(5)
    for _ in range(200):
        a, b, c = sorted(T0 + rng.randrange(3 * WEEK_MS) for _ in range(3))
        assert learned.exposure(a, b) + learned.exposure(b, c) == pytest.approx(learned.exposure(a, c), abs=1e-9)


def test_exposure_is_the_integral_of_intensity(learned: StoreProfile) -> None:
    t = T0 + 2 * DAY_MS + 9 * HOUR_MS
    assert learned.exposure(t, t + HOUR_MS) == pytest.approx(learned.intensity(t))
    assert learned.exposure(t, t + 15 * MINUTE_MS) == pytest.approx(learned.intensity(t) / 4)
    night = T0 + 2 * DAY_MS + 2 * HOUR_MS
    assert learned.exposure(night, night + 5 * HOUR_MS) < 0.1  # a closed night is almost no exposure
    assert learned.exposure(t, t) == 0.0
    assert learned.exposure(t + HOUR_MS, t) == 0.0  # backwards is empty


def test_pickle_round_trip_preserves_intensity(learned: StoreProfile) -> None:
    copy = pickle.loads(pickle.dumps(learned))
    for h in range(HOURS_PER_WEEK):
        t = T0 + h * HOUR_MS
        assert copy.intensity(t) == learned.intensity(t)
    assert copy.exposure(T0, T0 + 100 * HOUR_MS + 7) == learned.exposure(T0, T0 + 100 * HOUR_MS + 7)
    assert copy.mean_rate() == learned.mean_rate()
    # and it keeps learning the same way
    t = T0 + 8 * DAY_MS + 9 * HOUR_MS
    for p in (copy, learned):
        for i in range(50):
            p.record_sale(t + i * MINUTE_MS)
        p.advance(t + 2 * HOUR_MS)
    assert copy.intensity(t) == learned.intensity(t)


def test_events_in_the_past_do_not_move_the_clock_back() -> None:
    p = StoreProfile()
    p.record_sale(T0 + 10 * HOUR_MS)
    p.advance(T0 + 12 * HOUR_MS)
    before = [p.intensity(T0 + h * HOUR_MS) for h in range(24)]
    p.advance(T0 + 5 * HOUR_MS)
    assert [p.intensity(T0 + h * HOUR_MS) for h in range(24)] == before


def test_invalid_week_decay_is_rejected() -> None:
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="week_decay"):
            StoreProfile(week_decay=bad)
