"""Crash recovery and graceful shutdown of `demandsense run` against the real broker.

A session fixture produces one simulated Avro stream (sales and inventory on 3 partitions each)
and runs an uninterrupted reference `run --exit-at-end` over it. The tests here (and those of
``test_cluster.py`` and ``test_metrics.py``, which import these helpers) compare other runs'
outputs with the reference: the set of alert ids, trigger ids and dead-lettered record
coordinates.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from demandsense.embedded import create_topics, delete_topics, free_port
from demandsense.serde import AvroCodec
from demandsense.simulate import Records, SimConfig, Simulation, generate, produce
from tests.integration.test_kafka_roundtrip import POISON, consume_all
from tests.integration.test_kafka_roundtrip import produce as produce_raw

pytestmark = pytest.mark.integration

INPUT_PARTITIONS = 3
OUTPUT_KINDS = {"alerts": "Alert", "triggers": "ReplenishmentTrigger", "dead": "DeadLetter"}


@dataclass
class Outputs:
    """What one or more runs wrote: every message's id, in order (repeats kept)."""

    alerts: list[str]
    triggers: list[str]
    dead: list[tuple[str, int, int]]  # (source topic, partition, offset)

    def ids(self) -> tuple[set[str], set[str], set[tuple[str, int, int]]]:
        return set(self.alerts), set(self.triggers), set(self.dead)


@dataclass
class Stream:
    """The session's input topics, what was produced, and the reference run's outputs."""

    bootstrap: str
    inputs: dict[str, str]  # sales, inventory, items -> topic
    produced: dict[str, int]  # topic -> records
    reference: Outputs
    sim: Simulation


def new_outputs(bootstrap: str) -> dict[str, str]:
    """Fresh output topics (one partition each) for one run."""
    names = {k: f"pytest_out_{k}_{uuid.uuid4().hex[:8]}" for k in OUTPUT_KINDS}
    create_topics(bootstrap, names.values(), 1)
    return names


def new_inputs(bootstrap: str, prefix: str) -> dict[str, str]:
    """Fresh input topics ``<prefix>_<kind>_<tag>``: sales and inventory multi-partition, items one partition."""
    tag = uuid.uuid4().hex[:8]
    inputs = {k: f"{prefix}_{k}_{tag}" for k in ("sales", "inventory", "items")}
    create_topics(bootstrap, [inputs["sales"], inputs["inventory"]], INPUT_PARTITIONS)
    create_topics(bootstrap, [inputs["items"]], 1)
    return inputs


def run_args(stream: Stream, outputs: dict[str, str], *extra: str | Path) -> list[str]:
    """The command line of `demandsense run` over the session stream, writing to ``outputs``."""
    return [
        sys.executable, "-m", "demandsense.cli", "run", "--bootstrap-servers", stream.bootstrap, "--from-beginning",
        "--sales-topic", stream.inputs["sales"], "--inventory-topic", stream.inputs["inventory"],
        "--items-topic", stream.inputs["items"], "--alerts-topic", outputs["alerts"],
        "--triggers-topic", outputs["triggers"], "--dead-letter-topic", outputs["dead"], *map(str, extra),
    ]  # fmt: skip


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start a run in the background, stdout and stderr to ``log``."""
    with log.open("ab") as f:
        return subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def finish(proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    """Wait for a run to exit 0."""
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"run did not finish within {timeout} s: {log.read_text()[-3000:]}") from None
    assert code == 0, f"run exited {code}: {log.read_text()[-3000:]}"


def read_outputs(bootstrap: str, outputs: dict[str, str], *, any_id: bool = False) -> Outputs:
    """Every message of a run's output topics (framed with demandsense's own schema ids, or ``any_id``)."""
    got = {}
    for k, kind in OUTPUT_KINDS.items():
        codec = AvroCodec(kind, any_id=any_id)
        got[k] = [codec.decode(m.value()) for m in consume_all(bootstrap, outputs[k], 1, timeout=30)]
    return Outputs(
        [a["alert_id"] for a in got["alerts"]],
        [t["trigger_id"] for t in got["triggers"]],
        [(d["source_topic"], d["partition"], d["offset"]) for d in got["dead"]],
    )


def end_offset(bootstrap: str, topic: str) -> int:
    """A topic's (single partition's) end offset as the broker reports it now (may be low, never high)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"pytest-{uuid.uuid4().hex[:8]}"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)[1]
    finally:
        c.close()


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """``/metrics`` as {(sample name, labels): value}; empty while the server is not up."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return {}
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)


def wait_for(what: str, check, timeout: float = 60, proc: subprocess.Popen | None = None, log: Path | None = None):
    """Poll ``check()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"run exited {proc.returncode} while waiting for {what}: {log and log.read_text()[-3000:]}"
            )
        if got := check():
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {log and log.read_text()[-3000:]}")


def wait_processed(port: int, records: float, proc, log) -> dict:
    """Wait until the run at metrics ``port`` counted ``records`` input records and raised some alerts."""

    def check():
        m = scrape(port)
        return (
            m
            if total(m, "demandsense_events_in_total") >= records and total(m, "demandsense_alerts_out_total")
            else None
        )

    return wait_for(f"{records:,.0f} input records processed", check, proc=proc, log=log)


def wait_snapshots(recovery: Path, n: int, proc, log) -> None:
    """Wait until the run's recovery store committed ``n`` more epochs than it had when called."""

    def committed() -> int:
        epochs = [-1]
        for db in recovery.glob("*.sqlite3"):
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
                epochs.append(con.execute("SELECT COALESCE(MAX(commit_epoch), -1) FROM commits").fetchone()[0])
        return min(epochs[1:] or epochs)

    start_epoch = committed()
    wait_for(f"{n} snapshots", lambda: committed() >= start_epoch + n, proc=proc, log=log)


@dataclass
class Paused:
    """A copy of a stream on fresh topics, produced up to the middle of its time span.

    ``first`` records are on the topics; ``rest()`` produces the remainder (the poison record
    included), so a run started on it is mid-stream for as long as a test needs. ``stream``
    counts the whole copy, and its reference is the original's with dead letters on the new topics.
    """

    stream: Stream
    first: int
    rest: Callable[[], None]


def paused_copy(stream: Stream, prefix: str = "pytest_paused") -> Paused:
    """``stream``'s records on new topics, the first half (in arrival time) produced, the rest on demand."""
    sim, inputs = stream.sim, new_inputs(stream.bootstrap, prefix)
    rows = sim.sales.rows + sim.inventory.rows
    middle = (min(r[0] for r in rows) + max(r[0] for r in rows)) // 2

    def part(records: Records, late: bool) -> Records:
        return Records(records.fields, [r for r in records.rows if (r[0] >= middle) == late], records.id_prefix)

    def half(late: bool) -> Simulation:
        items = [] if late else sim.items
        return replace(sim, sales=part(sim.sales, late), inventory=part(sim.inventory, late), items=items)

    first = sum(produce(half(False), stream.bootstrap, fmt="avro", topics=inputs).values())

    def rest() -> None:
        produce(half(True), stream.bootstrap, fmt="avro", topics=inputs)
        produce_raw(stream.bootstrap, inputs["sales"], [(b"S001:POISON", POISON, None)])

    renamed = {old: inputs[k] for k, old in stream.inputs.items()}
    ref = stream.reference
    reference = Outputs(ref.alerts, ref.triggers, [(renamed[t], p, o) for t, p, o in ref.dead])
    produced = {renamed[t]: n for t, n in stream.produced.items()}
    return Paused(Stream(stream.bootstrap, inputs, produced, reference, sim), first, rest)


def simulated_stream(bootstrap: str, config: SimConfig, prefix: str, log: Path) -> tuple[Stream, dict[str, str]]:
    """``config`` simulated as Avro on multi-partition topics ``<prefix>_<kind>_<tag>`` with a poison record,
    and an uninterrupted reference run's outputs; also the reference run's output topics."""
    sim, inputs = generate(config), new_inputs(bootstrap, prefix)
    produced = produce(sim, bootstrap, fmt="avro", topics=inputs)
    produce_raw(bootstrap, inputs["sales"], [(b"S001:POISON", POISON, None)])
    produced[inputs["sales"]] += 1
    s = Stream(bootstrap, inputs, produced, Outputs([], [], []), sim)
    outputs = new_outputs(bootstrap)
    finish(start(run_args(s, outputs, "--exit-at-end", "--metrics-port", "0"), log), log)
    s.reference = read_outputs(bootstrap, outputs)
    assert s.reference.alerts and s.reference.triggers and s.reference.dead
    return s, outputs


@pytest.fixture(scope="session")
def stream(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stream]:
    """A simulated Avro stream on multi-partition topics, and an uninterrupted reference run's outputs."""
    log = tmp_path_factory.mktemp("reference") / "run.log"
    s, outputs = simulated_stream(kafka_bootstrap, SimConfig(stores=4, skus=200, days=8, seed=23), "pytest_in", log)
    assert len(set(s.reference.alerts)) == len(s.reference.alerts), "one run emits each alert once"
    yield s
    delete_topics(kafka_bootstrap, [*s.inputs.values(), *outputs.values()])


def assert_covers_reference(got: Outputs, reference: Outputs) -> None:
    """Every reference output is there and nothing else: repeats carry ids the reference has."""
    alerts, triggers, dead = got.ids()
    ref_alerts, ref_triggers, ref_dead = reference.ids()
    assert alerts >= ref_alerts, f"{len(ref_alerts - alerts)} alerts lost"
    assert alerts == ref_alerts, f"{len(alerts - ref_alerts)} alert ids that the reference run does not have"
    assert triggers == ref_triggers, (len(triggers - ref_triggers), len(ref_triggers - triggers))
    assert dead == ref_dead, (len(dead - ref_dead), len(ref_dead - dead))


def test_sigkill_mid_stream_then_resume_loses_nothing(stream: Stream, tmp_path: Path) -> None:
    paused = paused_copy(stream)
    s, outputs, recovery, port = paused.stream, new_outputs(stream.bootstrap), tmp_path / "recovery", free_port()
    log = tmp_path / "run.log"
    args = run_args(s, outputs, "--recovery-dir", recovery, "--snapshot-interval", "0.5")
    proc = start([*args, "--metrics-port", str(port)], log)
    wait_processed(port, paused.first, proc, log)
    wait_snapshots(recovery, 2, proc, log)  # taken after the first half was read
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = read_outputs(s.bootstrap, outputs)
    assert 0 < len(before.alerts) < len(s.reference.alerts), "killed mid-stream"

    paused.rest()
    finish(start([*args, "--exit-at-end", "--metrics-port", "0"], log), log)
    after = read_outputs(s.bootstrap, outputs)
    assert_covers_reference(after, s.reference)
    # resumed from a snapshot, not from the beginning: fewer repeats than a full second run
    repeats = len(after.alerts) - len(set(after.alerts))
    assert repeats < len(before.alerts), (repeats, len(before.alerts))
    assert sorted(p.name for p in recovery.glob("*.sqlite3")) == ["part-0.sqlite3"]


def test_sigterm_stops_cleanly_and_resumes_without_repeats(stream: Stream, tmp_path: Path) -> None:
    paused = paused_copy(stream)
    s, outputs, recovery, port = paused.stream, new_outputs(stream.bootstrap), tmp_path / "recovery", free_port()
    log = tmp_path / "run.log"
    args = run_args(s, outputs, "--recovery-dir", recovery, "--snapshot-interval", "0.5", "--log-format", "json")
    proc = start([*args, "--metrics-port", str(port)], log)
    wait_processed(port, paused.first, proc, log)
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    finish(proc, log, timeout=15)
    assert time.monotonic() - t0 < 10, "a clean stop takes seconds"
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    stopped = [r for r in lines if r["message"] == "flow stopped"]
    assert stopped and stopped[-1]["level"] == "INFO", lines[-5:]
    before = read_outputs(s.bootstrap, outputs)
    # everything the flow emitted before stopping was delivered (producers flushed)
    assert len(before.alerts) == stopped[-1]["alerts_out"] > 0
    assert len(before.triggers) == stopped[-1]["triggers_out"]
    assert len(before.alerts) < len(s.reference.alerts), "stopped mid-stream"

    paused.rest()
    finish(start([*args, "--exit-at-end", "--metrics-port", "0"], log), log)
    after = read_outputs(s.bootstrap, outputs)
    assert_covers_reference(after, s.reference)
    # the final snapshot was taken at the stop: nothing is emitted twice
    assert Counter(after.alerts).most_common(1)[0][1] == 1
    assert len(after.triggers) == len(set(after.triggers))


def test_ctrl_c_stops_cleanly_with_exit_130(stream: Stream, tmp_path: Path) -> None:
    paused = paused_copy(stream)
    s, outputs, port, log = paused.stream, new_outputs(stream.bootstrap), free_port(), tmp_path / "run.log"
    proc = start([*run_args(s, outputs, "--metrics-port", str(port))], log)
    wait_processed(port, paused.first, proc, log)
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"Ctrl-C did not stop the run: {log.read_text()[-3000:]}") from None
    text = log.read_text()
    assert code == 130, text[-3000:]
    assert "SIGINT: stopping input" in text and "flow stopped" in text
    assert "panicked" not in text and "Traceback" not in text
    assert read_outputs(s.bootstrap, outputs).alerts, "what was emitted before the stop was delivered"


def test_readyz_after_consuming_and_healthz_live(stream: Stream, tmp_path: Path) -> None:
    from urllib.error import HTTPError
    from urllib.request import urlopen

    outputs, port, log = new_outputs(stream.bootstrap), free_port(), tmp_path / "run.log"

    def status(path: str) -> int | None:
        try:
            return urlopen(f"http://127.0.0.1:{port}{path}", timeout=2).status
        except HTTPError as exc:
            return exc.code
        except OSError:
            return None

    proc = start([*run_args(stream, outputs, "--metrics-port", port)], log)
    try:
        wait_for("/healthz", lambda: status("/healthz") == 200, proc=proc, log=log)
        wait_for("/readyz", lambda: status("/readyz") == 200, proc=proc, log=log)
        assert status("/nope") == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        finish(proc, log, timeout=15)


# -- recovery partitions: which a process creates ------------------------------------------------


def _parts(path: Path) -> dict[int, int]:
    found = {}
    for f in path.glob("*.sqlite3"):
        with sqlite3.connect(f) as con:
            found.update(dict(con.execute("SELECT part_index, part_count FROM parts")))
    return found


def test_init_recovery_creates_only_this_process_share(tmp_path: Path) -> None:
    from demandsense.cli import _init_recovery

    pods = [tmp_path / f"pod-{p}" for p in range(3)]  # a volume per process, as in the Helm chart
    for p, d in enumerate(pods):
        _init_recovery(d, p, 3, 2)
    assert [_parts(d) for d in pods] == [{0: 6, 3: 6}, {1: 6, 4: 6}, {2: 6, 5: 6}]
    before = {f: f.stat().st_mtime_ns for d in pods for f in d.glob("*.sqlite3")}
    for p, d in enumerate(pods):  # a restart reuses them
        _init_recovery(d, p, 3, 2)
    assert {f: f.stat().st_mtime_ns for d in pods for f in d.glob("*.sqlite3")} == before
    # fewer processes: pod 0 holds part of its new share and creates nothing; Bytewax reports the missing ones
    _init_recovery(pods[0], 0, 1, 2)
    assert _parts(pods[0]) == {0: 6, 3: 6}


def test_init_recovery_in_one_shared_directory(tmp_path: Path) -> None:
    from demandsense.cli import _init_recovery

    shared = tmp_path / "shared"
    for p in (1, 0):  # any start order
        _init_recovery(shared, p, 2, 1)
    assert _parts(shared) == {0: 2, 1: 2}
    _init_recovery(shared, 0, 1, 4)  # rescaled to one process: all partitions are here already
    assert _parts(shared) == {0: 2, 1: 2}
    assert not [p for p in shared.iterdir() if p.name.startswith(".init-")]


def test_init_recovery_refuses_mixed_partition_counts(tmp_path: Path) -> None:
    from bytewax.recovery import init_db_dir

    from demandsense.cli import _init_recovery
    from demandsense.errors import DemandsenseError

    a, b = tmp_path / "a", tmp_path / "b"
    for d, n in ((a, 1), (b, 2)):
        d.mkdir()
        init_db_dir(d, n)
    os.replace(b / "part-1.sqlite3", a / "part-1.sqlite3")
    with pytest.raises(DemandsenseError, match="different counts"):
        _init_recovery(a, 0, 1, 1)
