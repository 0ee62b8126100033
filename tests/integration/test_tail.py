"""`tail` reads back what demandsense publishes, Avro or JSON, with a plain consumer."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from demandsense.embedded import create_topics, delete_topics
from demandsense.errors import ConfigError, DemandsenseError
from demandsense.serde import AvroCodec, make_codec
from demandsense.tail import record_type_of, tail
from tests.integration.test_kafka_roundtrip import produce

pytestmark = pytest.mark.integration

ALERT = {
    "alert_id": "a1", "alert_type": "OUT_OF_STOCK", "status": "OPEN", "store_id": "S1", "sku": "X",
    "event_time": 1772438456073, "detected_at": 1772438457000, "priority": 80, "severity": "CRITICAL",
    "expected_rate": 2.0, "observed_rate": 0.0, "confidence": 0.95, "hours_to_stockout": 0.0,
    "revenue_at_risk": 120.0, "reason": "Out of stock.", "model_version": "m", "evidence": {"on_hand": 0.0},
}  # fmt: skip


@pytest.mark.parametrize("fmt", ["avro", "json"])
def test_tail_prints_published_alerts_as_json_lines(kafka_bootstrap, topic_factory, request, fmt: str) -> None:
    topic = topic_factory() + "-alerts"
    create_topics(kafka_bootstrap, [topic])
    request.addfinalizer(lambda: delete_topics(kafka_bootstrap, [topic]))
    codec = make_codec(fmt, "Alert")
    produce(kafka_bootstrap, topic, [(b"S1:X", codec.encode(ALERT | {"alert_id": f"a{i}"}), None) for i in range(3)])
    out = io.StringIO()
    assert tail(kafka_bootstrap, topic, fmt=fmt, out=out) == 3
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["alert_id"] for r in rows] == ["a0", "a1", "a2"]
    assert rows[0]["event_time"] == "2026-03-02T08:00:56.073Z" and rows[0]["alert_type"] == "OUT_OF_STOCK"


def test_tail_in_the_wrong_format_says_which_to_try(kafka_bootstrap, topic_factory, request) -> None:
    topic = topic_factory() + "-alerts"
    create_topics(kafka_bootstrap, [topic])
    request.addfinalizer(lambda: delete_topics(kafka_bootstrap, [topic]))
    produce(
        kafka_bootstrap, topic, [(b"S1:X", make_codec(fmt, "Alert").encode(ALERT), None) for fmt in ("avro", "json")]
    )
    for fmt, hint in (("json", "try --format avro"), ("avro", "try --format json")):
        out = io.StringIO()
        assert tail(kafka_bootstrap, topic, fmt=fmt, out=out) == 2
        rows = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [r.get("alert_id") for r in rows].count("a1") == 1, rows
        assert [hint in r.get("undecodable", "") for r in rows].count(True) == 1, rows


def test_tail_reads_frames_with_a_schema_registry_id(kafka_bootstrap, topic_factory, request) -> None:
    """demandsense writes a registry's id in the frame when given --schema-registry-url: the same schema."""
    topic = topic_factory() + "-alerts"
    create_topics(kafka_bootstrap, [topic])
    request.addfinalizer(lambda: delete_topics(kafka_bootstrap, [topic]))
    produce(kafka_bootstrap, topic, [(b"S1:X", AvroCodec("Alert", schema_id=42).encode(ALERT), None)])
    out = io.StringIO()
    assert tail(kafka_bootstrap, topic, out=out) == 1
    assert json.loads(out.getvalue())["alert_id"] == "a1"


def test_tail_takes_the_jobs_kafka_security_settings(kafka_bootstrap, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMANDSENSE_KAFKA_SECURITY_PROTOCOL", "carrier-pigeon")
    with pytest.raises(ConfigError, match="Kafka consumer settings: .*security.protocol"):
        tail(kafka_bootstrap, "retail.demand-alerts.v1", out=io.StringIO())


def test_tail_names_a_missing_topic(kafka_bootstrap) -> None:
    with pytest.raises(DemandsenseError, match="does not exist"):
        tail(kafka_bootstrap, "no-such-alerts-topic", out=io.StringIO())


def test_record_type_is_told_by_the_topic_name() -> None:
    assert record_type_of("retail.demand-alerts.v1") == "Alert"
    assert record_type_of("retail.replenishment-triggers.v1") == "ReplenishmentTrigger"
    assert record_type_of("retail.dead-letter.v1") == "DeadLetter"
    assert record_type_of("retail.inventory.v1") == "InventoryEvent"
    assert record_type_of("retail.item-params.v1") == "ItemParams"
    assert record_type_of("retail.sales.v1") == "Sale"
    with pytest.raises(DemandsenseError):
        record_type_of("mystery")


def test_tail_into_a_closed_pipe_stops_quietly(kafka_bootstrap, topic_factory, request) -> None:
    """`demandsense tail | head -1`: the exit of a tool killed by SIGPIPE (141), no traceback."""
    topic = topic_factory() + "-alerts"
    create_topics(kafka_bootstrap, [topic])
    request.addfinalizer(lambda: delete_topics(kafka_bootstrap, [topic]))
    codec = make_codec("avro", "Alert")
    produce(kafka_bootstrap, topic, [(b"S1:X", codec.encode(ALERT | {"alert_id": f"a{i}"}), None) for i in range(5000)])
    cmd = [sys.executable, "-m", "demandsense.cli", "tail", "--bootstrap-servers", kafka_bootstrap, "--topic", topic]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert json.loads(proc.stdout.readline())["alert_id"] == "a0"
    proc.stdout.close()  # 5,000 lines overflow the pipe: tail writes into a closed pipe
    assert proc.wait(60) == 141
    assert b"Traceback" not in proc.stderr.read()
