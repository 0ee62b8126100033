"""`demandsense run` end to end against the real broker: simulated Avro in, alerts, triggers and dead letters out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from demandsense.serde import AvroCodec
from demandsense.simulate import SimConfig, generate, produce, write_files
from tests.integration.test_kafka_roundtrip import POISON, consume_all
from tests.integration.test_kafka_roundtrip import produce as produce_raw

pytestmark = pytest.mark.integration


def _demandsense(*args: str | Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "demandsense.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def test_run_processes_a_simulated_stream_and_exits_at_end(kafka_bootstrap, topic_factory, tmp_path) -> None:
    sim = generate(SimConfig(stores=2, skus=120, days=5, seed=11))
    names = {k: topic_factory() for k in ("sales", "inventory", "items", "alerts", "triggers", "dead")}
    counts = produce(sim, kafka_bootstrap, fmt="avro", topics={k: names[k] for k in ("sales", "inventory", "items")})
    assert counts[names["sales"]] == len(sim.sales)
    for stream in ("sales", "inventory", "items"):  # a poison record in each input topic
        produce_raw(kafka_bootstrap, names[stream], [(b"S001:POISON", POISON, None)])

    run = _demandsense(
        "run", "--bootstrap-servers", kafka_bootstrap, "--from-beginning", "--exit-at-end", "--metrics-port", "0",
        "--sales-topic", names["sales"], "--inventory-topic", names["inventory"], "--items-topic", names["items"],
        "--alerts-topic", names["alerts"], "--triggers-topic", names["triggers"],
        "--dead-letter-topic", names["dead"],
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]

    alerts = [AvroCodec("Alert").decode(m.value()) for m in consume_all(kafka_bootstrap, names["alerts"], 1)]
    triggers = [
        AvroCodec("ReplenishmentTrigger").decode(m.value()) for m in consume_all(kafka_bootstrap, names["triggers"], 1)
    ]
    dead = [AvroCodec("DeadLetter").decode(m.value()) for m in consume_all(kafka_bootstrap, names["dead"], 1)]
    assert alerts and triggers
    assert {a["alert_type"] for a in alerts} >= {"DEMAND_SPIKE", "OUT_OF_STOCK"}
    poison = [d for d in dead if d["raw"] == POISON]
    assert {d["source_topic"] for d in poison} == {names[k] for k in ("sales", "inventory", "items")}
    assert len(poison) == 3 and all(d["stage"] == "decode" and d["reason"] == "malformed" for d in poison)

    # the same data replayed from files gives the same alert ids: one dataflow, two edges, event-time order
    write_files(sim, tmp_path)
    replay = _demandsense(
        "replay", "--sales", tmp_path / "sales.jsonl", "--inventory", tmp_path / "inventory.jsonl",
        "--items", tmp_path / "items.jsonl", "--alerts-out", tmp_path / "alerts.jsonl",
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr[-3000:]
    replayed = {json.loads(line)["alert_id"] for line in (tmp_path / "alerts.jsonl").read_text().splitlines()}
    from_kafka = {a["alert_id"] for a in alerts}
    assert from_kafka == replayed, (len(from_kafka), len(replayed), len(from_kafka & replayed))


def test_run_needs_its_sales_topic_and_only_logs_other_missing_topics(kafka_bootstrap, topic_factory) -> None:
    missing = {k: f"missing-{topic_factory()}" for k in ("sales", "inventory", "items", "alerts")}  # never created
    outputs = (
        "--alerts-topic",
        topic_factory(),
        "--triggers-topic",
        topic_factory(),
        "--dead-letter-topic",
        topic_factory(),
    )

    run = _demandsense(
        "run", "--bootstrap-servers", kafka_bootstrap, "--exit-at-end", "--sales-topic", missing["sales"], *outputs
    )
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == (
        f"demandsense run: error: the sales topic {missing['sales']} does not exist on {kafka_bootstrap}: "
        "create it, or fix --sales-topic"
    )

    run = _demandsense(
        "run", "--bootstrap-servers", kafka_bootstrap, "--exit-at-end", "--sales-topic", topic_factory(),
        "--inventory-topic", missing["inventory"], "--items-topic", missing["items"], *outputs[2:],
        "--alerts-topic", missing["alerts"],
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    for kind in ("inventory", "items"):
        assert f"input topic {missing[kind]} " in run.stderr and "does not exist" in run.stderr
    assert f"output topic {missing['alerts']} (Alert) does not exist: deliveries fail unless" in run.stderr


@pytest.mark.parametrize(
    ("env", "args", "words"),
    [
        ({"DEMANDSENSE_CONSUMER_NOPE": "1"}, (), "Kafka consumer settings: No such configuration property"),
        ({"DEMANDSENSE_PRODUCER_NOPE": "1"}, (), "Kafka producer settings: No such configuration property"),
        ({}, ("--redis-url", "redis://host:port"), "--redis-url: Port could not be cast to integer value"),
    ],
)
def test_settings_the_dataflow_would_refuse_are_one_line_before_it_starts(
    env: dict[str, str], args: tuple[str, ...], words: str, kafka_bootstrap, topic_factory, monkeypatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    run = _demandsense(
        "run", "--bootstrap-servers", kafka_bootstrap, "--sales-topic", topic_factory(), *args, timeout=60
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr and "panicked" not in run.stderr
    assert run.stderr.splitlines()[-1].startswith(f"demandsense run: error: {words}"), run.stderr


def test_a_missing_recovery_partition_is_one_line(kafka_bootstrap, topic_factory, tmp_path: Path) -> None:
    from demandsense.cli import _init_recovery

    recovery = _init_recovery(tmp_path / "recovery", 0, 1, 2)
    (recovery / "part-1.sqlite3").unlink()
    run = _demandsense(
        "run", "--bootstrap-servers", kafka_bootstrap, "--sales-topic", topic_factory(), "--exit-at-end",
        "--recovery-dir", str(recovery), "--workers", "2", "--metrics-port", "0", timeout=60,
    )  # fmt: skip
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.splitlines()[-1].startswith("demandsense run: error: --recovery-dir: Missing recovery partitions")
