"""Sinks: Kafka topics, JSONL files, Redis views and the demo's console."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, fields
from functools import cache, partial
from pathlib import Path
from typing import Any, TextIO

from bytewax.outputs import DynamicSink, FixedPartitionedSink, StatefulSinkPartition, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from demandsense import metrics
from demandsense.errors import ConfigError
from demandsense.serde import JsonCodec, iso_from_ms, make_codec
from demandsense.settings import delivery_retries, librdkafka_overrides
from flows.sources import request_stop
from operators.events import Alert, DeadLetter, Trigger, key_on

log = logging.getLogger("demandsense.sinks")

Out = Alert | Trigger | DeadLetter
KINDS = {Alert: "Alert", Trigger: "ReplenishmentTrigger", DeadLetter: "DeadLetter"}
CONSUMER_ONLY = {"group.id", "enable.auto.commit", "enable.partition.eof", "fetch.queue.backoff.ms"}


def to_record(item: Out, now_ms: int) -> dict[str, Any]:
    """The wire dict of an output record; wall-clock fields are stamped here, at the edge.

    Its fields as they are: output records are flat (``dataclasses.asdict`` deep-copies, 17x slower
    for an alert, and was 3% of a backfill's samples)."""
    record = {name: getattr(item, name) for name in _field_names(type(item))}
    if isinstance(item, Alert):
        record["detected_at"] = now_ms
    elif isinstance(item, DeadLetter):
        record["failed_at"] = now_ms
    return record


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    """The field names of an output class (compiled by mypyc, it has no ``__slots__``)."""
    return tuple(f.name for f in fields(cls))


def record_key(item: Out) -> str | None:
    """Kafka key: ``store_id:sku`` for alerts and triggers, the source key for dead letters."""
    if isinstance(item, DeadLetter):
        return item.key
    return key_on(item.store_id, item.sku)


class DeliveryFailed(RuntimeError):
    """Records could not be delivered to Kafka after every retry: the job stops rather than lose them quietly."""


UNDELIVERED = [0]  # records a closing Kafka sink could not deliver, for the exit code (see ``cli._run``)


@dataclass
class _Retry:
    topic: str
    key: bytes | None
    value: bytes
    attempt: int  # 1 for the first re-produce
    due: float  # time.monotonic() when it may be produced again


def retry_backoff(attempt: int) -> float:
    """Seconds to wait before re-producing for the ``attempt``-th time: 0.5, 1, 2, ... capped at 30."""
    return min(30.0, 0.5 * 2 ** (attempt - 1))


def producer_config(config: dict) -> dict:
    """The sink's librdkafka settings: these defaults, then ``config`` less its consumer-only settings, then
    ``DEMANDSENSE_PRODUCER_*``."""
    return {
        "linger.ms": 5,
        "acks": "all",
        **metrics.broker_rtt_config("producer"),
        **{k: v for k, v in config.items() if k not in CONSUMER_ONLY},
        **librdkafka_overrides("PRODUCER"),
    }


def check_producer(config: dict) -> None:
    """:class:`ConfigError` when librdkafka refuses the sink's settings (checked before the dataflow starts)."""
    try:
        Producer(producer_config(config))
    except KafkaException as exc:
        raise ConfigError(f"Kafka producer settings: {exc.args[0].str()}") from exc


class _KafkaPartition(StatelessSinkPartition[Out]):
    """A producer whose failed deliveries are produced again, and whose full queue holds the flow back.

    librdkafka retries a send by itself until ``message.timeout.ms`` (300 s by default); a record that
    still fails is counted (``demandsense_delivery_errors_total``) and produced again after a backoff,
    up to ``DEMANDSENSE_DELIVERY_RETRIES`` times (``demandsense_delivery_retries_total``). One that
    fails every time is counted in ``demandsense_delivery_lost_total`` and the job fails
    (:class:`DeliveryFailed` from the next batch; at close, a non-zero exit) instead of going on
    without it. A background thread serves delivery reports and due retries while no batch arrives.
    """

    CLOSE_TIMEOUT_S = 30.0

    def __init__(self, config: dict, topics: dict[str, str], fmt: str, registry_url: str | None) -> None:
        self._producer = Producer(producer_config(config))
        self._topics = topics
        self._codecs = {k: make_codec(fmt, k, topic=topics[k], registry_url=registry_url) for k in topics}
        self._max_retries = delivery_retries()
        self._on_delivery = [partial(self._delivered, attempt=n) for n in range(self._max_retries + 1)]
        self._lock = threading.Lock()
        self._retries: list[_Retry] = []
        self._lost = 0
        self._raised = False
        self._closed = False
        self._last_warning = 0.0
        self._stopping = threading.Event()
        self._pump = threading.Thread(target=self._serve, name="demandsense-delivery", daemon=True)
        self._pump.start()

    def _delivered(self, err: KafkaError | None, msg: Message, attempt: int = 0) -> None:
        if err is None or self._closed:
            return
        topic = msg.topic()
        metrics.DELIVERY_ERRORS.labels(topic).inc()
        give_up = err.fatal() or attempt >= self._max_retries
        wait = retry_backoff(attempt + 1)
        with self._lock:
            if give_up:
                self._lost += 1
            else:
                self._retries.append(_Retry(topic, msg.key(), msg.value(), attempt + 1, time.monotonic() + wait))
            say = time.monotonic() - self._last_warning >= 1.0
            if say:  # at most one line a second during an outage; every failure is counted
                self._last_warning = time.monotonic()
        if give_up:
            metrics.DELIVERY_LOST.labels(topic).inc()
            if say:
                log.error("delivery to %s failed after %d retries, giving up: %s", topic, attempt, err)
        elif say:
            log.warning("delivery to %s failed (%s); producing it again in %.1f s (retry %d of %d)",
                        topic, err, wait, attempt + 1, self._max_retries)  # fmt: skip

    def _resend_due(self) -> int:
        """Produce again the retries whose backoff has passed; return how many are still waiting."""
        now = time.monotonic()
        with self._lock:
            due = [r for r in self._retries if r.due <= now]
            self._retries = [r for r in self._retries if r.due > now]
        for i, r in enumerate(due):
            try:
                self._producer.produce(r.topic, r.value, r.key, on_delivery=self._on_delivery[r.attempt])
            except BufferError:  # the queue is full: these wait for the next round
                with self._lock:
                    self._retries.extend(due[i:])
                break
            metrics.DELIVERY_RETRIES.labels(r.topic).inc()
        with self._lock:
            return len(self._retries)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.1)
            self._resend_due()

    def _check(self) -> None:
        if self._lost and not self._raised:
            self._raised = True  # once: Bytewax closes the partition while unwinding, which must not raise again
            raise DeliveryFailed(
                f"{self._lost} records could not be delivered to Kafka after {self._max_retries} retries; "
                "the job stops so that it resumes from its last snapshot"
            )

    def write_batch(self, items: list[Out]) -> None:
        self._check()
        now_ms = int(time.time() * 1000)
        for item in items:
            kind = KINDS[type(item)]
            value = self._codecs[kind].encode(to_record(item, now_ms))
            key = record_key(item)
            while True:
                try:
                    self._producer.produce(
                        self._topics[kind], value, key.encode() if key else None, on_delivery=self._on_delivery[0]
                    )
                    break
                except BufferError:  # local queue full: serve deliveries, then retry (back-pressure)
                    metrics.PRODUCER_QUEUE_FULL.inc()
                    self._producer.poll(0.01)  # short: the delivery thread may serve the report
        self._producer.poll(0)

    def close(self) -> None:
        self._stopping.set()
        self._pump.join()
        deadline = time.monotonic() + self.CLOSE_TIMEOUT_S
        while True:
            self._resend_due()
            in_flight = self._producer.flush(max(0.0, min(1.0, deadline - time.monotonic())))
            with self._lock:  # the flush served delivery reports: failures among them wait to be produced again
                waiting = len(self._retries)
            if (not in_flight and not waiting) or time.monotonic() >= deadline:
                break
            if not in_flight:
                time.sleep(0.05)
        # Bytewax calls close from a destructor, where an exception aborts the process: count, log, and let
        # ``demandsense run`` exit non-zero instead.
        if in_flight or waiting or (self._lost and not self._raised):
            UNDELIVERED[0] += in_flight + waiting + (0 if self._raised else self._lost)
            log.error("%d records were not delivered to Kafka before shutdown", UNDELIVERED[0])
        # what librdkafka still queues holds its delivery callbacks, and through them this partition and its
        # producer, which would go on reconnecting: drop it (counted above; its reports are no longer acted on)
        self._closed = True
        self._producer.purge()
        self._producer.poll(0)


class KafkaSink(DynamicSink[Out]):
    """Alerts, triggers and dead letters to their topics (``topics`` maps record type to topic)."""

    def __init__(self, config: dict, topics: dict[str, str], fmt: str, registry_url: str | None = None) -> None:
        self._args = (config, topics, fmt, registry_url)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _KafkaPartition:
        return _KafkaPartition(*self._args)


class _Unsnapshotted(StatefulSinkPartition[Any, None]):
    """A :class:`StatelessSinkPartition` where Bytewax wants a stateful one (it resumes with nothing)."""

    def __init__(self, part: StatelessSinkPartition) -> None:
        self._part = part

    def write_batch(self, values: list[Any]) -> None:
        self._part.write_batch(values)

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self._part.close()


class OnWriter(FixedPartitionedSink[Any, None]):
    """``sink`` for a keyed stream, written by the last process of a cluster (alone, by the process itself).

    In a cluster one worker of process 0 reads and routes every record, more than its share of the
    work; the outputs of every store then go to the last process, whose one partition writes them
    (in each store's order). The partition's name is the same whatever the cluster's size, so a
    recovery snapshot of it resumes on any number of processes.
    """

    def __init__(self, sink: DynamicSink, process_id: int, processes: int) -> None:
        self._sink, self._writes = sink, process_id == processes - 1

    def list_parts(self) -> list[str]:
        return ["writer"] if self._writes else []

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Unsnapshotted:
        return _Unsnapshotted(self._sink.build(step_id, 0, 1))


class _JsonlPartition(StatelessSinkPartition[Out]):
    def __init__(self, path: Path) -> None:
        self._file = path.open("ab")
        self._codec = JsonCodec()
        self._reader_left = False

    def write_batch(self, items: list[Out]) -> None:
        if self._reader_left:
            return
        now_ms = int(time.time() * 1000)
        try:
            self._file.write(b"".join(self._codec.encode(to_record(i, now_ms)) + b"\n" for i in items))
            self._file.flush()
        except BrokenPipeError:  # a pipe's reader left (`--alerts-out /dev/stdout | head`)
            self._reader_left = True
            _stop_for_closed_pipe(self._file.fileno(), self._file.name)

    def close(self) -> None:
        self._file.close()


class JsonlSink(DynamicSink[Out]):
    """Records appended to a JSONL file, one JSON object a line (replay runs one worker)."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _JsonlPartition:
        return _JsonlPartition(self._path)


SEVERITY_MARK = {"CRITICAL": "!!!", "HIGH": "!! ", "MEDIUM": "!  ", "LOW": "   "}


def format_alert(a: Alert) -> str:
    """One readable console line for an alert."""
    return (
        f"{iso_from_ms(a.event_time)[:16].replace('T', ' ')}  {SEVERITY_MARK[a.severity]}{a.priority:>3}  "
        f"{a.status:<8} {a.alert_type:<17} {a.store_id}:{a.sku:<12} {a.reason}"
    )


class _ConsolePartition(StatelessSinkPartition[Alert]):
    def __init__(self, stream: TextIO) -> None:
        self._stream: TextIO | None = stream

    def write_batch(self, items: list[Alert]) -> None:
        if self._stream is None:
            return
        try:
            for a in sorted(items, key=lambda a: -a.priority):
                print(format_alert(a), file=self._stream)
            self._stream.flush()
        except BrokenPipeError:  # the reader left (`| head`)
            _stop_for_closed_pipe(self._stream.fileno(), "alerts")
            self._stream = None


def _stop_for_closed_pipe(fd: int, what: str) -> None:
    """Stop the flow cleanly, as SIGPIPE stops a Unix tool; ``fd`` writes to /dev/null so that no flush fails."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)
    log.info("%s: the reader closed the pipe: stopping", what)
    request_stop()


class ConsoleSink(DynamicSink[Alert]):
    """Alerts printed live, most urgent first within each batch (the demo)."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self._stream = stream

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ConsolePartition:
        return _ConsolePartition(self._stream)
