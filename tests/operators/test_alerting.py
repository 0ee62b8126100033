"""Alert lifecycle, ids, priority and severity."""

from __future__ import annotations

import pytest

from operators.alerting import URGENCY, Condition, Episode, alert_id, priority, severity, step
from operators.policy import Alerting

RULES = Alerting(update_delta=15, cooldown_minutes=60.0, min_update_minutes=60.0)
MIN = 60_000
T = 1_772_438_400_000


def on(kind: str = "DEMAND_SPIKE") -> Condition:
    return Condition(kind, True, 0.9)


def off(kind: str = "DEMAND_SPIKE") -> Condition:
    return Condition(kind, False)


def test_the_full_lifecycle() -> None:
    ep, status = step(None, off(), 50, T, RULES)
    assert ep is None and status is None  # nothing holds, nothing to say

    ep, status = step(None, on(), 50, T, RULES)
    assert status == "OPEN"
    assert ep == Episode(start=T, emitted_at=T, priority=50)

    # stable: no emission, however often it is observed
    for minutes in (15, 30, 90, 600):
        ep, status = step(ep, on(), 50 + 14, T + minutes * MIN, RULES)
        assert status is None
    assert ep is not None and ep.priority == 50 and ep.seq == 0

    # priority moved by update_delta but too soon after the last emission: no UPDATE yet
    ep2, status = step(Episode(T, T, 50), on(), 65, T + 59 * MIN, RULES)
    assert status is None and ep2 is not None and ep2.priority == 50

    # moved enough, long enough after: UPDATE, which becomes the new reference
    ep, status = step(ep, on(), 65, T + 700 * MIN, RULES)
    assert status == "UPDATE"
    assert ep is not None and (ep.priority, ep.emitted_at, ep.seq, ep.start) == (65, T + 700 * MIN, 1, T)
    ep, status = step(ep, on(), 70, T + 800 * MIN, RULES)
    assert status is None  # 5 from the last emitted priority
    ep, status = step(ep, on(), 40, T + 800 * MIN, RULES)
    assert status is None  # only escalations are told; a calming condition is told by its RESOLVED
    ep, status = step(ep, on(), 85, T + 850 * MIN, RULES)
    assert status == "UPDATE" and ep is not None and (ep.seq, ep.priority) == (2, 85)

    # no longer holds: RESOLVED
    resolved_at = T + 900 * MIN
    ep, status = step(ep, off(), 50, resolved_at, RULES)
    assert status == "RESOLVED"
    assert ep is not None and not ep.open and ep.emitted_at == resolved_at

    # stays resolved quietly
    ep, status = step(ep, off(), 50, resolved_at + 5 * MIN, RULES)
    assert status is None

    # cooldown blocks an immediate re-OPEN
    blocked, status = step(ep, on(), 80, resolved_at + 59 * MIN, RULES)
    assert status is None and blocked is ep and not blocked.open

    # after the cooldown: a new episode
    new, status = step(ep, on(), 80, resolved_at + 60 * MIN, RULES)
    assert status == "OPEN"
    assert new is not None and new is not ep and new.start == resolved_at + 60 * MIN and new.seq == 0


def test_alert_id_is_deterministic_and_unique_per_emission() -> None:
    base = ("S1:A", "DEMAND_SPIKE", T, "OPEN", 0)
    assert alert_id(*base) == alert_id(*base)
    assert len(alert_id(*base)) == 24 and int(alert_id(*base), 16) >= 0
    variants = [
        ("S1:B", "DEMAND_SPIKE", T, "OPEN", 0),
        ("S1:A", "DEMAND_DROP", T, "OPEN", 0),
        ("S1:A", "DEMAND_SPIKE", T + 1, "OPEN", 0),  # another episode
        ("S1:A", "DEMAND_SPIKE", T, "UPDATE", 0),
        ("S1:A", "DEMAND_SPIKE", T, "RESOLVED", 0),
        ("S1:A", "DEMAND_SPIKE", T, "UPDATE", 1),
        ("S1:A", "DEMAND_SPIKE", T, "UPDATE", 2),
    ]
    ids = {alert_id(*v) for v in [base, *variants]}
    assert len(ids) == len(variants) + 1


def cond(revenue: float | None, confidence: float, kind: str = "DEMAND_SPIKE", hts: float | None = None) -> Condition:
    return Condition(kind, True, confidence, revenue_at_risk=revenue, hours_to_stockout=hts)


def test_priority_is_between_1_and_100() -> None:
    for kind in URGENCY:
        for revenue in (None, 0.0, 1.0, 100.0, 1e4, 1e9):
            for conf in (0.0, 0.3, 1.0):
                for hts in (None, 0.0, 5.0, 500.0):
                    assert 1 <= priority(cond(revenue, conf, kind, hts), 48.0, RULES) <= 100


def test_priority_rises_with_revenue_at_risk() -> None:
    values = [priority(cond(r, 0.9), 48.0, RULES) for r in (10, 50, 100, 250, 500, 1000)]
    assert values == sorted(values) and values[0] < values[-1]
    # the value part saturates: 63% at revenue_scale
    assert priority(cond(250, 1.0), 48.0, RULES) == round(100 * (1 - 1 / 2.718281828459045) * URGENCY["DEMAND_SPIKE"])


def test_priority_rises_with_confidence() -> None:
    values = [priority(cond(500, c), 48.0, RULES) for c in (0.1, 0.3, 0.6, 0.9, 1.0)]
    assert values == sorted(values) and values[0] < values[-1]


def test_priority_is_comparable_across_types_by_urgency() -> None:
    by_type = {k: priority(cond(1e6, 1.0, k), 48.0, RULES) for k in URGENCY}
    assert by_type["OUT_OF_STOCK"] == 100
    assert by_type["OUT_OF_STOCK"] > by_type["STOCKOUT_RISK"] > by_type["DEMAND_SPIKE"] > by_type["DEMAND_DROP"]


def test_an_imminent_stockout_raises_urgency() -> None:
    far = priority(cond(300, 0.9, "DEMAND_SPIKE", hts=500.0), 48.0, RULES)
    near = priority(cond(300, 0.9, "DEMAND_SPIKE", hts=30.0), 48.0, RULES)
    assert near > far


@pytest.mark.parametrize(
    ("prio", "band"),
    [
        (1, "LOW"),
        (24, "LOW"),
        (25, "MEDIUM"),
        (49, "MEDIUM"),
        (50, "HIGH"),
        (74, "HIGH"),
        (75, "CRITICAL"),
        (100, "CRITICAL"),
    ],
)
def test_severity_bands(prio: int, band: str) -> None:
    assert severity(prio) == band
