"""Avro records through a real broker and back through decode+validate; dead letters too; Redis smoke."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import pytest
import redis
from confluent_kafka import TIMESTAMP_CREATE_TIME, Consumer, KafkaError, Message, Producer, TopicPartition

from demandsense.serde import make_codec
from demandsense.simulate import SimConfig, generate
from demandsense.validate import read_event
from operators.events import DeadLetter, Origin

pytestmark = pytest.mark.integration

POISON = b"\x07" + random.Random(7).randbytes(63)  # not magic byte 0: never a Confluent Avro frame


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes, int | None]]) -> None:
    """Produce ``(key, value, timestamp_ms)`` messages (lz4) and wait until all are acknowledged."""
    errors: list[KafkaError] = []
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": "lz4", "linger.ms": 5})
    for key, value, ts in messages:
        producer.produce(topic, value, key, timestamp=ts or 0, on_delivery=lambda e, _m: e and errors.append(e))
    assert producer.flush(10) == 0 and not errors, errors


def consume_all(bootstrap: str, topic: str, partitions: int, timeout: float = 10) -> list[Message]:
    """Every message of ``topic``, read with a plain ``assign()`` consumer up to each partition's end."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"pytest-{uuid.uuid4().hex[:8]}",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 20,  # the end-of-partition event waits for an empty fetch
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[Message] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(at_end) < partitions and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                at_end.add(msg.partition())
                continue
            out.append(msg)
    finally:
        consumer.close()
    assert len(at_end) == partitions, f"only partitions {sorted(at_end)} of {topic} reached their end"
    return out


def fields(event: Any) -> dict[str, Any]:
    """An event's contract fields (without where it was read)."""
    d = asdict(event)
    d.pop("origin", None)
    return d


@pytest.fixture(scope="module")
def records() -> dict[str, list[dict[str, Any]]]:
    """One simulated day of one store and 20 SKUs."""
    sim = generate(SimConfig(stores=1, skus=20, days=1))
    assert len(sim.sales) > 10 and len(sim.inventory) > 10
    return {"Sale": list(sim.sales), "InventoryEvent": list(sim.inventory)}


@pytest.mark.parametrize("kind", ["Sale", "InventoryEvent"])
def test_avro_records_round_trip_and_poison_becomes_dead_letter(
    kind: str, records: dict[str, list[dict[str, Any]]], kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(3)
    codec = make_codec("avro", kind)
    sent = records[kind]
    messages = [(f"{r['store_id']}:{r['sku']}".encode(), codec.encode(r), r["event_time"]) for r in sent]
    produce(kafka_bootstrap, topic, [*messages, (b"S001:poison", POISON, None)])

    got = consume_all(kafka_bootstrap, topic, 3)
    assert len(got) == len(sent) + 1
    now_ms = int(time.time() * 1000)
    events, dead = [], []
    for msg in got:
        origin = Origin(topic, msg.partition(), msg.offset())
        out = read_event(kind, msg.value(), codec, origin, key=msg.key(), now_ms=now_ms)
        (dead if isinstance(out, DeadLetter) else events).append((msg, out))

    assert [fields(e) for _, e in sorted(events, key=lambda me: me[1].event_id)] == sorted(
        sent, key=lambda r: r["event_id"]
    )
    for msg, event in events:
        assert msg.key() == f"{event.store_id}:{event.sku}".encode()
        assert msg.timestamp() == (TIMESTAMP_CREATE_TIME, event.event_time)
        assert event.origin == Origin(topic, msg.partition(), msg.offset())
    assert len(dead) == 1
    msg, letter = dead[0]
    assert (letter.stage, letter.reason, letter.raw, letter.key) == ("decode", "malformed", POISON, "S001:poison")
    assert (letter.source_topic, letter.partition, letter.offset) == (topic, msg.partition(), msg.offset())


def test_dead_letter_survives_its_topic(kafka_bootstrap: str, topic_factory: Callable[..., str]) -> None:
    source, dlq = topic_factory(), topic_factory()
    letter = read_event("Sale", POISON, make_codec("avro", "Sale"), Origin(source, 0, 41), key=b"S1:A", now_ms=0)
    assert isinstance(letter, DeadLetter)
    failed_at = int(time.time() * 1000)
    codec = make_codec("avro", "DeadLetter")
    produce(kafka_bootstrap, dlq, [(b"S1:A", codec.encode(asdict(letter) | {"failed_at": failed_at}), None)])

    (msg,) = consume_all(kafka_bootstrap, dlq, 1)
    back = codec.decode(msg.value())
    assert back == asdict(letter) | {"failed_at": failed_at}
    assert (back["stage"], back["raw"], back["error"]) == ("decode", POISON, letter.error)
    assert letter.error.startswith(f"Sale {source}[0]@41: ")


def test_redis_set_get(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    key = f"pytest:{uuid.uuid4().hex}"
    try:
        assert client.set(key, b"\x00demand\xff", ex=60)
        assert client.get(key) == b"\x00demand\xff"
    finally:
        client.delete(key)
        client.close()
