"""The detection benchmark: its baselines (pure functions), its scoring, and a smoke run."""

from __future__ import annotations

import math

import numpy as np
import pytest
from river.drift import ADWIN, PageHinkley

from bench.baselines import DROP, OOS, PHANTOM, SPIKE, StaticRule, drift_alarms, static_daily
from bench.detection import MIXES, band_of, cusum_minutes, main, prepare, score, verify_replay

STOCK = [50.0] * 12


# -- the nightly static rule -------------------------------------------------------------------------
def test_a_day_above_twice_last_weeks_mean_is_a_spike() -> None:
    assert static_daily([10] * 7 + [21], STOCK) == [(7, SPIKE)]
    assert static_daily([10] * 7 + [20], STOCK) == []  # exactly 2x is not above it


def test_a_day_below_half_last_weeks_mean_is_a_drop() -> None:
    assert static_daily([10] * 7 + [4], STOCK) == [(7, DROP)]
    assert static_daily([10] * 7 + [5], STOCK) == []


def test_the_multiplier_sets_both_ratios() -> None:
    rule = StaticRule(multiplier=4.0)
    assert static_daily([10] * 7 + [39], STOCK, rule=rule) == []
    assert static_daily([10] * 7 + [41], STOCK, rule=rule) == [(7, SPIKE)]
    assert static_daily([10] * 7 + [3], STOCK, rule=rule) == []
    assert static_daily([10] * 7 + [2], STOCK, rule=rule) == [(7, DROP)]


def test_the_trailing_week_is_the_last_seven_days() -> None:
    units = [100] * 3 + [10] * 7 + [25]  # the busy days fell out of the window
    assert static_daily(units, STOCK) == [(3, DROP), (10, SPIKE)]


def test_slow_items_short_history_and_promotion_days_are_not_judged() -> None:
    assert static_daily([2] * 7 + [10], STOCK) == []  # a mean under 3 units a day
    assert static_daily([10, 30], STOCK) == []  # one day of history
    assert static_daily([10, 10, 30], STOCK) == [(2, SPIKE)]  # two are enough
    promo = [False] * 7 + [True]
    assert static_daily([10] * 7 + [40], STOCK, promo) == []


def test_an_alarm_opens_once_per_run_of_days() -> None:
    units = [10] * 7 + [40, 45, 10, 50]
    assert static_daily(units, STOCK) == [(7, SPIKE), (10, SPIKE)]


def test_out_of_stock_when_the_books_show_nothing_left() -> None:
    units = [5, 5, 5, 0, 5, 0]
    stock = [10, 5, 0, 0, 3, 0]
    assert [a for a in static_daily(units, stock) if a[1] == OOS] == [(2, OOS), (5, OOS)]
    assert static_daily([0, 0], [0, 0]) == []  # never sold: not an out-of-stock worth a report
    assert static_daily([5, 5], [None, float("nan")]) == []  # unknown stock says nothing


def test_phantom_after_silent_days_with_book_stock() -> None:
    units = [5] * 5 + [0, 0, 0]
    assert [a for a in static_daily(units, STOCK) if a[1] == PHANTOM] == [(6, PHANTOM)]
    one_day = StaticRule(silent_days=1)
    assert [a for a in static_daily(units, STOCK, rule=one_day) if a[1] == PHANTOM] == [(5, PHANTOM)]
    assert not [a for a in static_daily(units, [0.0] * 8) if a[1] == PHANTOM]  # empty books: out of stock
    assert not [a for a in static_daily([2] * 5 + [0, 0, 0], STOCK) if a[1] == PHANTOM]  # too slow to judge


def test_a_rule_needs_a_ratio_above_one() -> None:
    with pytest.raises(ValueError):
        StaticRule(multiplier=1.0)
    with pytest.raises(ValueError):
        StaticRule(silent_days=0)
    assert StaticRule().label == "2x/2d"


# -- River's drift detectors --------------------------------------------------------------------------
def _counts(rates: list[tuple[float, int]], seed: int = 7) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(x) for r, n in rates for x in rng.poisson(r, n)]


@pytest.mark.parametrize("make", [ADWIN, PageHinkley], ids=["ADWIN", "PageHinkley"])
def test_a_drift_alarm_takes_the_direction_of_the_change(make) -> None:
    up = [a for a in drift_alarms(_counts([(2.0, 300), (12.0, 100)]), make) if a[0] >= 300]
    assert up and up[0][0] < 330 and up[0][1] == SPIKE
    down = [a for a in drift_alarms(_counts([(12.0, 300), (1.0, 100)]), make) if a[0] >= 300]
    assert down and down[0][0] < 330 and down[0][1] == DROP


def test_a_steady_stream_raises_nothing_and_each_call_starts_fresh() -> None:
    made = []

    def make() -> ADWIN:
        made.append(1)
        return ADWIN()

    assert drift_alarms([3.0] * 500, make) == []
    drift_alarms([1.0, 2.0], make)
    assert len(made) == 2


def test_other_detectors_get_the_direction_from_recent_values() -> None:
    class EveryTenth:  # a stand-in detector: alarms on every tenth value
        def __init__(self) -> None:
            self.n, self.drift_detected = 0, False

        def update(self, x: float) -> None:
            self.n += 1
            self.drift_detected = self.n % 10 == 0

    values = [1.0] * 10 + [1.0] * 4 + [9.0] * 6 + [9.0] * 4 + [1.0] * 6
    assert drift_alarms(values, EveryTenth) == [(9, DROP), (19, SPIKE), (29, DROP)]


# -- bands, bounds, scoring ------------------------------------------------------------------------------
def test_pace_bands() -> None:
    assert band_of(0.05, 0.7) == "sparse"
    assert band_of(0.5, 7) == "slow"
    assert band_of(2, 30) == "2-12/h"
    assert band_of(15, 200) == "12-20/h"
    assert band_of(20, 300) == "20+/h"


def test_the_cusum_bound_is_threshold_over_kullback_leibler() -> None:
    # 3x at 10 transactions an hour: KL = 10 (3 ln 3 - 2) per hour
    assert cusum_minutes(13.0, 3.0, 9.0) == pytest.approx(60 * 9 / (10 * (3 * math.log(3) - 2)))
    assert cusum_minutes(2.0, 3.0, 9.0) > cusum_minutes(20.0, 3.0, 9.0)


@pytest.fixture(scope="module")
def small_run():
    return prepare(MIXES[0], 3, 2, 120, 5)


def test_scoring_counts_detections_delays_and_false_alarms(small_run) -> None:
    run = small_run
    assert run.labels and sum(run.active_days) > 0
    kinds = {"DEMAND_SPIKE": SPIKE, "DEMAND_DROP": DROP, "PHANTOM_INVENTORY": PHANTOM, "STOCKOUT": OOS}
    opens = [(lab.item, lab.start + 10 * 60_000, kinds[lab.scenario]) for lab in run.labels]
    clean = run.labelled.index(False)
    opens.append((clean, run.score_from + 1, SPIKE))  # a false alarm
    opens.append((clean, run.score_from - 1, DROP))  # during the warm-up: not counted
    t = score(run, opens)
    for kind in (SPIKE, DROP, PHANTOM, OOS):
        if t.labels(kind):
            assert t.recall(kind) == 1.0 and t.delay(kind) == pytest.approx(10.0)
    assert t.fa[SPIKE, run.band[clean]] == 1 and sum(t.fa.values()) == 1
    assert t.fa_rate([SPIKE]) == pytest.approx(1000 / sum(t.days.values()))
    late_only = score(run, [(lab.item, lab.start - 60_000, kinds[lab.scenario]) for lab in run.labels])
    assert all(late_only.recall(k) == 0 for k in (SPIKE, DROP, PHANTOM, OOS) if late_only.labels(k))


def test_the_series_agree_with_the_simulated_sales(small_run) -> None:
    run = small_run
    units = sum(r["quantity"] for r in {r["event_id"]: r for r in run.sim.sales}.values())
    assert run.daily.sum() == units == run.hourly.sum()


def test_quick_benchmark_smoke(tmp_path) -> None:
    argv = ["--quick", "--stores", "1", "--skus", "48", "--days", "4", "--workers", "1", "--out", str(tmp_path)]
    assert main([*argv, "--no-plot"]) == 0
    text = (tmp_path / "detection.md").read_text()
    assert "## Goals" in text and "| demandsense |" in text
    assert (tmp_path / "detection.json").exists()


@pytest.mark.slow
def test_in_process_replay_gives_the_same_alerts_as_the_command_line(tmp_path) -> None:
    assert ": identical" in verify_replay(2, 1, 60, 4, tmp_path)
