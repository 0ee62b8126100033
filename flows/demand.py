"""The demand-sensing dataflow, the same for Kafka (``run``), files (``replay``) and the ``demo``.

Shape::

    batches [RawRecord] -> by store (key) -> (store_id, [RawRecord]) -> decode+validate -> store state
                                                                                             |-> alerts, triggers
                                                                                             |-> dead letters
                                                                                             '-> Redis views

In a cluster one worker of process 0 reads and routes every record, the stores are spread over every
worker, and the last process writes the Kafka outputs and the views (:class:`flows.sinks.OnWriter`).
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.run import cli_main

from demandsense import metrics
from demandsense.errors import ConfigError
from demandsense.serde import Codec, JsonCodec, make_codec
from demandsense.threadstate import keep_thread_state
from demandsense.validate import dead_letter, read_event, read_records
from flows import sources
from flows.sinks import ConsoleSink, JsonlSink, KafkaSink, OnWriter, Out, check_producer
from flows.sources import (
    KEY,
    OFFSET,
    PARTITION,
    SOURCE,
    TIMESTAMP,
    Batch,
    Control,
    ControlSource,
    FileBatchSource,
    KafkaBatchSource,
    RawRecord,
    marker_keys,
)
from operators.events import Alert, DeadLetter, Event, ItemParams, Origin, Trigger
from operators.policy import Policy
from operators.store import StoreOut, StoreState
from state.views import ItemView, connect

log = logging.getLogger("demandsense.flow")
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
    process_id: int = 0  # this process in a cluster
    processes: int = 1  # processes in the cluster
    workers: int = 1  # workers per process


@dataclass(frozen=True)
class FileIO:
    """Where ``replay`` reads and writes."""

    sales: Path
    alerts_out: Path
    inventory: Path | None = None
    items: Path | None = None
    triggers_out: Path | None = None
    dead_letter_out: Path | None = None

    def inputs(self) -> dict[str, Path]:
        """Record type -> input file, of the files given, item params first."""
        files = {"ItemParams": self.items, "InventoryEvent": self.inventory, "Sale": self.sales}
        return {kind: path for kind, path in files.items() if path is not None}


CATCHING_UP_LAG_S = 300.0  # a store whose event time is further behind the wall clock is catching up


@dataclass(frozen=True)
class ViewsPace:
    """How often a store refreshes the views of the items that changed: live, and while catching up.

    An item that changes many times between refreshes is viewed once, as it is then: in a backfill
    most items change every few seconds, so refreshing less often is what keeps views cheap (at
    10 s, views took a sixth of a 1M-event backfill's time: bench/results/throughput.md).
    """

    live_s: float = 1.0
    catching_up_s: float = 60.0

    def interval(self, event_time_ms: int | None, now: float) -> float:
        """Seconds between refreshes for a store whose newest event time is ``event_time_ms``."""
        behind = event_time_ms is not None and now - event_time_ms / 1000 > CATCHING_UP_LAG_S
        return self.catching_up_s if behind else self.live_s


@dataclass(frozen=True)
class FlowSettings:
    """Everything a flow needs; built by the command line."""

    io: KafkaIO | FileIO
    policy: Policy = field(default_factory=Policy)
    redis: dict | None = None  # keyword arguments of ``RedisViews.from_url``
    print_alerts: bool = False
    views_pace: ViewsPace = field(default_factory=ViewsPace)  # how often item views are refreshed
    recovery: bool = False  # snapshots are kept (``--recovery-dir``); else Bytewax's snapshot calls cost nothing


class DeadLetterLog:
    """Counts each dead letter in the metrics and logs it: the first of each stage and reason at once, then at
    most one line per ``every_s`` for each, saying how many more there were and the latest's error; :meth:`flush`
    logs the ones still untold when the flow ends. ``clock`` gives seconds (tests pass their own)."""

    def __init__(self, every_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._every_s, self._clock = every_s, clock
        self._lock = threading.Lock()
        # (stage, reason) -> (last logged, how many not logged since, the error of the latest of those)
        self._since: dict[tuple[str, str], tuple[float, int, str]] = {}

    def count(self, d: DeadLetter) -> None:
        metrics.DEAD_LETTERS.labels(d.stage, d.reason).inc()
        kind, now = (d.stage, d.reason), self._clock()
        with self._lock:
            logged, waiting, _ = self._since.get(kind, (float("-inf"), 0, ""))
            if now - logged < self._every_s:
                self._since[kind] = (logged, waiting + 1, d.error)
                return
            self._since[kind] = (now, 0, "")
        more = f" ({waiting} more since the last line)" if waiting else ""
        log.warning("dead letter (%s, %s)%s: %s", d.stage, d.reason, more, d.error)

    def flush(self) -> None:
        """Log how many of each stage and reason were not logged since its last line, with the latest's error, and
        start afresh (the next of each is logged at once)."""
        with self._lock:
            since, self._since = self._since, {}
        for (stage, reason), (_, waiting, error) in since.items():
            if waiting:
                log.warning(
                    "dead letter (%s, %s) (%d more since the last line, the last): %s", stage, reason, waiting, error
                )


DEAD_LOG = DeadLetterLog()


class Decoder:
    """Decode and validate the records of one store; every record ends as an event or a dead letter."""

    def __init__(self, codecs: dict[str, Codec], policy: Policy) -> None:
        self._codecs = codecs
        self._max_quantity = policy.max_quantity

    def read(self, record: RawRecord, now_ms: int) -> Event | DeadLetter:
        """One record as an event, or the dead letter saying why it is not one (not counted)."""
        kind, source, partition, offset, key, value, _ = record
        codec, origin = self._codecs[kind], Origin(source, partition, offset)
        return read_event(kind, value, codec, origin, key=key, now_ms=now_ms, max_quantity=self._max_quantity)

    def __call__(self, store_id: str, records: list[RawRecord]) -> tuple[list[Event], list[DeadLetter]]:
        """The events of ``records`` and their dead letters, counted in the metrics.

        Each record was routed here by its key (:class:`Router`): one of another store is a dead letter.
        Item params are applied on arrival, so they are counted ok here.
        """
        events, dead, params = read_records(
            records, self._codecs, store_id, int(time.time() * 1000), self._max_quantity
        )
        for d in dead:
            DEAD_LOG.count(d)
            metrics.EVENTS_IN.labels(d.source_topic, "dead_letter").inc()
        for source, n in params.items():
            metrics.EVENTS_IN.labels(source, "ok").inc(n)
        return events, dead


Delivery = tuple[str, list[RawRecord], int, dict[tuple[str, int], int] | None]
"""What a store receives from a batch: its id, its records, their newest Kafka timestamp (ms), and the progress of
every input stream (with ``Detection.partition_progress``)."""


_TIMESTAMP_OF = itemgetter(TIMESTAMP)


def _newest(records: list[RawRecord]) -> int:
    """The newest Kafka timestamp of the records (0 if none has one)."""
    return max(max(map(_TIMESTAMP_OF, records)), 0)


class Router:
    """Split each polled batch by store, so that each store decodes its own records (on whichever worker holds it).

    A record's store is the part of its key before the first colon (keys are ``store_id:sku``). A
    record without a key (files) is decoded here to find its store, and again at the store; one that
    cannot be read goes to the store ``""``, where decoding makes it a dead letter. ``newest`` per
    store is the newest Kafka timestamp of its records: the start of the event-to-alert latency.
    With ``Detection.partition_progress`` each delivery also carries the newest timestamp read so
    far from each input stream, of any store, no further than the wall clock (a till clock far
    ahead must not move every store of its partition); producers stamp records with their event
    time (see :class:`operators.store.StoreState`). A control marker goes to every worker.
    """

    def __init__(self, decoder: Decoder, policy: Policy, markers: list[str]) -> None:
        self._decoder, self._markers = decoder, markers
        self._progress: dict[tuple[str, int], int] | None = {} if policy.detection.partition_progress else None

    def __call__(self, item: Batch | Control) -> list[tuple[str, Delivery | Control]]:
        if isinstance(item, Control):
            return [(k, item) for k in self._markers]
        progress = self._moved(item)
        return [(store, (store, records, _newest(records), progress)) for store, records in self._split(item)]

    def _split(self, batch: Batch) -> list[tuple[str, list[RawRecord]]]:
        """The batch's records by store, each store's in read order (grouped by the key's bytes before the colon)."""
        by_prefix: defaultdict[bytes, list[RawRecord]] = defaultdict(list)
        try:
            for r in batch:
                store, colon, _ = r[KEY].partition(b":")  # AttributeError: no key
                if not colon:
                    return self._split_reading(batch)
                by_prefix[store].append(r)
        except AttributeError:
            return self._split_reading(batch)
        by_store = {prefix.decode("utf-8", "replace"): records for prefix, records in by_prefix.items()}
        if len(by_store) < len(by_prefix):  # bytes that are not UTF-8 made two prefixes one store
            return self._split_reading(batch)
        return list(by_store.items())

    def _split_reading(self, batch: Batch) -> list[tuple[str, list[RawRecord]]]:
        """:meth:`_split` for a batch with a record its key does not place: that record is decoded to find its store."""
        by_store: dict[str, list[RawRecord]] = {}
        for r in batch:
            by_store.setdefault(self._store_of(r), []).append(r)
        return list(by_store.items())

    def _store_of(self, r: RawRecord) -> str:
        key = r[KEY]
        if key is not None:
            store, colon, _ = key.partition(b":")
            if colon:
                return store.decode("utf-8", "replace")
        ev = self._decoder.read(r, int(time.time() * 1000))
        return "" if isinstance(ev, DeadLetter) else ev.store_id

    def _moved(self, batch: Batch) -> dict[tuple[str, int], int] | None:
        """Each stream's newest timestamp so far, after this batch; a copy, as the stores get it later."""
        progress = self._progress
        if progress is None:
            return None
        now_ms = int(time.time() * 1000)
        for kind, source, partition, _, _, _, timestamp in batch:
            if kind != "ItemParams" and timestamp > 0:
                stream = (source, partition)
                progress[stream] = max(progress.get(stream, -1), min(timestamp, now_ms))
        return dict(progress)


class _ProcessGauges:
    """Process-wide figures summed over the stores this process holds: keys, state bytes, newest event."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        self._keys_total = self._bytes_total = 0
        self.newest_ms = 0

    def keys(self, store: str, n: int) -> None:
        with self._lock:
            self._keys_total += n - self._keys.get(store, 0)
            self._keys[store] = n
            metrics.ACTIVE_KEYS.set(self._keys_total)

    def size(self, store: str, n: int) -> None:
        with self._lock:
            self._bytes_total += n - self._bytes.get(store, 0)
            self._bytes[store] = n
            metrics.STATE_BYTES.set(self._bytes_total)

    def event_time(self, ms: int) -> None:
        if ms > self.newest_ms:
            self.newest_ms = ms
        metrics.EVENT_TIME_LAG.set(max(0.0, time.time() - self.newest_ms / 1000))


GAUGES = _ProcessGauges()
SIZE_EVERY_S = 300.0  # without snapshots, a store's pickled size is measured this often


@dataclass(slots=True)
class Sensed:
    """What one store batch produced, ready for the sinks."""

    alerts: list[Alert]
    triggers: list[Trigger]
    dead: list[DeadLetter]  # records that were not events, and late ones
    views: list[ItemView]


DAY_MS = 86_400_000
EVICTED_KEPT_MS = 365 * DAY_MS  # an evicted SKU that returns within this is counted as a model reset


class SenseLogic(StatefulLogic[Delivery | Control, Sensed, bytes]):
    """Bytewax glue around :class:`StoreState`: one per store; snapshots are pickled bytes.

    It decodes and validates the store's records with ``decoder``. The snapshot is ``(StoreState,
    evicted)``: ``evicted`` maps SKUs the store shed after a long idle spell to when, so one that
    comes back is counted in ``demandsense_model_resets``. With ``views``, the views of changed
    items go out at the :class:`ViewsPace`.
    """

    def __init__(
        self,
        state: StoreState,
        policy: Policy,
        decoder: Decoder,
        views: ViewsPace | None,
        evicted: dict[str, int] | None = None,
        *,
        recovery: bool = True,
    ) -> None:
        self.state, self.policy, self.decoder, self.views, self.recovery = state, policy, decoder, views, recovery
        self.evicted = evicted if evicted is not None else {}
        self._sized = 0.0  # wall clock of the last state size measurement
        self._dirty: set[str] = set()  # items changed since their views last went out
        self._viewed = 0.0  # wall clock of the last views

    def on_item(self, value: Delivery | Control) -> tuple[list[Sensed], bool]:
        if isinstance(value, Control):  # a marker key: note it in this process, keep no state
            (sources.STOP if value.kind == "stop" else sources.DONE).set()
            return [], StatefulLogic.DISCARD
        store_id, records, newest_ms, progress = value
        if not self.state.store_id:  # the builder does not see the key; the delivery carries it
            self.state.store_id = store_id
        events, dead = self.decoder(store_id, records)
        before = self._keys_if_evicting(events)
        out = self.state.on_events(events, self.policy, progress)
        if out.late:
            out.late = as_read(out.late, records)
        return [self._sensed(out, newest_ms, before, dead)], StatefulLogic.RETAIN

    def on_eof(self) -> tuple[list[Sensed], bool]:
        if sources.STOP.is_set():  # shutting down, not the end of input: keep the buffer for the next run
            return [], StatefulLogic.RETAIN
        sources.SPAN.ended = sources.SPAN.ended or time.time()
        before = set(self.state.items)
        return [self._sensed(self.state.flush(self.policy), 0, before, [], final=True)], StatefulLogic.RETAIN

    def snapshot(self) -> bytes:
        if not self.recovery:  # Bytewax asks at every epoch's end even without recovery: pickle nothing
            return b""
        data = pickle.dumps((self.state, self.evicted), protocol=pickle.HIGHEST_PROTOCOL)
        GAUGES.size(self.state.store_id, len(data))
        self._sized = time.time()
        return data

    def _keys_if_evicting(self, events: list[Event]) -> set[str] | None:
        """The store's SKUs before a batch that may evict some (a day's sweep, or the item cap), else None."""
        state, tick = self.state, self.state.next_tick
        if tick is None or not state.items:
            return None
        cap = getattr(self.policy.detection, "max_items_per_store", None)
        if cap is not None and len(state.items) + len(events) >= cap:
            return set(state.items)
        newest = max((e.event_time for e in events if not isinstance(e, ItemParams)), default=0)
        return set(state.items) if newest >= -(-tick // DAY_MS) * DAY_MS else None

    def _sensed(
        self, out: StoreOut, newest_ms: int, before: set[str] | None, dead: list[DeadLetter], *, final: bool = False
    ) -> Sensed:
        """The batch's outputs, counted; ``dead``: its records that were not events (counted on decoding)."""
        now = time.time()
        for (source, outcome), n in out.counts.items():
            if source != "items":  # item params are counted on decoding, by topic
                metrics.EVENTS_IN.labels(source, outcome).inc(n)
        for a in out.alerts:
            metrics.ALERTS_OUT.labels(a.alert_type, a.severity).inc()
        if newest_ms > 0 and out.alerts:
            latency = max(0.0, now - newest_ms / 1000)
            for _ in out.alerts:
                metrics.EVENT_TO_ALERT.observe(latency)
        for t in out.triggers:
            metrics.TRIGGERS_OUT.labels(t.approval).inc()
        for d in out.late:
            DEAD_LOG.count(d)
        self._resets(out, before)
        state = self.state
        if state.max_seen is not None:
            GAUGES.event_time(state.max_seen)
        GAUGES.keys(state.store_id, len(state.items))
        if now - self._sized > SIZE_EVERY_S:
            self._sized = now
            GAUGES.size(state.store_id, len(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)))
        return Sensed(out.alerts, out.triggers, dead + out.late, self._views(out.changed, now, final))

    def _views(self, changed: set[str], now: float, final: bool) -> list[ItemView]:
        """Views of the items changed since the last ones, when the pace says so (or at the end)."""
        if self.views is None:
            return []
        self._dirty |= changed
        state = self.state
        if not self._dirty or (not final and now - self._viewed < self.views.interval(state.max_seen, now)):
            return []
        sid, items = state.store_id, state.items
        views = [
            ItemView(store_id=sid, sku=sku, event_time=items[sku].t, **state.view(sku, self.policy))
            for sku in self._dirty
            if sku in items
        ]
        self._dirty, self._viewed = set(), now
        return views

    def _resets(self, out: StoreOut, before: set[str] | None) -> None:
        """Count SKUs that come back after eviction (their models start cold); remember new evictions."""
        evicted = self.evicted
        if evicted:
            back = [sku for sku in out.changed if sku in evicted]
            for sku in back:
                del evicted[sku]
            if back:
                metrics.MODEL_RESETS.inc(len(back))
        if out.evicted:
            metrics.KEYS_EVICTED.inc(out.evicted)
            if before is not None:
                when = self.state.released or 0
                for sku in before.difference(self.state.items):
                    evicted[sku] = when
                for sku in [k for k, t in evicted.items() if t < when - EVICTED_KEPT_MS]:
                    del evicted[sku]


def as_read(late: list[DeadLetter], records: list[RawRecord]) -> list[DeadLetter]:
    """Late dead letters with the key and bytes their records were read with (the store sees only events), bounded
    like every dead letter (:func:`demandsense.validate.dead_letter`)."""
    read = {(r[SOURCE], r[PARTITION], r[OFFSET]): r for r in records}
    out = []
    for d in late:
        r = read.get((d.source_topic, d.partition, d.offset))
        if r is None:
            out.append(d)
            continue
        _, source, partition, offset, key, value, _ = r
        out.append(dead_letter(Origin(source, partition, offset), key, value or b"", d.error, d.stage, d.reason))
    return out


class _ViewsPartition(StatelessSinkPartition[Sensed]):
    """Coalesces views and writes them from a background thread every ``flush_s``.

    An item that changed many times within ``flush_s`` is written once, as it is last. The writer
    thread waits on Redis while the worker goes on (views are idempotent and best effort; an
    outage is buffered and retried by :class:`RedisViews`).
    """

    def __init__(self, redis_args: dict, flush_s: float) -> None:
        from state.views import RedisViews

        self._views = RedisViews.from_url(**redis_args)
        self._flush_s = flush_s
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, str], ItemView] = {}
        self._alerts: list[Alert] = []
        self._closing = threading.Event()
        self._writer = threading.Thread(target=self._run, name="redis-views", daemon=True)
        self._writer.start()

    def write_batch(self, items: list[Sensed]) -> None:
        with self._lock:
            latest, alerts = self._latest, self._alerts
            for s in items:
                for v in s.views:
                    latest[v.store_id, v.sku] = v
                alerts += s.alerts

    def _run(self) -> None:
        while not self._closing.wait(self._flush_s):
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            views, alerts = self._latest, self._alerts
            self._latest, self._alerts = {}, []
        self._views.write(list(views.values()), alerts)

    def close(self) -> None:
        self._closing.set()
        self._writer.join()
        self._flush()
        self._views.write([], [])  # one last attempt at whatever is still buffered


class ViewsSink(DynamicSink[Sensed]):
    """Redis live views for analysts; an outage is retried, never stops the flow."""

    def __init__(self, redis_args: dict, flush_s: float = 1.0) -> None:
        self._args, self._flush_s = redis_args, flush_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ViewsPartition:
        return _ViewsPartition(self._args, self._flush_s)


def run_flow(flow: Dataflow, **bytewax_args: Any) -> None:
    """Run ``flow`` with Bytewax's ``cli_main`` and these arguments; then log the dead letters not logged yet."""
    try:
        cli_main(flow, **bytewax_args)
    finally:
        DEAD_LOG.flush()


def build_flow(settings: FlowSettings) -> Dataflow:
    """The demand-sensing dataflow for ``settings``."""
    flow = Dataflow("demandsense")
    io, policy = settings.io, settings.policy
    markers: list[str] = []
    if isinstance(io, KafkaIO):
        if io.processes > 1:
            markers = marker_keys(io.processes * io.workers)
        source = KafkaBatchSource(
            io.config,
            io.topics.inputs(),
            from_beginning=io.from_beginning,
            exit_at_end=io.exit_at_end,
            duration_s=io.duration_s,
            align_window_s=align_window_s(policy),
            reader=io.process_id == 0,
            markers=markers,
        )
        codecs = {k: make_codec(io.fmt, k, topic=io.topics.inputs()[k], registry_url=io.registry_url) for k in KINDS}
    else:
        source = FileBatchSource(io.inputs())
        codecs = {k: JsonCodec() for k in KINDS}

    batches = op.input("in", flow, source)  # [RawRecord] (or a Control marker)
    if markers:  # a cluster: the processes that read nothing can ask for a stop through the control input
        batches = op.merge("with_control", batches, op.input("control", flow, ControlSource(markers, io.workers)))
    decoder = Decoder(codecs, policy)
    per_store = op.flat_map("by_store", batches, Router(decoder, policy, markers))  # (store_id, Delivery)
    views = settings.views_pace if settings.redis is not None else None
    logic = _builder_for(policy, decoder, views, settings.recovery)
    keyed = op.stateful("sense", per_store, logic)  # (store_id, Sensed): each store decodes its own records
    sensed = op.map("unkey", keyed, lambda kv: kv[1])  # Sensed
    alerts = op.flat_map("alerts", sensed, lambda s: s.alerts)  # Alert

    if isinstance(io, KafkaIO):  # in a cluster, written by the last process (OnWriter)
        out = op.flat_map("out", keyed, _outputs)  # (store_id, Out)
        kafka = KafkaSink(io.config, io.topics.outputs(), io.fmt, io.registry_url)
        op.output("kafka_out", out, OnWriter(kafka, io.process_id, io.processes))
        if settings.redis is not None:
            viewed = op.filter_map("viewed", keyed, _for_views)  # (store_id, Sensed): views and alerts only
            op.output("views_out", viewed, OnWriter(ViewsSink(settings.redis), io.process_id, io.processes))
    else:
        op.output("alerts_out", alerts, JsonlSink(io.alerts_out))
        if io.triggers_out is not None:
            op.output("triggers_out", op.flat_map("triggers", sensed, lambda s: s.triggers), JsonlSink(io.triggers_out))
        if io.dead_letter_out is not None:
            op.output("dead_out", op.flat_map("dead_letters", sensed, lambda s: s.dead), JsonlSink(io.dead_letter_out))
        if settings.redis is not None:
            op.output("views_out", sensed, ViewsSink(settings.redis))
    if settings.print_alerts:
        op.output("console", alerts, ConsoleSink())
    return flow


def _for_views(kv: tuple[str, Sensed]) -> tuple[str, Sensed] | None:
    """What the views need of a store's batch (nothing to send when it changed no view and raised no alert)."""
    store, s = kv
    return (store, Sensed(s.alerts, [], [], s.views)) if s.views or s.alerts else None


def _outputs(kv: tuple[str, Sensed]) -> list[tuple[str, Out]]:
    """A store's alerts, triggers and dead letters, keyed by the store (its outputs keep one writer and their order)."""
    store, s = kv
    return [(store, o) for o in (*s.alerts, *s.triggers, *s.dead)]


def check(settings: FlowSettings) -> None:
    """Check before the dataflow starts what would fail inside it, where an error comes wrapped in a Bytewax
    panic: Kafka answers, the sales topic exists, librdkafka takes the consumer and producer settings, and
    the Redis URL parses (Redis itself may be down: views catch up). A missing output topic is logged: a broker
    that creates topics on first write makes it, any other fails its deliveries. An Avro container input file's
    records read as its kind."""
    io = settings.io
    if isinstance(io, FileIO):
        sources.check_files(io.inputs())
    if isinstance(io, KafkaIO):
        existing = sources.check_kafka(io.config, io.topics.inputs())
        for kind, topic in io.topics.outputs().items():
            if topic not in existing:
                log.warning(
                    "output topic %s (%s) does not exist: deliveries fail unless the broker creates it", topic, kind
                )
        check_producer(io.config)
    if settings.redis is not None:
        try:
            connect(**settings.redis)
        except ValueError as exc:
            raise ConfigError(f"--redis-url: {exc}") from exc


def align_window_s(policy: Policy) -> float:
    """How far (Kafka timestamps) input partitions may drift apart: wide enough to read in large steps, inside
    ``stream_idle_s`` so a partition held back never looks idle to a store: half of it (60 s by default).

    A backfill's poll carries about this much event time, so on a sparse chain it sets the batch size
    (bench/README.md, throughput findings): a quarter (30 s) ran a 300k-event backfill at 11,000
    events/s, half at 12,800."""
    return max(1.0, min(600.0, policy.detection.stream_idle_s / 2))


def _builder_for(policy: Policy, decoder: Decoder, views: ViewsPace | None, recovery: bool):
    """Builder of each store's logic: resumes from its pickled snapshot, or starts empty."""

    def build(resume: bytes | None) -> SenseLogic:
        keep_thread_state()  # on the worker that holds this store
        if not resume:
            return SenseLogic(StoreState(""), policy, decoder, views, recovery=recovery)
        state = pickle.loads(resume)
        if isinstance(state, StoreState):  # snapshots before the evicted map
            return SenseLogic(state, policy, decoder, views, recovery=recovery)
        return SenseLogic(state[0], policy, decoder, views, state[1], recovery=recovery)

    return build
