"""The demand-sensing dataflow, the same for Kafka (``run``), files (``replay``) and the ``demo``.

Shape::

    batches (kind, [RawRecord])  -> decode+validate -> (store_id, [event]) -> store state
                                     '-> dead letters                          |-> alerts, triggers, late
                                                                               '-> Redis views
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from demandsense import metrics
from demandsense.serde import Codec, JsonCodec, make_codec
from demandsense.validate import read_event
from flows.sinks import ConsoleSink, JsonlSink, KafkaSink, Out
from flows.sources import Batch, FileBatchSource, KafkaBatchSource
from operators.events import Alert, DeadLetter, Event, Origin, Trigger
from operators.policy import Policy
from operators.store import StoreOut, StoreState
from state.views import ItemView

KINDS = ("Sale", "InventoryEvent", "ItemParams")


@dataclass(frozen=True)
class Topics:
    """Kafka topics (contract defaults)."""

    sales: str = "retail.sales.v1"
    inventory: str = "retail.inventory.v1"
    items: str = "retail.item-params.v1"
    alerts: str = "retail.demand-alerts.v1"
    triggers: str = "retail.replenishment-triggers.v1"
    dead_letter: str = "retail.dead-letter.v1"

    def inputs(self) -> dict[str, str]:
        """Record type -> input topic."""
        return {"Sale": self.sales, "InventoryEvent": self.inventory, "ItemParams": self.items}

    def outputs(self) -> dict[str, str]:
        """Record type -> output topic."""
        return {"Alert": self.alerts, "ReplenishmentTrigger": self.triggers, "DeadLetter": self.dead_letter}


@dataclass(frozen=True)
class KafkaIO:
    """Where ``run`` and ``demo`` read and write."""

    config: dict  # librdkafka settings: bootstrap.servers, security, group.id
    topics: Topics = field(default_factory=Topics)
    fmt: str = "avro"
    registry_url: str | None = None
    from_beginning: bool = False
    exit_at_end: bool = False
    duration_s: float | None = None


@dataclass(frozen=True)
class FileIO:
    """Where ``replay`` reads and writes."""

    sales: Path
    alerts_out: Path
    inventory: Path | None = None
    items: Path | None = None
    triggers_out: Path | None = None
    dead_letter_out: Path | None = None


@dataclass(frozen=True)
class FlowSettings:
    """Everything a flow needs; built by the command line."""

    io: KafkaIO | FileIO
    policy: Policy = field(default_factory=Policy)
    redis: dict | None = None  # keyword arguments of ``RedisViews.from_url``
    print_alerts: bool = False


@dataclass(slots=True)
class Decoded:
    """A decoded batch: valid events grouped by store, and dead letters."""

    by_store: dict[str, list[Event]]
    dead: list[DeadLetter]


class Decoder:
    """Decode and validate batches; every record ends as an event or a dead letter."""

    def __init__(self, codecs: dict[str, Codec], policy: Policy) -> None:
        self._codecs = codecs
        self._max_quantity = policy.max_quantity

    def __call__(self, batch: Batch) -> Decoded:
        kind, records = batch
        codec, now_ms = self._codecs[kind], int(time.time() * 1000)
        out = Decoded({}, [])
        dead = 0
        for r in records:
            ev = read_event(
                kind,
                r.value,
                codec,
                Origin(r.source, r.partition, r.offset),
                key=r.key,
                now_ms=now_ms,
                max_quantity=self._max_quantity,
            )
            if isinstance(ev, DeadLetter):
                out.dead.append(ev)
                metrics.DEAD_LETTERS.labels(ev.stage, ev.reason).inc()
                dead += 1
            else:
                out.by_store.setdefault(ev.store_id, []).append(ev)
        if dead:
            metrics.EVENTS_IN.labels(records[0].source, "dead_letter").inc(dead)
        return out


@dataclass(slots=True)
class Sensed:
    """What one store batch produced, ready for the sinks."""

    alerts: list[Alert]
    triggers: list[Trigger]
    late: list[DeadLetter]
    views: list[ItemView]


class SenseLogic(StatefulLogic[list[Event], Sensed, bytes]):
    """Bytewax glue around :class:`StoreState`: one per store; snapshots are pickled bytes."""

    def __init__(self, state: StoreState, policy: Policy, with_views: bool) -> None:
        self.state, self.policy, self.with_views = state, policy, with_views

    def on_item(self, value: list[Event]) -> tuple[list[Sensed], bool]:
        if not self.state.store_id:  # the builder does not see the key; the events carry it
            self.state.store_id = value[0].store_id
        return [self._sensed(self.state.on_events(value, self.policy))], StatefulLogic.RETAIN

    def on_eof(self) -> tuple[list[Sensed], bool]:
        return [self._sensed(self.state.flush(self.policy))], StatefulLogic.RETAIN

    def snapshot(self) -> bytes:
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)

    def _sensed(self, out: StoreOut) -> Sensed:
        for (source, outcome), n in out.counts.items():
            metrics.EVENTS_IN.labels(source, outcome).inc(n)
        for a in out.alerts:
            metrics.ALERTS_OUT.labels(a.alert_type, a.severity).inc()
        for t in out.triggers:
            metrics.TRIGGERS_OUT.labels(t.approval).inc()
        for d in out.late:
            metrics.DEAD_LETTERS.labels(d.stage, d.reason).inc()
        if out.evicted:
            metrics.KEYS_EVICTED.inc(out.evicted)
        if self.state.max_seen is not None:
            metrics.EVENT_TIME_LAG.set(max(0.0, time.time() - self.state.max_seen / 1000))
        views = []
        if self.with_views:
            sid = self.state.store_id
            for sku in out.changed:
                if sku in self.state.items:
                    t = self.state.items[sku].t
                    views.append(ItemView(store_id=sid, sku=sku, event_time=t, **self.state.view(sku, self.policy)))
        return Sensed(out.alerts, out.triggers, out.late, views)


class _ViewsPartition(StatelessSinkPartition[Sensed]):
    def __init__(self, redis_args: dict) -> None:
        from state.views import RedisViews

        self._views = RedisViews.from_url(**redis_args)

    def write_batch(self, items: list[Sensed]) -> None:
        views = [v for s in items for v in s.views]
        alerts = [a for s in items for a in s.alerts]
        if views or alerts:
            self._views.write(views, alerts)


class ViewsSink(DynamicSink[Sensed]):
    """Redis live views for analysts; an outage is retried, never stops the flow."""

    def __init__(self, redis_args: dict) -> None:
        self._args = redis_args

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ViewsPartition:
        return _ViewsPartition(self._args)


def build_flow(settings: FlowSettings) -> Dataflow:
    """The demand-sensing dataflow for ``settings``."""
    flow = Dataflow("demandsense")
    io, policy = settings.io, settings.policy
    if isinstance(io, KafkaIO):
        source = KafkaBatchSource(
            io.config,
            io.topics.inputs(),
            from_beginning=io.from_beginning,
            exit_at_end=io.exit_at_end,
            duration_s=io.duration_s,
        )
        codecs = {k: make_codec(io.fmt, k, topic=io.topics.inputs()[k], registry_url=io.registry_url) for k in KINDS}
    else:
        files = {"ItemParams": io.items, "InventoryEvent": io.inventory, "Sale": io.sales}
        source = FileBatchSource({k: p for k, p in files.items() if p is not None})
        codecs = {k: JsonCodec() for k in KINDS}

    batches = op.input("in", flow, source)  # (kind, [RawRecord])
    decoded = op.map("decode", batches, Decoder(codecs, policy))  # Decoded
    dead = op.flat_map("dead_letters", decoded, lambda d: d.dead)  # DeadLetter
    per_store = op.flat_map("by_store", decoded, lambda d: list(d.by_store.items()))  # (store_id, [event])
    keyed = op.stateful("sense", per_store, _builder_for(policy, settings.redis is not None))  # (store_id, Sensed)
    sensed = op.map("unkey", keyed, lambda kv: kv[1])  # Sensed
    alerts = op.flat_map("alerts", sensed, lambda s: s.alerts)  # Alert
    triggers = op.flat_map("triggers", sensed, lambda s: s.triggers)  # Trigger
    late = op.flat_map("late", sensed, lambda s: s.late)  # DeadLetter (LATE)
    dead_all = op.merge("all_dead", dead, late)  # DeadLetter

    if isinstance(io, KafkaIO):
        out: op.Stream[Out] = op.merge("out", alerts, triggers, dead_all)
        op.output("kafka_out", out, KafkaSink(io.config, io.topics.outputs(), io.fmt, io.registry_url))
    else:
        op.output("alerts_out", alerts, JsonlSink(io.alerts_out))
        if io.triggers_out is not None:
            op.output("triggers_out", triggers, JsonlSink(io.triggers_out))
        if io.dead_letter_out is not None:
            op.output("dead_out", dead_all, JsonlSink(io.dead_letter_out))
    if settings.redis is not None:
        op.output("views_out", sensed, ViewsSink(settings.redis))
    if settings.print_alerts:
        op.output("console", alerts, ConsoleSink())
    return flow


def _builder_for(policy: Policy, with_views: bool):
    """Builder of each store's logic: resumes from its pickled snapshot, or starts empty."""

    def build(resume: bytes | None) -> SenseLogic:
        return SenseLogic(pickle.loads(resume) if resume else StoreState(""), policy, with_views)

    return build
