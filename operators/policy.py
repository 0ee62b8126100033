"""Tunable parameters of detection, prioritisation and replenishment, with documented defaults.

A :class:`Policy` is built from the ``[detection]``, ``[items]``, ``[governance]`` and ``[alerts]``
tables of the policy TOML (see ``docs/policy.example.toml``); unknown keys are errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Final

MODEL_VERSION: Final = "ds-poisson-cusum/1.0"
MAX_LEAD_TIME_HOURS: Final = 24 * 366  # a year: replenishment looks ahead day by day over the lead time


@dataclass(frozen=True, slots=True)
class Detection:
    """Event time, warm-up and detector settings."""

    allowed_lateness_s: float = 300.0  # events this far behind the newest are reordered; later is LATE
    stream_idle_s: float = 120.0  # an input stream quiet this long no longer holds a store's clock back
    partition_progress: bool = False  # a partition's newest record timestamp, of any store, moves every store's clock
    tick_minutes: float = 15.0  # cadence of time-driven checks (drops, phantom, stockout) in event time
    dedup_horizon_s: float = 3_600.0  # event ids remembered past the watermark, for duplicates
    spike_ratio: float = 3.0  # CUSUM tuned to detect this multiple of the expected rate
    spike_threshold: float = 9.0  # log-likelihood-ratio threshold of the spike CUSUM
    drop_ratio: float = 0.25  # CUSUM tuned to detect a fall to this fraction of the expected rate
    drop_threshold: float = 9.0
    phantom_threshold: float = 7.0  # least expected sales in a silent run before it is improbable (-ln p)
    phantom_false_alarms_per_day: float = 0.005  # a fast mover's silent-run threshold keeps to this
    threshold_rate_per_day: float = 50.0  # spike and drop thresholds rise by ln(sales a day / this)
    stockout_risk: float = 0.5  # probability of running out within the lead time that raises STOCKOUT_RISK
    warmup_hours: float = 24.0  # event time a store must be seen before rate-based detectors arm
    min_history_sales: int = 8  # sales an item must have before drop, phantom and risk detectors arm
    prior_weight_hours: float = 4.0  # profile-hours of store/category prior in a new item's rate
    memory_hours: float = 336.0  # profile-hours over which an item's rate forgets (about 2-3 weeks)
    promo_lift: float = 2.0  # expected lift of a known promotion until the item's own is learned
    prior_change_odds: float = 0.01  # prior odds of a change, turning likelihood ratios into confidence
    idle_hours: float = 72.0  # after this long without events an item sheds its detail
    max_items_per_store: int = 250_000  # beyond this the longest-idle items without open alerts are evicted
    max_event_ids_per_store: int = 2_000_000  # dedup memory bound; the oldest ids go first

    def __post_init__(self) -> None:
        _check(self, "detection", "above 1", lambda v: v > 1, "spike_ratio")
        _check(self, "detection", "between 0 and 1", lambda v: 0 < v < 1, "drop_ratio", "stockout_risk")
        _check(self, "detection", "1 or more (a check a minute)", lambda v: v >= 1, "tick_minutes")
        _above_zero(self, "detection", "memory_hours", "stream_idle_s", "spike_threshold",
                    "drop_threshold", "phantom_threshold", "phantom_false_alarms_per_day", "threshold_rate_per_day",
                    "prior_change_odds", "promo_lift", "idle_hours", "max_items_per_store",
                    "max_event_ids_per_store")  # fmt: skip
        _not_negative(self, "detection", "allowed_lateness_s", "dedup_horizon_s", "warmup_hours", "min_history_sales",
                      "prior_weight_hours")  # fmt: skip


@dataclass(frozen=True, slots=True)
class ItemDefaults:
    """Master data for items that have no ItemParams record."""

    unit_price: float = 5.0
    unit_cost: float = 3.0
    lead_time_hours: float = 48.0
    service_level: float = 0.95
    pack_size: int = 1
    min_qty: int = 4
    max_qty: int = 24
    cycle_hours: float = 24.0  # demand an order should cover beyond the lead time (review cycle)

    def __post_init__(self) -> None:
        _check(self, "items", "between 0 and 1", lambda v: 0 < v < 1, "service_level")
        _check(self, "items", "1 or more", lambda v: v >= 1, "pack_size")
        _check(
            self, "items", f"in (0, {MAX_LEAD_TIME_HOURS}]", lambda v: 0 < v <= MAX_LEAD_TIME_HOURS, "lead_time_hours"
        )
        _not_negative(self, "items", "unit_price", "unit_cost", "cycle_hours", "max_qty")
        _check(
            self, "items", f"between 0 and items.max_qty ({self.max_qty})", lambda v: 0 <= v <= self.max_qty, "min_qty"
        )


@dataclass(frozen=True, slots=True)
class Governance:
    """When a replenishment trigger is auto-approved, and when it falls back to static min-max."""

    max_auto_qty: int = 500
    max_auto_value: float = 2_500.0
    min_history_sales: int = 20  # fewer sales than this: the model is unsure, use static min-max
    stale_hours: float = 168.0  # inventory not counted for this long: stale, use static min-max

    def __post_init__(self) -> None:
        _not_negative(self, "governance", "max_auto_qty", "max_auto_value", "min_history_sales")
        _above_zero(self, "governance", "stale_hours")


@dataclass(frozen=True, slots=True)
class Alerting:
    """Priority scale, update and cooldown rules."""

    revenue_scale: float = 250.0  # revenue at risk that gives 63% of the value part of priority
    update_delta: int = 20  # priority change that warrants an UPDATE
    cooldown_minutes: float = 60.0  # quiet time per key and type after RESOLVED before a new OPEN
    min_update_minutes: float = 120.0

    def __post_init__(self) -> None:
        _above_zero(self, "alerts", "revenue_scale")
        _not_negative(self, "alerts", "update_delta", "cooldown_minutes", "min_update_minutes")


@dataclass(frozen=True, slots=True)
class Policy:
    """All settings of the decision layer."""

    detection: Detection = field(default_factory=Detection)
    items: ItemDefaults = field(default_factory=ItemDefaults)
    governance: Governance = field(default_factory=Governance)
    alerts: Alerting = field(default_factory=Alerting)
    max_quantity: int | None = None  # per-record quantity bound; larger records are dead letters

    def __post_init__(self) -> None:
        _require(
            self.max_quantity is None or self.max_quantity >= 1,
            f"max_quantity must be 1 or more, got {self.max_quantity}",
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        """A policy from parsed TOML; raises ``ValueError`` naming an unknown or mistyped key."""
        sections = {"detection": Detection, "items": ItemDefaults, "governance": Governance, "alerts": Alerting}
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            if name == "max_quantity":
                _require(_is_int(value), f"policy key max_quantity must be an integer, got {value!r}")
                kwargs[name] = value
                continue
            if name not in sections:
                raise ValueError(f"unknown policy section [{name}]; expected one of {sorted(sections)}")
            kwargs[name] = _section(sections[name], name, value)
        return cls(**kwargs)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _check(section: Any, name: str, rule: str, ok: Callable[[float], bool], *keys: str) -> None:
    """Refuse the first of ``keys`` that is not finite or fails ``ok``, naming it, its ``rule`` and its value."""
    for key in keys:
        value = getattr(section, key)
        _require(math.isfinite(value) and ok(value), f"{name}.{key} must be {rule}, got {value!r}")


def _above_zero(section: Any, name: str, *keys: str) -> None:
    _check(section, name, "above 0", lambda v: v > 0, *keys)


def _not_negative(section: Any, name: str, *keys: str) -> None:
    _check(section, name, "0 or more", lambda v: v >= 0, *keys)


def _is_int(value: object) -> bool:
    """An integer, not a bool (TOML's ``true`` is no count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _section(kind: type, name: str, values: dict[str, Any]) -> Any:
    if not isinstance(values, dict):
        raise ValueError(f"policy section [{name}] must be a table, got {values!r}")
    known = {f.name: f for f in fields(kind)}
    out = {}
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"unknown policy key {name}.{key}; expected one of {sorted(known)}")
        default = getattr(kind(), key)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"policy key {name}.{key} must be true or false, got {value!r}")
        elif isinstance(default, int):
            if not _is_int(value):
                raise ValueError(f"policy key {name}.{key} must be an integer, got {value!r}")
        elif not (_is_int(value) or isinstance(value, float)):
            raise ValueError(f"policy key {name}.{key} must be a number, got {value!r}")
        out[key] = type(default)(value)
    return kind(**out)
