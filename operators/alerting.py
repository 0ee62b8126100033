"""Prioritisation and lifecycle of alerts: one priority scale, severity bands, episodes, cooldown."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Final

from operators.policy import Alerting

URGENCY: Final = {
    "OUT_OF_STOCK": 1.0,
    "STOCKOUT_RISK": 0.9,
    "PHANTOM_INVENTORY": 0.85,
    "DEMAND_SPIKE": 0.75,
    "DEMAND_DROP": 0.6,
}


class Condition:
    """What a detector sees for one item and type at one time; ``active`` says if it holds.

    Its :attr:`reason` is written from a template and its figures only when read: most conditions
    emit nothing, and formatting the sentence cost more than judging it.

    A plain class: a look makes one per type it judges, and compiled (mypyc) its constructor is a C
    call, where a dataclass's generated ``__init__`` stays Python (0.7 µs; a frozen one, setting
    each field through ``object.__setattr__``, cost 10% of the decision layer's instructions).
    """

    __slots__ = (
        "alert_type", "active", "confidence", "expected_rate", "observed_rate", "hours_to_stockout", "revenue_at_risk",
        "template", "args", "evidence",
    )  # fmt: skip

    def __init__(
        self,
        alert_type: str,
        active: bool,
        confidence: float = 0.0,
        expected_rate: float = 0.0,
        observed_rate: float = 0.0,
        hours_to_stockout: float | None = None,
        revenue_at_risk: float | None = None,
        template: str = "",
        args: tuple = (),
        evidence: tuple[tuple[str, float], ...] = (),
    ) -> None:
        self.alert_type, self.active, self.confidence = alert_type, active, confidence
        self.expected_rate, self.observed_rate = expected_rate, observed_rate
        self.hours_to_stockout, self.revenue_at_risk = hours_to_stockout, revenue_at_risk
        self.template, self.args, self.evidence = template, args, evidence

    @property
    def reason(self) -> str:
        """One sentence for people: the template filled in with its figures."""
        return self.template.format(*self.args)


@dataclass(slots=True)
class Episode:
    """One alert episode of an item and type, from OPEN to RESOLVED (then a cooldown)."""

    start: int
    emitted_at: int
    priority: int
    seq: int = 0
    open: bool = True

    def __reduce__(self) -> tuple:
        """Pickled as its fields: the same snapshot whether this module runs compiled or not."""
        return (Episode, (self.start, self.emitted_at, self.priority, self.seq, self.open))


def priority(cond: Condition, lead_time_hours: float, rules: Alerting) -> int:
    """0-100: value at risk (saturating) x confidence x urgency, comparable across types.

    Urgency is the type's weight, raised towards 1 when the shelf empties within the lead time.
    """
    value = 1.0 - math.exp(-(cond.revenue_at_risk or 0.0) / rules.revenue_scale)
    urgency = URGENCY[cond.alert_type]
    if cond.hours_to_stockout is not None and lead_time_hours > 0:
        urgency = max(urgency, min(1.0, lead_time_hours / max(cond.hours_to_stockout, 1.0)) * 0.95)
    return max(1, min(100, round(100 * value * cond.confidence * urgency)))


def severity(prio: int) -> str:
    """Band of a priority: CRITICAL 75+, HIGH 50+, MEDIUM 25+, else LOW."""
    if prio >= 75:
        return "CRITICAL"
    if prio >= 50:
        return "HIGH"
    if prio >= 25:
        return "MEDIUM"
    return "LOW"


def alert_id(key: str, alert_type: str, episode_start: int, status: str, seq: int) -> str:
    """Deterministic id of one emission: the same input always gives the same id."""
    return hashlib.blake2b(f"{key}|{alert_type}|{episode_start}|{status}|{seq}".encode(), digest_size=12).hexdigest()


def step(
    episode: Episode | None, cond: Condition, prio: int, t: int, rules: Alerting
) -> tuple[Episode | None, str | None]:
    """Advance an episode by one observation; the new episode and the status to emit, if any.

    OPEN when an active condition starts (unless within the cooldown after a RESOLVED),
    UPDATE when its priority rose by ``update_delta`` and ``min_update_minutes`` passed
    (escalations; a calming condition is told by its RESOLVED),
    RESOLVED when it no longer holds.
    """
    minute = 60_000
    if episode is None or not episode.open:
        if not cond.active:
            return episode, None
        if episode is not None and t - episode.emitted_at < rules.cooldown_minutes * minute:
            return episode, None
        return Episode(start=t, emitted_at=t, priority=prio), "OPEN"
    if not cond.active:
        episode.open, episode.emitted_at = False, t
        return episode, "RESOLVED"
    if prio - episode.priority >= rules.update_delta and t - episode.emitted_at >= rules.min_update_minutes * minute:
        episode.priority, episode.emitted_at, episode.seq = prio, t, episode.seq + 1
        return episode, "UPDATE"
    return episode, None
