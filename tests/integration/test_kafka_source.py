"""The Kafka source on a real broker: one consumer reads every partition, aligned in time, each record once."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer

from flows import sources
from flows.sources import OFFSET, PARTITION, SOURCE, TIMESTAMP, VALUE, KafkaBatchSource, RawRecord, _KafkaReader

pytestmark = pytest.mark.integration

WINDOW_MS = 1_000


def _produce(bootstrap: str, topic: str, partitions: int, times: list[int]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, t in enumerate(times):
        p.produce(topic, f"{topic}-{i}".encode(), partition=i % partitions, timestamp=t)
    assert p.flush(10) == 0


def test_partitions_are_read_once_in_step_and_a_held_one_pauses(
    kafka_bootstrap: str, topic_factory: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    t0 = 1_700_000_000_000
    sales, inventory = topic_factory(2), topic_factory(1)
    _produce(kafka_bootstrap, sales, 2, [t0 + i * 100 for i in range(600)])  # a minute of sales
    _produce(kafka_bootstrap, inventory, 1, [t0 + i * 2_000 for i in range(30)])  # the same minute, sparser
    monkeypatch.setattr(_KafkaReader, "PAUSE_AT", 10)  # sales run ahead of inventory: they must pause
    paused = []
    real_fetch = _KafkaReader._fetch

    def fetch(self: _KafkaReader) -> None:
        real_fetch(self)
        paused.extend(p.name for p in self._parts.values() if p.paused)

    monkeypatch.setattr(_KafkaReader, "_fetch", fetch)
    sources.reset()
    source = KafkaBatchSource(
        {"bootstrap.servers": kafka_bootstrap, "group.id": "pytest-source"},
        {"Sale": sales, "InventoryEvent": inventory},
        from_beginning=True,
        exit_at_end=True,
        align_window_s=WINDOW_MS / 1000,
    )
    reader = source.build_part("in", "kafka", None)
    emitted: list[RawRecord] = []
    spans = []  # event time each poll's batch covers
    deadline = time.monotonic() + 30  # polls do not block: bound them by time (100k took 0.18 s here)
    while time.monotonic() < deadline:
        try:
            batches = reader.next_batch()
        except StopIteration:
            break
        for records in batches:
            emitted += records
            spans.append(max(r[TIMESTAMP] for r in records) - min(r[TIMESTAMP] for r in records))
    else:
        pytest.fail("the source did not reach the end of its partitions in 30 s")
    reader.close()

    assert sorted(r[VALUE] for r in emitted) == sorted(
        [f"{sales}-{i}".encode() for i in range(600)] + [f"{inventory}-{i}".encode() for i in range(30)]
    ), "every record once"
    for part in {r[SOURCE : PARTITION + 1] for r in emitted}:
        offsets = [r[OFFSET] for r in emitted if r[SOURCE : PARTITION + 1] == part]
        assert offsets == sorted(offsets), f"{part} in offset order"
    # in step: nothing is emitted more than the window ahead of a record of another partition still to come
    for i, r in enumerate(emitted):
        later = [x[TIMESTAMP] for x in emitted[i + 1 :] if x[SOURCE : PARTITION + 1] != r[SOURCE : PARTITION + 1]]
        assert not later or r[TIMESTAMP] <= min(later) + WINDOW_MS, (i, r)
    assert paused, "a partition held back by the alignment was paused"
    assert max(spans) > 10 * WINDOW_MS, "a poll goes on past one window while the records are there"
    assert reader.snapshot() == {f"{sales}:0": 300, f"{sales}:1": 300, f"{inventory}:0": 30}
    assert sources.DONE.is_set()


def test_after_an_empty_poll_it_is_polled_again_at_once_while_records_are_held(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    """Bytewax waits ``next_awake`` minus the time the poll started: an explicit time would add the poll's length
    to the wait, so records held back by the alignment ask for Bytewax's 1 ms cooldown (``None``) instead."""
    sales = topic_factory(2)
    _produce(kafka_bootstrap, sales, 2, [1_700_000_000_000 + i for i in range(10)])
    sources.reset()
    source = KafkaBatchSource(
        {"bootstrap.servers": kafka_bootstrap, "group.id": "pytest-source"},
        {"Sale": sales},
        from_beginning=True,
        exit_at_end=True,
    )
    reader = source.build_part("in", "kafka", None)
    try:
        reader._idle = True  # the last poll emitted nothing
        part = next(iter(reader._parts.values()))
        part.pending.append(("Sale", sales, 0, 0, None, b"held", 1_700_000_000_000))
        assert reader.next_awake() is None
        part.pending.clear()  # nothing held: librdkafka has 10 ms to fetch more
        awake = reader.next_awake()
        assert awake is not None and awake <= datetime.now(UTC) + timedelta(milliseconds=10)
        reader._idle = False  # the last poll emitted records: poll again at once
        assert reader.next_awake() is None
    finally:
        reader.close()
