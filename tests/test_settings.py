"""Kafka security and producer settings: from the environment into librdkafka, which accepts them.

No broker here authenticates (the embedded Tansu cannot: see docs/security.md), so these tests
stop where a real cluster would take over: librdkafka builds producers and consumers from the
SASL_SSL/SCRAM-SHA-512 and mutual-TLS settings demandsense derives from ``DEMANDSENSE_KAFKA_*``,
and refuses broken ones at construction.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer

from demandsense.errors import ConfigError
from demandsense.settings import (
    delivery_retries,
    kafka_config,
    kafka_config_from_env,
    librdkafka_overrides,
)
from flows.sinks import CONSUMER_ONLY, KafkaSink
from tests.tls import Certs, make_certs

NOWHERE = "127.0.0.1:1"  # nothing listens: clients are built, never connected


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _clients(conf: dict[str, str]) -> None:
    """Build a producer (as the sink does) and a consumer from ``conf``; librdkafka validates them."""
    Producer({k: v for k, v in conf.items() if k not in CONSUMER_ONLY}).flush(0)
    Consumer(conf).close()


def test_sasl_ssl_scram_from_the_environment(certs: Certs, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "demandsense", "KAFKA_SASL_PASSWORD": "s3cret", "KAFKA_SSL_CA_LOCATION": str(certs.ca),
    }  # fmt: skip
    for k, v in env.items():
        monkeypatch.setenv(f"DEMANDSENSE_{k}", v)
    conf = kafka_config_from_env(NOWHERE, group_id="g")
    assert conf == {
        "bootstrap.servers": NOWHERE, "group.id": "g", "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "demandsense", "sasl.password": "s3cret",
        "ssl.ca.location": str(certs.ca),
    }  # fmt: skip
    _clients(conf)
    sink = KafkaSink(conf, {"Alert": "a"}, "json").build("out", 0, 1)
    sink.close()


def test_mutual_tls_from_the_environment(certs: Certs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMANDSENSE_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("DEMANDSENSE_KAFKA_SSL_CA_LOCATION", str(certs.ca))
    monkeypatch.setenv("DEMANDSENSE_KAFKA_SSL_CERTIFICATE_LOCATION", str(certs.client_cert))
    monkeypatch.setenv("DEMANDSENSE_KAFKA_SSL_KEY_LOCATION", str(certs.client_key))
    conf = kafka_config_from_env(NOWHERE)
    assert conf["ssl.certificate.location"] == str(certs.client_cert)
    _clients(conf)


def test_librdkafka_refuses_broken_security_settings(certs: Certs, tmp_path: Path) -> None:
    mtls = kafka_config(
        NOWHERE,
        security_protocol="SSL",
        ssl_ca_location=str(certs.ca),
        ssl_certificate_location=str(certs.client_cert),
        ssl_key_location=str(certs.server_key),
    )
    with pytest.raises(KafkaException, match="(?i)private key|key values mismatch|ssl"):
        _clients(mtls)  # the key does not belong to the certificate
    missing = kafka_config(NOWHERE, security_protocol="SSL", ssl_ca_location=str(tmp_path / "absent.pem"))
    with pytest.raises(KafkaException):
        _clients(missing)
    with pytest.raises(KafkaException):
        _clients(kafka_config(NOWHERE, security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-999"))


def test_producer_overrides_and_delivery_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "DEMANDSENSE_PRODUCER_MESSAGE_TIMEOUT_MS": "60000",
        "DEMANDSENSE_PRODUCER_QUEUE_BUFFERING_MAX_MESSAGES": "10",
        "DEMANDSENSE_PRODUCER_": "ignored",
        "DEMANDSENSE_BOOTSTRAP_SERVERS": "not a producer setting",
    }
    assert librdkafka_overrides("PRODUCER", env) == {
        "message.timeout.ms": "60000",
        "queue.buffering.max.messages": "10",
    }
    assert delivery_retries({}) == 8
    assert delivery_retries({"DEMANDSENSE_DELIVERY_RETRIES": "0"}) == 0
    for bad in ("-1", "many"):
        with pytest.raises(ConfigError, match="DEMANDSENSE_DELIVERY_RETRIES"):
            delivery_retries({"DEMANDSENSE_DELIVERY_RETRIES": bad})
    monkeypatch.setenv("DEMANDSENSE_PRODUCER_NOT_A_PROPERTY", "1")
    with pytest.raises(KafkaException, match="not.a.property"):
        KafkaSink({"bootstrap.servers": NOWHERE}, {"Alert": "a"}, "json").build("out", 0, 1)
