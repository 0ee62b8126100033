"""Score alerts against the simulator's ground-truth labels: recall and false alarms.

An alert detects a label when it is an OPEN of one of the label's expected types, on the same
item, raised after the scenario started (less a grace period for STOCKOUT_RISK, which should
come before the shelf empties) and before it ended (plus a day). Every other OPEN of a rate-based
type (spike, drop, phantom) is a false alarm; stock alerts are not counted as false alarms
because the simulator's own natural stockouts are real.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

HOUR_MS = 3_600_000
RATE_TYPES = ("DEMAND_SPIKE", "DEMAND_DROP", "PHANTOM_INVENTORY")


def ms(value: Any) -> int:
    """Epoch ms from an ISO-8601 string or a number."""
    if isinstance(value, int | float):
        return int(value)
    return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() * 1000)


@dataclass
class Score:
    """Detection quality of one scenario type (and the false alarms of the whole run)."""

    labels: int = 0
    detected: int = 0

    @property
    def recall(self) -> float:
        """Share of labels detected."""
        return self.detected / self.labels if self.labels else float("nan")


def score(
    labels: Iterable[dict[str, Any]], alerts: Iterable[dict[str, Any]], *, risk_lead_h: float = 48.0
) -> tuple[dict[str, Score], dict[str, int]]:
    """Per scenario type, its :class:`Score`; and false alarms per alert type."""
    opens = defaultdict(list)
    for a in alerts:
        if a["status"] == "OPEN":
            opens[a["store_id"], a["sku"]].append((ms(a["event_time"]), a["alert_type"]))
    scores: dict[str, Score] = defaultdict(Score)
    explained: set[tuple[str, str, int, str]] = set()
    labelled = set()
    for lab in labels:
        key = (lab["store_id"], lab["sku"])
        labelled.add(key)
        start = ms(lab["start"])
        end = ms(lab["end"]) + 24 * HOUR_MS if lab.get("end") else None
        s = scores[lab["scenario"]]
        s.labels += 1
        detected = False
        for t, kind in opens.get(key, []):
            earliest = start - (risk_lead_h * HOUR_MS if kind == "STOCKOUT_RISK" else 0)
            if kind in lab["expected_alert"] and t >= earliest and (end is None or t <= end):
                explained.add((*key, t, kind))
                detected = True
        s.detected += detected
    false_alarms: dict[str, int] = defaultdict(int)
    for key, items in opens.items():
        for t, kind in items:
            if kind in RATE_TYPES and (*key, t, kind) not in explained and key not in labelled:
                false_alarms[kind] += 1
    return dict(scores), dict(false_alarms)
