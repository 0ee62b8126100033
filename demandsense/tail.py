"""``demandsense tail``: a plain consumer that prints a topic's records as JSON lines.

For subscribers checking what demandsense publishes. Avro is read with the contract's schemas whatever the
frame's schema id (the local id, or a Schema Registry's: demandsense writes both with the same schema); the
consumer takes the security settings ``run`` takes (``DEMANDSENSE_KAFKA_*``, ``DEMANDSENSE_CONSUMER_*``).
"""

from __future__ import annotations

import sys
import time
import uuid
from typing import TextIO

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from demandsense.errors import DemandsenseError
from demandsense.serde import MAGIC, RECORD_TYPES, AvroCodec, JsonCodec, make_codec
from demandsense.settings import kafka_config_from_env, librdkafka_overrides
from flows.sources import kafka_metadata

TOPIC_TYPES = {
    "alerts": "Alert",
    "triggers": "ReplenishmentTrigger",
    "dead-letter": "DeadLetter",
    "inventory": "InventoryEvent",
    "item-params": "ItemParams",
}


def record_type_of(topic: str) -> str:
    """The record type a topic carries, guessed from its name (``...alerts...`` -> Alert)."""
    for hint, name in TOPIC_TYPES.items():
        if hint in topic:
            return name
    for name in RECORD_TYPES:
        if name.lower() in topic.replace("-", "").lower():
            return name
    raise DemandsenseError(f"cannot tell which record type {topic!r} carries; pass --record-type")


def tail(
    bootstrap_servers: str,
    topic: str,
    *,
    fmt: str = "avro",
    record_type: str | None = None,
    from_beginning: bool = True,
    follow: bool = False,
    max_messages: int | None = None,
    out: TextIO = sys.stdout,
    idle_s: float = 2.0,
) -> int:
    """Print the topic's records, one JSON object a line; returns how many were printed."""
    name = record_type or record_type_of(topic)
    codec = AvroCodec(name, any_id=True) if fmt == "avro" else make_codec(fmt, name)
    json_out = JsonCodec()
    config = kafka_config_from_env(bootstrap_servers, group_id=f"demandsense-tail-{uuid.uuid4().hex[:8]}")
    meta = kafka_metadata(config)  # one clear error when Kafka does not answer or refuses the settings
    if topic not in meta.topics or meta.topics[topic].error is not None:
        raise DemandsenseError(f"topic {topic} does not exist on {bootstrap_servers}")
    consumer = Consumer(
        {**config, "enable.auto.commit": False, "enable.partition.eof": True, **librdkafka_overrides("CONSUMER")}
    )
    start = -2 if from_beginning else -1  # OFFSET_BEGINNING / OFFSET_END
    parts = sorted(meta.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, start) for p in parts])
    printed, at_end, last = 0, set(), time.monotonic()
    try:
        while max_messages is None or printed < max_messages:
            msg = consumer.poll(0.2)
            if msg is None:
                if not follow and (len(at_end) == len(parts) or time.monotonic() - last > idle_s):
                    break
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                    continue
                raise KafkaException(msg.error())
            last = time.monotonic()
            at_end.discard(msg.partition())
            try:
                line = json_out.encode(codec.decode(msg.value() or b""))
            except DemandsenseError as exc:
                line = orjson.dumps({"undecodable": _why(exc, msg.value() or b"", fmt), "offset": msg.offset()})
            out.write(line.decode() + "\n")
            printed += 1
        out.flush()
    finally:
        consumer.close()
    return printed


def _why(exc: DemandsenseError, value: bytes, fmt: str) -> str:
    """Why a value could not be read, with a hint when it looks like the other format."""
    if fmt == "json" and value[:1] == bytes([MAGIC]):
        return f"{exc} (a Confluent Avro frame: try --format avro)"
    if fmt == "avro" and value[:1] == b"{":
        return f"{exc} (JSON: try --format json)"
    return str(exc)
