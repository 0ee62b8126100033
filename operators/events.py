"""Typed records that flow through demandsense. Times are epoch milliseconds (UTC)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

CHANNELS: Final = ("STORE", "ONLINE", "PICKUP", "MARKETPLACE")
COUNT_TYPES: Final = ("SNAPSHOT", "CYCLE_COUNT", "SHELF_SCAN")
DELTA_TYPES: Final = (
    "RECEIPT",
    "TRANSFER_IN",
    "TRANSFER_OUT",
    "ADJUSTMENT",
    "SHRINK",
    "RETURN",
    "RESERVATION",
    "RESERVATION_RELEASE",
)
INVENTORY_TYPES: Final = COUNT_TYPES + DELTA_TYPES
ALERT_TYPES: Final = ("DEMAND_SPIKE", "DEMAND_DROP", "STOCKOUT_RISK", "OUT_OF_STOCK", "PHANTOM_INVENTORY")
HOUR_MS: Final = 3_600_000


@dataclass(slots=True, init=False)
class Origin:
    """Where a record was read: topic (or file), partition (-1 for files), offset (or line)."""

    source: str
    partition: int
    offset: int

    def __init__(self, source: str = "", partition: int = -1, offset: int = -1) -> None:
        self.source, self.partition, self.offset = source, partition, offset

    def __reduce__(self) -> tuple:
        return (Origin, (self.source, self.partition, self.offset))

    def where(self) -> str:
        """``topic[partition]@offset``, or ``file:line`` (a JSONL line, or an Avro container's record)."""
        if self.partition < 0:
            return f"{self.source}:{self.offset}"
        return f"{self.source}[{self.partition}]@{self.offset}"


@dataclass(slots=True, init=False)
class Sale:
    """Units of one SKU sold in one store in one transaction."""

    event_id: str
    event_time: int
    store_id: str
    sku: str
    channel: str
    quantity: int
    unit_price: float
    promo_id: str | None
    origin: Origin | None = field(compare=False)

    def __init__(
        self, event_id: str = "", event_time: int = 0, store_id: str = "", sku: str = "", channel: str = "",
        quantity: int = 0, unit_price: float = 0.0, promo_id: str | None = None, origin: Origin | None = None,
    ) -> None:  # fmt: skip
        self.event_id, self.event_time, self.store_id, self.sku = event_id, event_time, store_id, sku
        self.channel, self.quantity, self.unit_price = channel, quantity, unit_price
        self.promo_id, self.origin = promo_id, origin

    def __reduce__(self) -> tuple:
        return (Sale, (self.event_id, self.event_time, self.store_id, self.sku, self.channel, self.quantity,
                       self.unit_price, self.promo_id, self.origin))  # fmt: skip


@dataclass(slots=True, init=False)
class InventoryEvent:
    """A count of (``on_hand``) or a signed change to (``quantity``) the stock of one item."""

    event_id: str
    event_time: int
    store_id: str
    sku: str
    event_type: str
    quantity: int
    on_hand: int | None
    in_transit: int | None
    origin: Origin | None = field(compare=False)

    def __init__(
        self, event_id: str = "", event_time: int = 0, store_id: str = "", sku: str = "", event_type: str = "",
        quantity: int = 0, on_hand: int | None = None, in_transit: int | None = None, origin: Origin | None = None,
    ) -> None:  # fmt: skip
        self.event_id, self.event_time, self.store_id, self.sku = event_id, event_time, store_id, sku
        self.event_type, self.quantity, self.on_hand, self.in_transit = event_type, quantity, on_hand, in_transit
        self.origin = origin

    def __reduce__(self) -> tuple:
        return (InventoryEvent, (self.event_id, self.event_time, self.store_id, self.sku, self.event_type,
                                 self.quantity, self.on_hand, self.in_transit, self.origin))  # fmt: skip


@dataclass(slots=True)
class ItemParams:
    """Master data of one item; ``None`` fields take the policy's defaults."""

    store_id: str
    sku: str
    unit_price: float | None = None
    unit_cost: float | None = None
    lead_time_hours: float | None = None
    service_level: float | None = None
    pack_size: int | None = None
    min_qty: int | None = None
    max_qty: int | None = None
    category: str | None = None

    def __reduce__(self) -> tuple:
        fields = (self.unit_price, self.unit_cost, self.lead_time_hours, self.service_level, self.pack_size,
                  self.min_qty, self.max_qty, self.category)  # fmt: skip
        return (ItemParams, (self.store_id, self.sku, *fields))


Event = Sale | InventoryEvent | ItemParams
"""An input event. Treat it as read-only.

The events and :class:`Origin` are plain (not frozen) dataclasses with an ``__init__`` and a ``__reduce__`` of
their own, so that compiled (mypyc) each is a native class, built by a C call and read field by field: a
generated or frozen ``__init__`` stays Python (reading and validating a sale took 2.0 µs with one, 1.5 now; a
frozen sale took 2.9 µs to build). ``__reduce__`` pickles each as its fields (cluster exchange, snapshots). The
``__init__`` arguments have defaults only because snapshots from before 2026-11-24 create an event empty and
then set its fields. :class:`Alert` and :class:`Trigger` are built and pickled the same way (a frozen Trigger's
``__init__`` cost about 24,000 instructions, and compiled, a frozen output record could not be unpickled)."""


@dataclass(slots=True, init=False)
class Alert:
    """A prioritised alert, as published on the alerts topic (see ``avro/Alert.avsc``). Treat it as read-only."""

    alert_id: str
    alert_type: str
    status: str
    store_id: str
    sku: str
    event_time: int
    priority: int
    severity: str
    expected_rate: float
    observed_rate: float
    confidence: float
    hours_to_stockout: float | None
    revenue_at_risk: float | None
    reason: str
    model_version: str
    evidence: dict[str, float]

    def __init__(
        self, alert_id: str, alert_type: str, status: str, store_id: str, sku: str, event_time: int, priority: int,
        severity: str, expected_rate: float, observed_rate: float, confidence: float, hours_to_stockout: float | None,
        revenue_at_risk: float | None, reason: str, model_version: str, evidence: dict[str, float],
    ) -> None:  # fmt: skip
        self.alert_id, self.alert_type, self.status = alert_id, alert_type, status
        self.store_id, self.sku = store_id, sku
        self.event_time, self.priority, self.severity = event_time, priority, severity
        self.expected_rate, self.observed_rate, self.confidence = expected_rate, observed_rate, confidence
        self.hours_to_stockout, self.revenue_at_risk = hours_to_stockout, revenue_at_risk
        self.reason, self.model_version, self.evidence = reason, model_version, evidence

    def __reduce__(self) -> tuple:
        return (Alert, (self.alert_id, self.alert_type, self.status, self.store_id, self.sku, self.event_time,
                        self.priority, self.severity, self.expected_rate, self.observed_rate, self.confidence,
                        self.hours_to_stockout, self.revenue_at_risk, self.reason, self.model_version,
                        self.evidence))  # fmt: skip


@dataclass(slots=True, init=False)
class Trigger:
    """A governed order proposal (see ``avro/ReplenishmentTrigger.avsc``). Treat it as read-only."""

    trigger_id: str
    store_id: str
    sku: str
    event_time: int
    order_quantity: int
    inventory_position: int
    reorder_point: float
    order_up_to: float
    lead_time_hours: float
    demand_rate_per_hour: float
    approval: str
    approval_reason: str
    policy: str
    model_version: str
    fallback: bool

    def __init__(
        self, trigger_id: str, store_id: str, sku: str, event_time: int, order_quantity: int, inventory_position: int,
        reorder_point: float, order_up_to: float, lead_time_hours: float, demand_rate_per_hour: float, approval: str,
        approval_reason: str, policy: str, model_version: str, fallback: bool,
    ) -> None:  # fmt: skip
        self.trigger_id, self.store_id, self.sku, self.event_time = trigger_id, store_id, sku, event_time
        self.order_quantity, self.inventory_position = order_quantity, inventory_position
        self.reorder_point, self.order_up_to, self.lead_time_hours = reorder_point, order_up_to, lead_time_hours
        self.demand_rate_per_hour, self.approval, self.approval_reason = demand_rate_per_hour, approval, approval_reason
        self.policy, self.model_version, self.fallback = policy, model_version, fallback

    def __reduce__(self) -> tuple:
        return (Trigger, (self.trigger_id, self.store_id, self.sku, self.event_time, self.order_quantity,
                          self.inventory_position, self.reorder_point, self.order_up_to, self.lead_time_hours,
                          self.demand_rate_per_hour, self.approval, self.approval_reason, self.policy,
                          self.model_version, self.fallback))  # fmt: skip


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input record that could not be used, and why (see ``avro/DeadLetter.avsc``)."""

    source_topic: str
    partition: int
    offset: int
    key: str | None
    raw: bytes
    error: str
    stage: str
    reason: str

    def __reduce__(self) -> tuple:  # compiled, a frozen dataclass cannot be unpickled field by field
        return (DeadLetter, (self.source_topic, self.partition, self.offset, self.key, self.raw, self.error,
                             self.stage, self.reason))  # fmt: skip


def key_on(store_id: str, sku: str) -> str:
    """The contract key of an item: ``"store_id:sku"``."""
    return f"{store_id}:{sku}"
