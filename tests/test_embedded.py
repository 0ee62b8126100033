"""The embedded Kafka broker and Redis: start, stop, restart on the same port, topic helpers."""

from __future__ import annotations

import socket
import uuid

import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from demandsense.embedded import Broker, RedisServer, create_topics, delete_topics, free_port
from demandsense.errors import ServiceUnavailable

pytestmark = pytest.mark.integration


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def topics(bootstrap: str) -> set[str]:
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=5).topics)


def round_trip(bootstrap: str, topic: str, value: bytes) -> bytes | None:
    """Produce ``value`` and read it back from offset 0 with a plain consumer."""
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, value)
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "pytest-embedded"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    try:
        msg = consumer.poll(10)
        return None if msg is None or msg.error() else msg.value()
    finally:
        consumer.close()


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_broker_stop_start_restart_keep_the_port_and_lose_topics(broker: Broker) -> None:
    address, topic = broker.bootstrap_servers, f"pytest_restart_{uuid.uuid4().hex[:8]}"
    create_topics(address, [topic])
    assert round_trip(address, topic, b"before") == b"before"

    broker.stop()
    assert not broker.running and not listening(broker.port)
    broker.start()
    assert broker.running and broker.bootstrap_servers == address
    assert topic not in topics(address)  # memory storage

    broker.restart()
    create_topics(address, [topic])
    assert round_trip(address, topic, b"after") == b"after"
    delete_topics(address, [topic])


def test_second_broker_on_a_used_port_fails_clearly(broker: Broker) -> None:
    with pytest.raises(ServiceUnavailable, match="already in use"), Broker(port=broker.port):
        pass
    assert broker.running


def test_redis_restart_keeps_the_url_and_loses_keys(redis_server: RedisServer) -> None:
    url, key = redis_server.url, f"pytest:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(url)
    client.set(key, b"v")
    redis_server.restart()
    assert redis_server.url == url
    assert client.ping() and client.get(key) is None
    client.close()


def test_create_topics_is_idempotent(kafka_bootstrap: str) -> None:
    names = [f"pytest_idem_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    create_topics(kafka_bootstrap, names, partitions=3)
    create_topics(kafka_bootstrap, [*names, *names], partitions=3)
    listed = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=5).topics
    assert all(len(listed[n].partitions) == 3 for n in names)
    delete_topics(kafka_bootstrap, [*names, "pytest_never_created"])
    assert not topics(kafka_bootstrap) & set(names)
