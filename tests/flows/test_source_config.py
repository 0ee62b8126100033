"""The Kafka input's consumer settings: low-latency defaults, overridable per deployment."""

from __future__ import annotations

import pytest

from demandsense.settings import librdkafka_overrides
from flows.sources import KafkaBatchSource


def test_consumer_overrides_from_environment() -> None:
    env = {"DEMANDSENSE_CONSUMER_FETCH_WAIT_MAX_MS": "500", "DEMANDSENSE_CONSUMER_": "x", "OTHER": "1"}
    assert librdkafka_overrides("CONSUMER", env) == {"fetch.wait.max.ms": "500"}


def test_source_defaults_and_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    topics = {"Sale": "s", "InventoryEvent": "i", "ItemParams": "p"}
    source = KafkaBatchSource({"bootstrap.servers": "x:1"}, topics, from_beginning=False, exit_at_end=False)
    assert source._config["fetch.wait.max.ms"] == 50  # librdkafka's 500 ms default held records (latency.md)
    assert source._config["socket.nagle.disable"] is True
    monkeypatch.setenv("DEMANDSENSE_CONSUMER_FETCH_WAIT_MAX_MS", "500")
    source = KafkaBatchSource({"bootstrap.servers": "x:1"}, topics, from_beginning=False, exit_at_end=False)
    assert source._config["fetch.wait.max.ms"] == "500"
