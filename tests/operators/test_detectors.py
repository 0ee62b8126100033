"""Detectors: confidence from a log-likelihood ratio, Poisson CUSUM steps, the demand tail."""

from __future__ import annotations

import math

import pytest
from scipy.stats import nbinom, poisson

from operators.detectors import (
    confidence,
    cusum_down_quiet,
    cusum_on_event,
    cusum_up_quiet,
    demand_tail,
)

LLRS = [x / 4 for x in range(-200, 201)]  # -50 .. 50


# -- confidence ---------------------------------------------------------------------------------
@pytest.mark.parametrize("odds", [1e-4, 0.01, 1.0, 50.0])
def test_confidence_is_monotone_in_the_llr(odds: float) -> None:
    values = [confidence(x, odds) for x in LLRS]
    assert all(a <= b for a, b in zip(values, values[1:], strict=False))
    assert all(0.0 <= v <= 1.0 for v in values)
    # strictly increasing and strictly inside (0, 1) where the logistic is not saturated
    moderate = [confidence(x, odds) for x in LLRS if abs(x + math.log(odds)) <= 30]
    assert all(a < b for a, b in zip(moderate, moderate[1:], strict=False))
    assert all(0.0 < v < 1.0 for v in moderate)


def test_confidence_is_the_posterior_of_a_change() -> None:
    # llr = ln(1/odds): even odds after the evidence, a coin toss
    assert confidence(math.log(100), 0.01) == pytest.approx(0.5)
    # posterior odds = prior odds x likelihood ratio
    c = confidence(math.log(400), 0.01)
    assert c / (1 - c) == pytest.approx(4.0)
    assert confidence(0.0, 0.01) == pytest.approx(0.01 / 1.01)


def test_confidence_rises_with_the_prior_odds() -> None:
    assert confidence(5.0, 0.001) < confidence(5.0, 0.01) < confidence(5.0, 0.1)


def test_confidence_saturates_at_one_for_overwhelming_evidence() -> None:
    assert confidence(1e6, 0.01) == 1.0
    assert confidence(34.0, 0.01) < 1.0


def test_confidence_of_overwhelming_evidence_against_a_change_is_zero_not_an_error() -> None:
    assert confidence(-1000.0, 0.01) == pytest.approx(0.0, abs=1e-300)


# -- CUSUM steps ---------------------------------------------------------------------------------
def test_a_quiet_stretch_lowers_the_spike_statistic_floored_at_zero() -> None:
    assert cusum_up_quiet(5.0, 2.0, 2.5) == pytest.approx(5.0 - 1.5 * 2.0)
    assert cusum_up_quiet(5.0, 2.0, 2.5) < 5.0
    assert cusum_up_quiet(1.0, 10.0, 2.5) == 0.0
    assert cusum_up_quiet(3.0, 0.0, 2.5) == 3.0  # no time, no change


def test_a_quiet_stretch_raises_the_drop_statistic() -> None:
    assert cusum_down_quiet(1.0, 4.0, 0.25) == pytest.approx(1.0 + 0.75 * 4.0)
    assert cusum_down_quiet(0.0, 4.0, 0.25) > 0.0
    assert cusum_down_quiet(2.0, 0.0, 0.25) == 2.0


def test_an_event_adds_ln_ratio_floored_at_zero() -> None:
    assert cusum_on_event(1.0, 2.5) == pytest.approx(1.0 + math.log(2.5))  # evidence of a spike
    assert cusum_on_event(3.0, 0.25) == pytest.approx(3.0 - math.log(4.0))  # evidence against a drop
    assert cusum_on_event(1.0, 0.25) == 0.0  # floored
    assert cusum_on_event(0.0, 0.25) == 0.0


@pytest.mark.parametrize("ratio", [2.5, 0.25])
def test_cusum_steps_add_up_to_the_poisson_log_likelihood_ratio(ratio: float) -> None:
    """Away from the floor, the statistic is n ln(r) - (r - 1) E: the Poisson LLR of rate r vs 1."""
    step_quiet = cusum_up_quiet if ratio > 1 else cusum_down_quiet
    s, n, expected = 50.0, 0, 0.0
    for i in range(40):
        e = 0.1 + (i % 7) * 0.05
        s = step_quiet(s, e, ratio)
        expected += e
        if i % 3 == 0:
            s = cusum_on_event(s, ratio)
            n += 1
    assert s > 0
    assert s == pytest.approx(50.0 + n * math.log(ratio) - (ratio - 1) * expected)


# -- demand_tail ----------------------------------------------------------------------------------
def exact_tail(mean: float, var: float, threshold: float) -> float:
    """P(X > threshold) for a negative binomial (Poisson when var <= mean), computed by scipy."""
    k = math.floor(threshold)
    if var <= mean:
        return float(poisson.sf(k, mean))
    p = mean / var
    n = mean * p / (1 - p)
    return float(nbinom.sf(k, n, p))


EXACT_CASES = [
    (mean, mean * vr, th)
    for mean in (0.3, 1.0, 2.5, 7.0, 20.0, 49.0)
    for vr in (1.25, 2.0, 5.0)
    for th in (0, 1, 2.5, round(mean * 0.5), mean, mean * 1.3 + 0.7, mean * 2 + 3)
]


@pytest.mark.parametrize(("mean", "var", "threshold"), EXACT_CASES)
def test_demand_tail_matches_the_negative_binomial_tail(mean: float, var: float, threshold: float) -> None:
    assert demand_tail(mean, var, threshold) == pytest.approx(exact_tail(mean, var, threshold), abs=1e-9)


@pytest.mark.parametrize("mean", [0.5, 4.0, 30.0])
@pytest.mark.parametrize("var_ratio", [0.5, 1.0])
def test_demand_tail_without_over_dispersion_is_poisson(mean: float, var_ratio: float) -> None:
    for th in range(int(mean * 3) + 2):
        got = demand_tail(mean, mean * var_ratio, th)
        assert got == pytest.approx(float(poisson.sf(th, mean)), abs=2e-4)


@pytest.mark.parametrize("vr", [1.25, 5.0, 20.0])
def test_demand_tail_far_beyond_the_mean_is_negligible(vr: float) -> None:
    """Beyond mean + 8 sd the tail is cut to 0; the true tail there stays under 0.5%."""
    for mean in (0.3, 2.5, 20.0):
        th = mean + 8 * math.sqrt(mean * vr) + 1
        assert demand_tail(mean, mean * vr, th) == 0.0
        assert exact_tail(mean, mean * vr, th) < 5e-3


NORMAL_CASES = [
    (mean, mean * vr, th)
    for mean in (50.5, 80.0, 200.0, 1000.0)
    for vr in (1.0, 1.25, 2.0)
    for th in (mean * 0.6, mean * 0.9, mean, mean * 1.1, mean * 1.25)
]


@pytest.mark.parametrize(("mean", "var", "threshold"), NORMAL_CASES)
def test_demand_tail_normal_approximation_above_50(mean: float, var: float, threshold: float) -> None:
    assert demand_tail(mean, var, threshold) == pytest.approx(exact_tail(mean, var, threshold), abs=0.025)


def test_demand_tail_normal_branch_uses_a_continuity_correction() -> None:
    # P(X > 100) with X ~ N(100, 225): the corrected z is (100.5 - 100) / 15
    assert demand_tail(100.0, 225.0, 100.0) == pytest.approx(0.5 * math.erfc(0.5 / 15 / math.sqrt(2)))
    assert demand_tail(100.0, 225.0, 100.9) == demand_tail(100.0, 225.0, 100.0)  # counts: floor


def test_demand_tail_falls_as_the_threshold_rises() -> None:
    for mean, var in ((3.0, 6.0), (60.0, 90.0)):
        tails = [demand_tail(mean, var, th) for th in range(0, int(mean * 5))]
        assert all(a >= b for a, b in zip(tails, tails[1:], strict=False))
        assert tails[0] > 0.85 and tails[-1] < 0.01


def test_demand_tail_edge_cases() -> None:
    assert demand_tail(0.0, 0.0, 0.0) == 0.0  # no demand never exceeds a stock of 0
    assert demand_tail(0.0, 0.0, 5.0) == 0.0
    assert demand_tail(-1.0, 1.0, 3.0) == 0.0
    assert demand_tail(5.0, 6.0, -1.0) == 1.0  # a negative position is already out
    assert demand_tail(0.0, 0.0, -0.5) == 1.0
    assert demand_tail(500.0, 600.0, -3.0) == 1.0
    assert 0.0 < demand_tail(5.0, 6.0, 0.0) < 1.0
