"""Batch sources: one item per poll of every Kafka input partition, or per run of file lines.

Engine overhead is paid per item that crosses an operator, so records travel in batches from
the source on. A batch is a list of :class:`RawRecord` of every input, in the order they are read
(aligned in event time); each record names its kind (``Sale``, ``InventoryEvent`` or ``ItemParams``).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import orjson
from bytewax.inputs import DynamicSource, FixedPartitionedSource, StatefulSourcePartition, StatelessSourcePartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import ClusterMetadata

from demandsense import metrics, server, signals
from demandsense.errors import ConfigError, ServiceUnavailable
from demandsense.serde import parsed_schema
from demandsense.settings import librdkafka_overrides
from demandsense.threadstate import keep_thread_state

log = logging.getLogger("demandsense.sources")

STOP = threading.Event()
"""Set by a signal, a closed alerts pipe or a stop marker from another process: sources end, the flow finishes
cleanly."""
DONE = threading.Event()
"""Set when every Kafka input partition reached its end (``--exit-at-end``, the demo's duration)."""


@dataclass(frozen=True, slots=True)
class Control:
    """A marker for every worker of the cluster: ``stop`` (shut down without flushing) or ``done`` (input over)."""

    kind: str


@dataclass
class InputSpan:
    """The input's span in this process, for the final log line: a backfill's rate without start-up and shutdown.

    ``records`` and ``first`` (wall clock of the first batch) are the reader's; ``ended`` is when
    this process reached the end of the input: its reader read it, or its stores saw it.
    """

    records: int = 0
    first: float = 0.0
    ended: float = 0.0

    def read(self, n: int, now: float) -> None:
        if not self.records:
            self.first = now
        self.records += n


SPAN = InputSpan()


def request_stop() -> None:
    """Stop reading: every source ends at its next poll, so Bytewax completes the flow (SIGTERM)."""
    STOP.set()


def reset() -> None:
    """Clear the process-wide flags (tests run several flows in one process)."""
    STOP.clear()
    DONE.clear()
    signals.STARTED.clear()
    SPAN.records, SPAN.ended = 0, 0.0


RawRecord = tuple[str, str, int, int, bytes | None, bytes | None, int]
"""One input record as read: ``(kind, source, partition, offset, key, value, timestamp)``, the timestamp in ms.

A plain tuple, read by unpacking or by the positions below: the reader builds one per record, and a
cluster pickles each that goes to a store on another process. A NamedTuple took 0.44 µs to build
against 0.05, and 1.7 µs to pickle against 0.3 (its ``__new__`` and ``__getnewargs__`` are Python).
"""
KIND, SOURCE, PARTITION, OFFSET, KEY, VALUE, TIMESTAMP = range(7)

Batch = list[RawRecord]


class Alignment:
    """Keeps the input partitions of one process within ``window_ms`` of each other in time.

    Every partition registers the Kafka timestamp of the next record it would emit (producers
    set it to the event time, or it is the append time of a live stream). A partition whose next
    record is further than the window ahead of the earliest one waits, so a backfill reads
    sales and inventory side by side in event time instead of one topic racing ahead and making
    the other look late. The partition holding the earliest record never waits; caught-up
    partitions take no part. One worker reads every partition (see :class:`KafkaBatchSource`),
    so this one object sees them all; it also knows when the last of them ended.
    """

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._next: dict[str, int] = {}
        self._known: set[str] = set()
        self._ended: set[str] = set()
        self._loading: set[str] = set()

    def expect(self, parts: Iterable[str], aligned: Iterable[str]) -> None:
        """Every input partition; the ``aligned`` ones hold the others back until they have read (or ended).

        The others (master data) are loaded first: aligned partitions wait until each of them has been
        read to its end once, so a store knows its items' parameters before it applies any event.
        """
        aligned = set(aligned)
        for p in parts:
            if p not in self._known:
                self._known.add(p)
                if p in aligned:
                    self._next[p] = 0
                else:
                    self._loading.add(p)

    def loaded(self, part: str) -> None:
        """Master-data partition ``part`` has been read to its end once."""
        self._loading.discard(part)

    def limit(self, part: str) -> float:
        """Latest timestamp ``part`` may emit now."""
        if self._loading and part not in self._loading:
            return float("-inf")
        others = [t for p, t in self._next.items() if p != part]
        return min(others) + self.window_ms if others else float("inf")

    def waiting_at(self, part: str, ts: int | None) -> None:
        """``part``'s next record has timestamp ``ts`` (None: it is caught up)."""
        if ts is None or ts < 0:
            self._next.pop(part, None)
        elif part not in self._ended:
            self._next[part] = ts

    def ended(self, part: str) -> bool:
        """``part`` will read no more; True when it was the last input partition to end."""
        self._next.pop(part, None)
        self._loading.discard(part)
        self._known.add(part)
        last = part not in self._ended and len(self._ended) + 1 == len(self._known)
        self._ended.add(part)
        return last


class _KafkaPartition:
    """One input partition of :class:`_KafkaReader`: its records fetched and not yet emitted, its offsets and end."""

    def __init__(
        self, kind: str, topic: str, partition: int, start: int, end: int | None, high: int, alignment: Alignment
    ) -> None:
        self.kind, self.tp, self.name = kind, TopicPartition(topic, partition), f"{topic}:{partition}"
        self.next = start  # offset of the next record to emit
        self.end = end  # stop once read up to this offset (``--exit-at-end``), else None
        self.high = high
        self.pending: deque[RawRecord] = deque()  # fetched, not yet emitted (held back by the alignment)
        self.at_eof = False
        self.paused = False
        self._align = alignment
        self._lag = metrics.CONSUMER_LAG.labels(topic, str(partition))
        if kind != "ItemParams":
            alignment.waiting_at(self.name, 0)  # others wait until it has read something or is at its end

    def batch(self) -> list[RawRecord]:
        """The records it may emit now: all of master data, events as far as the alignment allows."""
        pending = self.pending
        if not pending:
            if self.at_eof:  # caught up: no longer holds the others back
                self._align.waiting_at(self.name, None)
                if self.kind == "ItemParams":
                    self._align.loaded(self.name)
            return []
        if self.kind == "ItemParams":  # master data is not in event time: read it as it comes
            records = list(pending)
            pending.clear()
        else:  # taken from the front: the alignment may let only a few through per poll
            limit = self._align.limit(self.name)
            records = []
            while pending and pending[0][TIMESTAMP] <= limit:
                records.append(pending.popleft())
            self._align.waiting_at(self.name, (pending[0] if pending else records[-1])[TIMESTAMP])
            if not records:
                return []
        self.next = records[-1][OFFSET] + 1
        self.lag()
        return records

    def done(self) -> bool:
        """Read up to the end offset it had when the job started (``--exit-at-end``)."""
        return self.end is not None and self.at_eof and self.next >= self.end and not self.pending

    def lag(self) -> None:
        self._lag.set(max(0, self.high - self.next))

    def close(self) -> None:
        self._align.waiting_at(self.name, None)


class _KafkaReader(StatefulSourcePartition[Batch | Control, dict[str, int]]):
    """Every input partition, read by one worker through one consumer; the snapshot is each one's next offset.

    One consumer sends one fetch request per broker for all partitions (a consumer per partition
    sent one each: twelve times the requests, which loaded the embedded broker until its acks took
    seconds). A partition held back by the :class:`Alignment` keeps what it fetched and is paused
    once that reaches :data:`PAUSE_AT` records, so memory stays bounded; it resumes at half that.
    A pause costs a refetch: librdkafka drops what it had fetched ahead for the partition and, on
    resume, fetches again from the position (on the embedded broker, which ignores the fetch size
    limits, the whole rest of the partition). Pausing at 2,000 records, a 440k-event backfill ran
    dry for 0.5-1 s after each resume and the job sat idle 40% of its run (14,500-15,000 events/s);
    at 20,000 (librdkafka's ``queued.min.messages`` here) it ran at 22,600-24,500 events/s with 45 MB
    more peak RSS. Later, with the job faster, the 1M-event throughput backfill still paused 50 times at
    20,000 and sat idle 1.5-1.9 s waiting for the partition that was resumed last; at 50,000 it paused
    20 times and sat idle 0.3-0.4 s (76-81k -> 85-93k events/s) for 75 MB more peak RSS (228 -> 303 MB),
    and 100,000 was no faster (408 MB). At ~330 B a record, 50,000 records is ~16 MB per partition, a
    quarter of what librdkafka queues per partition by default (``queued.max.messages.kbytes``).

    A poll emits one batch of every partition's records. While catching up, the alignment lets
    only a window of event time through per pass over the partitions (a sparse chain holds few
    records in it), so passes repeat until the batch holds :data:`BATCH_RECORDS` records or a pass
    adds none: the records stay in pass order, so each store still sees its partitions in step.
    """

    PAUSE_AT = 50_000
    BATCH_RECORDS = 5_000

    def __init__(
        self, consumer: Consumer, parts: list[_KafkaPartition], deadline: float | None, markers: list[str],
        alignment: Alignment,
    ) -> None:  # fmt: skip
        self._consumer = consumer
        self._parts = {(p.tp.topic, p.tp.partition): p for p in parts}
        self._deadline = deadline
        self._markers = markers  # keys that reach every worker, for the stop/done markers (cluster only)
        self._align = alignment
        self._ended: dict[str, int] = {}  # next offset of the partitions that stopped
        self._idle = False  # the last poll emitted nothing
        consumer.assign([TopicPartition(p.tp.topic, p.tp.partition, p.next) for p in parts])

    def next_batch(self) -> list[Batch | Control]:
        if not server.READY.is_set():
            server.READY.set()  # the flow runs and this process consumes
        if not self._parts:
            raise StopIteration
        why = "stop" if STOP.is_set() else None
        if why is None and self._deadline is not None and time.monotonic() >= self._deadline:
            why = "done"
        if why is not None:
            return self._finish(list(self._parts.values()), why)
        batch: Batch = []
        markers: list[Control] = []
        while self._parts:
            self._fetch()
            before = len(batch)
            for part in list(self._parts.values()):
                if part.done():
                    markers += self._finish([part], "done")
                    continue
                batch += part.batch()
                if part.paused and len(part.pending) < self.PAUSE_AT // 2:
                    self._consumer.resume([part.tp])
                    part.paused = False
            if len(batch) == before or len(batch) >= self.BATCH_RECORDS:
                break
        out: list[Batch | Control] = [batch, *markers] if batch else markers
        self._idle = not out
        if batch:
            now = time.time()
            metrics.LAST_BATCH.set(now)
            SPAN.read(len(batch), now)
        return out

    def _fetch(self) -> None:
        """Hand what the consumer fetched to the partitions (never blocks: the worker has stores to run).

        Records come in runs of one partition, which is looked up when the run changes: per record
        this loop only reads its fields. It took a sixth of a 2-process cluster's reading process; with
        the lookup per record it took 1.0-1.1 µs a record, now 0.7-0.85 (1M records on loopback).
        """
        parts, touched = self._parts, set()
        topic, partition, part, kind, pending = None, -1, None, "", deque()
        for m in self._consumer.consume(num_messages=5000, timeout=0):
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    if err.fatal():
                        raise KafkaException(err)
                    continue  # librdkafka retries what it can
                at_end = parts.get((m.topic(), m.partition()))
                if at_end is not None:
                    at_end.at_eof = True
                    touched.add(at_end)
                topic = None  # a record after it starts a run again, which clears ``at_eof``
                continue
            t, p = m.topic(), m.partition()
            if p != partition or t != topic:
                topic, partition, part = t, p, parts.get((t, p))
                if part is not None:
                    part.at_eof = False
                    touched.add(part)
                    kind, pending = part.kind, part.pending
            if part is not None:  # else ended meanwhile
                pending.append((kind, t, p, m.offset(), m.key(), m.value(), m.timestamp()[1]))
        for part in touched:
            _, high = self._consumer.get_watermark_offsets(part.tp, cached=True)  # from the fetch: exact
            if high >= 0:
                part.high = high
            part.lag()
            if not part.paused and len(part.pending) >= self.PAUSE_AT:
                self._consumer.pause([part.tp])
                part.paused = True

    def _finish(self, parts: list[_KafkaPartition], why: str) -> list[Control]:
        """End ``parts``; once every partition ended, the next poll raises StopIteration.

        In a cluster, the workers are told first: a stop at once, input done when the last partition ends.
        """
        last = False
        for part in parts:
            last = self._align.ended(part.name) or last
            part.close()
            self._ended[part.name] = part.next
            del self._parts[part.tp.topic, part.tp.partition]
        if parts and not self._parts:
            self._consumer.close()
        else:
            self._consumer.pause([p.tp for p in parts])
        if why == "done" and last:
            DONE.set()
            SPAN.ended = SPAN.ended or time.time()
        if self._markers and (why == "stop" or last):
            return [Control(why)]
        return []

    def next_awake(self) -> datetime | None:
        """After a poll that emitted nothing: poll again at once if records are held back, else in 10 ms.

        Bytewax waits ``next_awake`` minus the time the poll *started*, so a time returned here adds
        the poll's own length to the wait; ``None`` after an empty poll gives Bytewax's 1 ms cooldown.
        While every event waits for the last aligned partition to be seen (start-up: the embedded
        broker sends whole partitions first, 300k records of the 1M-event backfill), each ~10 ms poll
        was followed by a ~10 ms wait; with ``None`` that phase took 0.8-1.0 s instead of 1.4-1.7
        (bench.throughput's input, 2 processes, on a machine ~3x slower than its published run).
        """
        if not self._idle or not self._parts:
            return None
        if any(p.pending for p in self._parts.values()):  # held back by the alignment: look again soon
            return None
        return datetime.now(UTC) + timedelta(milliseconds=10)  # librdkafka fetches meanwhile

    def snapshot(self) -> dict[str, int]:
        return {**self._ended, **{p.name: p.next for p in self._parts.values()}}

    def close(self) -> None:
        if self._parts:
            for part in self._parts.values():
                part.close()
            self._consumer.close()


def consumer_config(config: dict) -> dict:
    """The source's librdkafka settings: these defaults, then ``config`` (servers, security, group), then
    ``DEMANDSENSE_CONSUMER_*``."""
    return {
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "fetch.queue.backoff.ms": 1,
        "queued.min.messages": 20000,
        # Latency (bench/results/latency.md): a fetch may be held this long by the broker. librdkafka's
        # 500 ms default delayed records by ~140 ms at the median and 260 ms at p99 on the embedded
        # broker, which answers late even with data waiting; a store's watermark waits for the slowest
        # of its partitions, so that tail is paid on almost every alert. At 50 ms an idle partition
        # costs 20 fetch requests a second.
        "fetch.wait.max.ms": 50,
        "socket.nagle.disable": True,  # fetch requests are small: do not let them wait for ACKs
        **metrics.broker_rtt_config("consumer"),
        **config,
        **librdkafka_overrides("CONSUMER"),
    }


class KafkaBatchSource(FixedPartitionedSource[Batch | Control, dict[str, int]]):
    """Every partition of the input topics, read by assignment (offsets live in Bytewax snapshots).

    ``from_beginning`` starts new partitions at the earliest offset (else at the end);
    ``exit_at_end`` stops each partition at the end offset it had when the job started;
    ``duration_s`` stops reading after that many seconds (the demo).

    One worker reads every partition (a worker of process 0, in a cluster): a store then receives its
    events from that one worker, in the order they were read, however many workers and processes
    hold the stores, so any cluster gives the outputs of a single worker. The partitions are
    aligned in event time by an :class:`Alignment`. ``markers`` are keys that reach every
    worker: when input stops or ends, :class:`Control` markers go along them.
    """

    def __init__(
        self,
        config: dict,
        topics: dict[str, str],
        *,
        from_beginning: bool,
        exit_at_end: bool,
        duration_s: float | None = None,
        align_window_s: float = 600.0,
        reader: bool = True,
        markers: list[str] | None = None,
    ) -> None:
        self._config = consumer_config(config)
        self._topics = topics  # kind -> topic
        self._from_beginning, self._exit_at_end = from_beginning, exit_at_end
        self._deadline = None if duration_s is None else time.monotonic() + duration_s
        self._align_window_ms = int(align_window_s * 1000)
        self._reader = reader
        self._markers = markers or []

    def list_parts(self) -> list[str]:
        return ["kafka"] if self._reader else []

    def build_part(self, step_id: str, for_part: str, resume_state: dict[str, int] | None) -> _KafkaReader:
        signals.STARTED.set()
        keep_thread_state()  # this worker reads and routes every record
        consumer = Consumer(self._config)
        try:
            meta = _metadata(consumer, self._config)
        except ServiceUnavailable:
            consumer.close()
            raise
        parts = [  # (kind, topic, partition); an optional input (item params) may not exist
            (kind, topic, p) for kind, topic in self._topics.items() if topic in meta.topics
            for p in sorted(meta.topics[topic].partitions)
        ]  # fmt: skip
        alignment = Alignment(self._align_window_ms)
        alignment.expect([f"{t}:{p}" for _, t, p in parts], [f"{t}:{p}" for k, t, p in parts if k != "ItemParams"])
        resume = resume_state or {}
        readers = []
        for kind, t, p in parts:
            low, high = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)
            start = resume.get(f"{t}:{p}", OFFSET_BEGINNING if self._from_beginning else OFFSET_END)
            start = start if start >= 0 else (low if start == OFFSET_BEGINNING else high)
            # the end is where a fetch reports end of partition at or past the end offset queried now
            # (some brokers answer the query with a low estimate; the fetch is exact)
            end = high if self._exit_at_end else None
            readers.append(_KafkaPartition(kind, t, p, start, end, high, alignment))
        return _KafkaReader(consumer, readers, self._deadline, self._markers, alignment)


def kafka_metadata(config: dict) -> ClusterMetadata:
    """The cluster's metadata, through a consumer of ``config`` (and ``DEMANDSENSE_CONSUMER_*``) closed after:
    :class:`ConfigError` for settings librdkafka refuses, :class:`ServiceUnavailable` with librdkafka's reason
    (connection refused, TLS, SASL) unless Kafka answers within 10 s."""
    failures = _Failures()
    try:
        consumer = Consumer({**consumer_config(config), "logger": failures})
    except KafkaException as exc:
        raise ConfigError(f"Kafka consumer settings: {exc.args[0].str()}") from exc
    try:
        return _metadata(consumer, config)
    except ServiceUnavailable as exc:
        consumer.poll(0)  # serves librdkafka's log lines, which say why
        if failures.last is None:
            raise
        raise ServiceUnavailable(f"Kafka at {config.get('bootstrap.servers')} did not answer: {failures.last}") from exc
    finally:
        consumer.close()


def check_kafka(config: dict, topics: dict[str, str]) -> set[str]:
    """Before the dataflow starts, so that the command line says it in one line (inside the dataflow, an error
    comes wrapped in a Bytewax panic): :class:`ServiceUnavailable` unless Kafka answers within 10 s,
    :class:`ConfigError` when the sales topic does not exist (the job would finish at once, having read
    nothing). A missing inventory or item-params topic (``topics``: kind -> topic) is logged: it is not read.
    Returns the names of the topics that exist.
    """
    meta, servers = kafka_metadata(config), config.get("bootstrap.servers")
    if topics["Sale"] not in meta.topics:
        raise ConfigError(
            f"the sales topic {topics['Sale']} does not exist on {servers}: create it, or fix --sales-topic"
        )
    for kind, topic in topics.items():
        if topic not in meta.topics:
            log.warning("input topic %s (%s) does not exist on %s: not read until a restart", topic, kind, servers)
    return set(meta.topics)


class _Failures:
    """librdkafka's log for a check: its lines go to the ``demandsense.kafka`` logger at DEBUG (not to stderr, where
    they came before the one-line error), and the last error among them is kept, to say why Kafka did not answer."""

    def __init__(self) -> None:
        self.last: str | None = None

    def log(self, level: int, fmt: str, *args: object) -> None:
        line = fmt % args
        logging.getLogger("demandsense.kafka").debug(line)
        if level >= logging.ERROR:
            self.last = line.rpartition("]: ")[2]  # without the facility, client and thread


def _metadata(consumer: Consumer, config: dict) -> ClusterMetadata:
    try:
        return consumer.list_topics(timeout=10)
    except KafkaException as exc:
        raise ServiceUnavailable(
            f"Kafka at {config.get('bootstrap.servers')} did not answer: {exc.args[0].str()}"
        ) from exc


class _ControlPartition(StatelessSourcePartition[Control]):
    """Forwards this process's SIGTERM to the readers (process 0) as stop markers; ends when input is over."""

    def __init__(self, markers: list[str], active: bool) -> None:
        self._markers, self._active, self._sent = markers, active, False

    def next_batch(self) -> list[Control]:
        if not server.READY.is_set():
            server.READY.set()
        if not self._active or DONE.is_set() or self._sent:
            raise StopIteration
        if STOP.is_set():
            self._sent = True
            return [Control("stop")]
        return []

    def next_awake(self) -> datetime | None:
        return datetime.now(UTC) + timedelta(milliseconds=200)


class ControlSource(DynamicSource[Control]):
    """One partition per worker of the processes that read no Kafka partitions (cluster only).

    The first worker of each such process watches for SIGTERM and sends a stop marker, so a
    shutdown of any process stops the whole cluster cleanly; each ends once a ``done`` or
    ``stop`` marker reached its process.
    """

    def __init__(self, markers: list[str], workers_per_process: int) -> None:
        self._markers, self._wpp = markers, workers_per_process

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ControlPartition:
        signals.STARTED.set()
        return _ControlPartition(self._markers, worker_index % self._wpp == 0)


def marker_keys(total_workers: int) -> list[str]:
    """Keys that, routed by Bytewax's key hash, reach every worker (64 per worker: a miss is ~e^-64)."""
    return [f"\x00control:{i}" for i in range(64 * total_workers)]


def _event_time(line: bytes, previous: float) -> float:
    """Sort key of a JSONL line: its event_time in epoch ms, or the previous key if unreadable."""
    try:
        v = orjson.loads(line).get("event_time")
        if isinstance(v, str):
            return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() * 1000
        return float(v)
    except Exception:
        return previous


AVRO_CONTAINER = b"Obj\x01"  # the first bytes of an Avro object container file


def is_avro_container(path: Path) -> bool:
    """Whether ``path`` is an Avro object container file (else it is read as JSONL)."""
    with path.open("rb") as f:
        return f.read(len(AVRO_CONTAINER)) == AVRO_CONTAINER


def _jsonl(kind: str, path: Path) -> Iterator[tuple[float, RawRecord]]:
    """(sort key, record) of each non-blank line; a line's record is its bytes, as sent."""
    key = 0.0
    with path.open("rb") as f:
        for i, line in enumerate(f, start=1):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            key = _event_time(line, key) if kind != "ItemParams" else -1.0
            yield key, (kind, str(path), -1, i, None, line, 0)


def _avro_container(kind: str, path: Path) -> Iterator[tuple[float, RawRecord]]:
    """(sort key, record) of each record of an Avro container file, as JSON, so it is validated like a line.

    The file's schema is resolved to ``avro/<kind>.avsc`` (an older or newer compatible schema reads).
    A file that cannot be read from some record on (a corrupt block, another record type) raises
    :class:`ConfigError` naming the file and the record: the rest of the file cannot be read.
    """
    with path.open("rb") as f:
        i = 0
        try:
            for i, rec in enumerate(fastavro.reader(f, reader_schema=parsed_schema(kind)), start=1):
                t = rec.get("event_time")
                key = -1.0 if kind == "ItemParams" else t.timestamp() * 1000 if isinstance(t, datetime) else float(t)
                yield key, (kind, str(path), -1, i, None, _json(rec), 0)
        except Exception as exc:  # fastavro raises many types; each means the file is unreadable from here
            if isinstance(exc, fastavro.read.SchemaResolutionError):
                raise _unreadable(path, i, f"its records do not read as {kind} (avro/{kind}.avsc)") from exc
            raise _unreadable(path, i, exc) from exc


def _json(rec: dict[str, Any]) -> bytes:
    """A decoded Avro record as JSON; a NaN or infinite double as its name, which validation refuses (JSON has no
    such numbers: orjson would write null, and a missing value may take a default)."""
    if any(isinstance(v, float) and not math.isfinite(v) for v in rec.values()):
        rec = {k: str(v) if isinstance(v, float) and not math.isfinite(v) else v for k, v in rec.items()}
    return orjson.dumps(rec)


def _unreadable(path: Path, after: int, why: object) -> ConfigError:
    """The error for an Avro container that cannot be read past record ``after``."""
    detail = str(why) if len(str(why)) < 200 else type(why).__name__
    return ConfigError(f"{path}: Avro container unreadable after record {after}: {detail}")


def merged_records(files: dict[str, Path]) -> Iterator[RawRecord]:
    """Every record of the files (kind -> path: JSONL or Avro container), item params first, the rest merged
    by event time.

    Each file keeps its own order (arrival order, with its disorder); the merge interleaves them.
    """
    streams = [(_avro_container if is_avro_container(p) else _jsonl)(kind, p) for kind, p in files.items()]
    for _, rec in heapq.merge(*streams, key=lambda x: x[0]):
        yield rec


def check_files(files: dict[str, Path]) -> None:
    """Raise :class:`ConfigError` for an Avro container file whose first record does not read as its kind, or whose
    blocks do not frame (truncated, or corrupt between sync markers: a scan without decoding, 3 ms for 200k records)."""
    for kind, path in files.items():
        if not is_avro_container(path):
            continue
        next(_avro_container(kind, path), None)
        read = 0
        with path.open("rb") as f:
            try:
                for block in fastavro.block_reader(f):
                    read += block.num_records
            except Exception as exc:
                raise _unreadable(path, read, exc) from exc


class _FilePartition(StatefulSourcePartition[Batch, int]):
    def __init__(self, files: dict[str, Path], batch_size: int, resume: int) -> None:
        self._it = merged_records(files)
        self._done = 0
        self._batch_size = batch_size
        for _ in range(resume):
            next(self._it, None)
            self._done += 1

    def next_batch(self) -> list[Batch]:
        if STOP.is_set():  # an output's reader left (see flows.sinks)
            raise StopIteration
        batch = list(itertools.islice(self._it, self._batch_size - self._done % self._batch_size))
        if not batch:
            raise StopIteration
        self._done += len(batch)
        return [batch]

    def snapshot(self) -> int:
        return self._done


class FileBatchSource(FixedPartitionedSource[Batch, int]):
    """JSONL or Avro container files replayed in event time (one partition: files are read by one worker)."""

    def __init__(self, files: dict[str, Path], batch_size: int = 2000) -> None:
        self._files = files
        self._batch_size = batch_size

    def list_parts(self) -> list[str]:
        return ["files"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _FilePartition:
        return _FilePartition(self._files, self._batch_size, resume_state or 0)
