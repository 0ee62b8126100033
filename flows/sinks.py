"""Sinks: Kafka topics, JSONL files, Redis views and the demo's console."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, Message, Producer

from demandsense import metrics
from demandsense.serde import JsonCodec, iso_from_ms, make_codec
from operators.events import Alert, DeadLetter, Trigger, key_on

log = logging.getLogger("demandsense.sinks")

Out = Alert | Trigger | DeadLetter
KINDS = {Alert: "Alert", Trigger: "ReplenishmentTrigger", DeadLetter: "DeadLetter"}
CONSUMER_ONLY = {"group.id", "enable.auto.commit", "enable.partition.eof", "fetch.queue.backoff.ms"}


def to_record(item: Out, now_ms: int) -> dict[str, Any]:
    """The wire dict of an output record; wall-clock fields are stamped here, at the edge."""
    record = asdict(item)
    if isinstance(item, Alert):
        record["detected_at"] = now_ms
    elif isinstance(item, DeadLetter):
        record["failed_at"] = now_ms
    return record


def record_key(item: Out) -> str | None:
    """Kafka key: ``store_id:sku`` for alerts and triggers, the source key for dead letters."""
    if isinstance(item, DeadLetter):
        return item.key
    return key_on(item.store_id, item.sku)


class _KafkaPartition(StatelessSinkPartition[Out]):
    def __init__(self, config: dict, topics: dict[str, str], fmt: str, registry_url: str | None) -> None:
        producer_config = {k: v for k, v in config.items() if k not in CONSUMER_ONLY}
        self._producer = Producer({"linger.ms": 5, "acks": "all", **producer_config})
        self._topics = topics
        self._codecs = {k: make_codec(fmt, k, topic=topics[k], registry_url=registry_url) for k in topics}

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            metrics.DELIVERY_ERRORS.labels(msg.topic()).inc()
            log.error("delivery to %s failed: %s", msg.topic(), err)

    def write_batch(self, items: list[Out]) -> None:
        now_ms = int(time.time() * 1000)
        for item in items:
            kind = KINDS[type(item)]
            value = self._codecs[kind].encode(to_record(item, now_ms))
            key = record_key(item)
            while True:
                try:
                    self._producer.produce(
                        self._topics[kind], value, key.encode() if key else None, on_delivery=self._delivered
                    )
                    break
                except BufferError:  # local queue full: serve deliveries, then retry (back-pressure)
                    self._producer.poll(0.2)
        self._producer.poll(0)

    def close(self) -> None:
        left = self._producer.flush(30)
        if left:
            log.error("%d records were not delivered before shutdown", left)


class KafkaSink(DynamicSink[Out]):
    """Alerts, triggers and dead letters to their topics (``topics`` maps record type to topic)."""

    def __init__(self, config: dict, topics: dict[str, str], fmt: str, registry_url: str | None = None) -> None:
        self._args = (config, topics, fmt, registry_url)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _KafkaPartition:
        return _KafkaPartition(*self._args)


class _JsonlPartition(StatelessSinkPartition[Out]):
    def __init__(self, path: Path) -> None:
        self._file = path.open("ab")
        self._codec = JsonCodec()

    def write_batch(self, items: list[Out]) -> None:
        now_ms = int(time.time() * 1000)
        self._file.write(b"".join(self._codec.encode(to_record(i, now_ms)) + b"\n" for i in items))
        self._file.flush()

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
        self._stream = stream

    def write_batch(self, items: list[Alert]) -> None:
        for a in sorted(items, key=lambda a: -a.priority):
            print(format_alert(a), file=self._stream)
        self._stream.flush()


class ConsoleSink(DynamicSink[Alert]):
    """Alerts printed live, most urgent first within each batch (the demo)."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self._stream = stream

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ConsolePartition:
        return _ConsolePartition(self._stream)
