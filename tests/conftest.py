"""Session fixtures for a real Kafka broker and a real Redis.

Each service comes from the first of: an environment variable (``KAFKA_BOOTSTRAP_SERVERS``,
``REDIS_URL``); a testcontainers container, when testcontainers is installed and a Docker engine
answers; or the embedded servers of :mod:`demandsense.embedded` (about 50 ms to start). Nothing
is imported or started until a test asks for one of these fixtures.

On the embedded Tansu broker a ``subscribe()`` consumer waits ``session.timeout.ms / 2`` for
its first assignment: set ``session.timeout.ms=2000`` or use ``assign()`` (see the quirks in
:mod:`demandsense.embedded`).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Generic, TypeVar

import pytest

if TYPE_CHECKING:
    from demandsense.embedded import Broker, RedisServer

KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.1"
REDIS_IMAGE = "redis:7.2-alpine"
S = TypeVar("S")


@dataclass(frozen=True)
class Backend(Generic[S]):
    """Where a service is: its address, what provides it, and the embedded server if it is one."""

    address: str
    source: str
    server: S | None = None


@cache
def docker_answers() -> bool:
    """Whether testcontainers is installed and a Docker engine answers."""
    try:
        from testcontainers.core.docker_client import DockerClient

        DockerClient(timeout=5).client.ping()
    except Exception:  # no testcontainers, no socket, engine down: all mean "no Docker"
        return False
    return True


@contextmanager
def _kafka_container() -> Iterator[str]:
    from testcontainers.kafka import KafkaContainer

    with KafkaContainer(KAFKA_IMAGE).with_kraft() as container:
        yield container.get_bootstrap_server()


@contextmanager
def _redis_container() -> Iterator[str]:
    from testcontainers.redis import RedisContainer

    with RedisContainer(REDIS_IMAGE) as container:
        yield f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"


def _backend(
    env_var: str,
    container: Callable[[], AbstractContextManager[str]],
    embedded: Callable[[], S],
    address_of: Callable[[S], str],
) -> Iterator[Backend[S]]:
    """Yield the service from ``env_var``, else Docker, else embedded; stop it afterwards."""
    if address := os.environ.get(env_var):
        yield Backend(address, f"${env_var}")
    elif docker_answers():
        with container() as address:
            yield Backend(address, "docker")
    else:
        with embedded() as server:
            yield Backend(address_of(server), "embedded", server)


@pytest.fixture(scope="session")
def kafka_backend() -> Iterator[Backend[Broker]]:
    """The session's Kafka."""
    from demandsense.embedded import Broker

    yield from _backend("KAFKA_BOOTSTRAP_SERVERS", _kafka_container, Broker, lambda b: b.bootstrap_servers)


@pytest.fixture(scope="session")
def redis_backend() -> Iterator[Backend[RedisServer]]:
    """The session's Redis."""
    from demandsense.embedded import RedisServer

    yield from _backend("REDIS_URL", _redis_container, RedisServer, lambda r: r.url)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_backend: Backend[Broker]) -> str:
    """``host:port`` of the session's Kafka."""
    return kafka_backend.address


@pytest.fixture(scope="session")
def redis_url(redis_backend: Backend[RedisServer]) -> str:
    """``redis://`` URL of the session's Redis."""
    return redis_backend.address


def _embedded(backend: Backend[S], what: str) -> S:
    if backend.server is None:
        pytest.skip(f"{what} comes from {backend.source}, not the embedded server this test stops")
    return backend.server


@pytest.fixture
def broker(kafka_backend: Backend[Broker]) -> Iterator[Broker]:
    """The embedded broker behind ``kafka_bootstrap``, for tests that stop or restart it.

    Skips when Kafka comes from elsewhere. Restarting it empties it for every later test, so it
    is started again if a test leaves it stopped, and session-wide topics must not rely on it.
    """
    server = _embedded(kafka_backend, "Kafka")
    yield server
    server.start()


@pytest.fixture
def redis_server(redis_backend: Backend[RedisServer]) -> Iterator[RedisServer]:
    """The embedded Redis behind ``redis_url``, for tests that stop or restart it (see ``broker``)."""
    server = _embedded(redis_backend, "Redis")
    yield server
    server.start()


@pytest.fixture
def topic_factory(request: pytest.FixtureRequest, kafka_backend: Backend[Broker]) -> Iterator[Callable[..., str]]:
    """``make(partitions=1) -> name``: a new topic ``pytest_<test>_<uuid8>``, deleted after the test."""
    from demandsense.embedded import create_topics, delete_topics

    test = re.sub(r"[^A-Za-z0-9._-]", "_", request.node.name)[:100]
    made: list[str] = []

    def make(partitions: int = 1) -> str:
        topic = f"pytest_{test}_{uuid.uuid4().hex[:8]}"
        create_topics(kafka_backend.address, [topic], partitions)
        made.append(topic)
        return topic

    yield make
    if kafka_backend.server is None or kafka_backend.server.running:  # a stopped broker lost them already
        delete_topics(kafka_backend.address, made)
