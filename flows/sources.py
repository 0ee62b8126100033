"""Batch sources: one item per Kafka ``consume()`` batch or per run of file lines.

Engine overhead is paid per item that crosses an operator, so records travel in batches from
the source on. Each batch is ``(kind, [RawRecord, ...])`` where kind is the record type
(``Sale``, ``InventoryEvent`` or ``ItemParams``).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from demandsense import metrics
from demandsense.errors import ServiceUnavailable


class RawRecord(NamedTuple):
    """One input record as read: where from, key and value bytes, and its timestamp (ms)."""

    source: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


Batch = tuple[str, list[RawRecord]]


class Alignment:
    """Keeps the input partitions of one process within ``window_ms`` of each other in time.

    Every partition registers the Kafka timestamp of the next record it would emit (producers
    set it to the event time, or it is the append time of a live stream). A partition whose next
    record is further than the window ahead of the earliest one waits, so a backfill reads
    sales and inventory side by side in event time instead of one topic racing ahead and making
    the other look late. The partition holding the earliest record never waits; caught-up
    partitions take no part. Partitions in other processes are not aligned (live streams are).
    """

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._next: dict[str, int] = {}

    def limit(self, part: str) -> float:
        """Latest timestamp ``part`` may emit now."""
        others = [t for p, t in self._next.items() if p != part]
        return min(others) + self.window_ms if others else float("inf")

    def waiting_at(self, part: str, ts: int | None) -> None:
        """``part``'s next record has timestamp ``ts`` (None: it is caught up)."""
        if ts is None or ts < 0:
            self._next.pop(part, None)
        else:
            self._next[part] = ts


class _KafkaPartition(StatefulSourcePartition[Batch, int]):
    def __init__(
        self,
        config: dict,
        kind: str,
        topic: str,
        partition: int,
        start: int,
        stop_at_end: bool,
        deadline: float | None,
        alignment: Alignment,
    ) -> None:
        self._kind, self._topic, self._partition = kind, topic, partition
        self._name = f"{topic}:{partition}"
        self._align = alignment
        if kind != "ItemParams":
            alignment.waiting_at(self._name, 0)  # others wait until it has read something or is at its end
        self._pending: list[RawRecord] = []
        self._consumer = Consumer(config)
        low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        # the end is where a fetch reports end of partition at or past the end offset queried now
        # (some brokers answer the query with a low estimate; the fetch is exact)
        self._end = high if stop_at_end else None
        self._at_eof = False
        self._next = start if start >= 0 else (low if start == OFFSET_BEGINNING else high)
        self._consumer.assign([TopicPartition(topic, partition, self._next)])
        self._deadline = deadline
        self._lag = metrics.CONSUMER_LAG.labels(topic, str(partition))
        self._high = high

    def next_batch(self) -> list[Batch]:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise StopIteration
        if self._end is not None and self._at_eof and self._next >= self._end and not self._pending:
            self._align.waiting_at(self._name, None)
            raise StopIteration
        records = self._pending or self._consume()
        if not records:
            if self._at_eof:  # caught up: no longer holds the others back
                self._align.waiting_at(self._name, None)
            return []
        if self._kind == "ItemParams":  # master data is not in event time: read it as it comes
            self._next = records[-1].offset + 1
            return [(self._kind, records)]
        limit = self._align.limit(self._name)
        cut = next((i for i, r in enumerate(records) if r.timestamp > limit), len(records))
        records, self._pending = records[:cut], records[cut:]
        self._align.waiting_at(self._name, self._pending[0].timestamp if self._pending else records[-1].timestamp)
        if not records:
            return []
        self._next = records[-1].offset + 1
        self._high = max(self._high, self._next)
        self._lag.set(max(0, self._high - self._next))
        metrics.LAST_BATCH.set(time.time())
        return [(self._kind, records)]

    def _consume(self) -> list[RawRecord]:
        records = []
        for m in self._consumer.consume(num_messages=5000, timeout=0.05):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    self._at_eof = True
                elif m.error().fatal():
                    raise KafkaException(m.error())
                continue
            self._at_eof = False
            records.append(RawRecord(self._topic, self._partition, m.offset(), m.key(), m.value(), m.timestamp()[1]))
        return records

    def next_awake(self) -> datetime | None:
        return None if not self._pending else datetime.now(UTC) + timedelta(milliseconds=20)

    def snapshot(self) -> int:
        return self._next

    def close(self) -> None:
        self._align.waiting_at(self._name, None)
        self._consumer.close()


class KafkaBatchSource(FixedPartitionedSource[Batch, int]):
    """Every partition of the input topics, read by assignment (offsets live in Bytewax snapshots).

    ``from_beginning`` starts new partitions at the earliest offset (else at the end);
    ``exit_at_end`` stops each partition at the end offset it had when the job started;
    ``duration_s`` stops reading after that many seconds (the demo).
    """

    def __init__(
        self,
        config: dict,
        topics: dict[str, str],
        *,
        from_beginning: bool,
        exit_at_end: bool,
        duration_s: float | None = None,
        align_window_s: float = 60.0,
    ) -> None:
        self._config = {
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.queue.backoff.ms": 1,
            "queued.min.messages": 20000,
            **config,
        }
        self._topics = topics  # kind -> topic
        self._from_beginning, self._exit_at_end = from_beginning, exit_at_end
        self._deadline = None if duration_s is None else time.monotonic() + duration_s
        self._alignment = Alignment(int(align_window_s * 1000))

    def list_parts(self) -> list[str]:
        consumer = Consumer(self._config)
        try:
            meta = consumer.list_topics(timeout=10)
        except KafkaException as exc:
            servers = self._config.get("bootstrap.servers")
            raise ServiceUnavailable(f"Kafka at {servers} did not answer: {exc}") from exc
        finally:
            consumer.close()
        parts = []
        for kind, topic in self._topics.items():
            if topic not in meta.topics:
                continue  # an optional input (item params) may not exist
            parts += [f"{kind}:{topic}:{p}" for p in sorted(meta.topics[topic].partitions)]
        return parts

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _KafkaPartition:
        kind, rest = for_part.split(":", 1)
        topic, partition = rest.rsplit(":", 1)
        start = resume_state if resume_state is not None else (OFFSET_BEGINNING if self._from_beginning else OFFSET_END)
        return _KafkaPartition(
            self._config, kind, topic, int(partition), start, self._exit_at_end, self._deadline, self._alignment
        )


def _event_time(line: bytes, previous: float) -> float:
    """Sort key of a JSONL line: its event_time in epoch ms, or the previous key if unreadable."""
    try:
        v = orjson.loads(line).get("event_time")
        if isinstance(v, str):
            return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() * 1000
        return float(v)
    except Exception:
        return previous


def merged_lines(files: dict[str, Path]) -> Iterator[tuple[str, RawRecord]]:
    """(kind, record) of every line of the files, item params first, the rest merged by event time.

    Each file keeps its own order (arrival order, with its disorder); the merge interleaves them.
    """

    def lines(kind: str, path: Path) -> Iterator[tuple[float, int, str, RawRecord]]:
        key = 0.0
        with path.open("rb") as f:
            for i, line in enumerate(f, start=1):
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue
                key = _event_time(line, key) if kind != "ItemParams" else -1.0
                yield key, i, kind, RawRecord(str(path), -1, i, None, line, 0)

    streams = [lines(kind, path) for kind, path in files.items()]
    for _, _, kind, rec in heapq.merge(*streams, key=lambda x: x[0]):
        yield kind, rec


class _FilePartition(StatefulSourcePartition[Batch, int]):
    def __init__(self, files: dict[str, Path], batch_size: int, resume: int) -> None:
        self._it = merged_lines(files)
        self._done = 0
        self._batch_size = batch_size
        for _ in range(resume):
            next(self._it, None)
            self._done += 1

    def next_batch(self) -> list[Batch]:
        out: list[Batch] = []
        for kind, rec in self._it:
            self._done += 1
            if out and out[-1][0] == kind:
                out[-1][1].append(rec)
            else:
                out.append((kind, [rec]))
            if self._done % self._batch_size == 0:
                return out
        if out:
            return out
        raise StopIteration

    def snapshot(self) -> int:
        return self._done


class FileBatchSource(FixedPartitionedSource[Batch, int]):
    """JSONL files replayed in event time (one partition: files are read by one worker)."""

    def __init__(self, files: dict[str, Path], batch_size: int = 2000) -> None:
        self._files = files
        self._batch_size = batch_size

    def list_parts(self) -> list[str]:
        return ["files"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _FilePartition:
        return _FilePartition(self._files, self._batch_size, resume_state or 0)
