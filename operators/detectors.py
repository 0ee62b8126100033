"""Count-aware detectors: continuous-time Poisson CUSUM, runs of zeros, stockout probability.

Rates are transactions per hour (a basket of six is one transaction: counts stay Poisson-like).
Every statistic is a log-likelihood ratio, so thresholds set the false-alarm rate and
:func:`confidence` turns a statistic into a probability.
"""

from __future__ import annotations

import math


def confidence(llr: float, prior_odds: float) -> float:
    """Posterior probability of a change given a log-likelihood ratio and prior odds of one."""
    x = llr + math.log(prior_odds)
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)  # the stable side of the logistic: no overflow for very negative x
    return e / (1.0 + e)


def cusum_up_quiet(s: float, expected: float, ratio: float) -> float:
    """Upward CUSUM after ``expected`` transactions' worth of time passed with none."""
    return max(0.0, s - (ratio - 1.0) * expected)


def cusum_down_quiet(s: float, expected: float, ratio: float) -> float:
    """Downward CUSUM (ratio < 1) after a quiet stretch: evidence of a drop grows."""
    return s + (1.0 - ratio) * expected


def cusum_on_event(s: float, ratio: float) -> float:
    """Either CUSUM after one transaction: ``+ln(ratio)`` (negative for a drop), floored at 0."""
    return max(0.0, s + math.log(ratio))


def demand_tail(mean: float, var: float, threshold: float) -> float:
    """P(demand > threshold) for count demand with this mean and variance (negative binomial).

    Uses the exact negative-binomial sum for small means and a normal approximation with
    continuity correction above 50 units.
    """
    if threshold < 0:
        return 1.0
    if mean <= 0:
        return 0.0
    var = max(var, mean * 1.0001)
    sd = math.sqrt(var)
    if threshold > mean + 8 * sd:
        return 0.0
    if mean > 50:
        z = (math.floor(threshold) + 0.5 - mean) / sd
        return 0.5 * math.erfc(z / math.sqrt(2))
    p = mean / var  # NB(r, p): mean r(1-p)/p, var r(1-p)/p^2
    r = mean * p / (1 - p)
    pmf = math.pow(p, r)  # a float (p**r may be complex to mypyc, boxing every step below)
    cdf = pmf
    for k in range(1, int(math.floor(threshold)) + 1):
        pmf *= (k - 1 + r) / k * (1 - p)
        cdf += pmf
    return max(0.0, 1.0 - cdf)
