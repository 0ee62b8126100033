"""Scale-out: several processes and several workers give the single worker's outputs.

Input topics have 3 partitions (see ``stream`` in ``test_recovery.py``): stores' events come from
several partitions, keyed state is routed by Bytewax; one worker (of process 0) reads and decodes
every partition (aligned in event time) and the stores are spread over every worker.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from demandsense.embedded import free_port
from tests.integration.test_recovery import (
    Stream,
    assert_covers_reference,
    end_offset,
    finish,
    new_outputs,
    paused_copy,
    read_outputs,
    run_args,
    start,
    wait_for,
)
from tests.integration.test_recovery import stream as stream  # noqa: PLC0414 (the session fixture)

pytestmark = pytest.mark.integration


def _cluster_args(
    stream: Stream, outputs: dict[str, str], tmp_path: Path, n: int, *extra: str, shared: Path | None = None
) -> list[list[str]]:
    """The command lines of an ``n``-process cluster; a recovery directory each, or the ``shared`` one."""
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(n))
    return [
        run_args(
            stream,
            outputs,
            "--process-id",
            str(i),
            "--addresses",
            addresses,
            "--metrics-port",
            "0",
            "--recovery-dir",
            shared or tmp_path / f"recovery-{i}",
            "--snapshot-interval",
            "1",
            *extra,
        )  # fmt: skip
        for i in range(n)
    ]


def _assert_exactly_reference(stream: Stream, outputs: dict[str, str]) -> None:
    got = read_outputs(stream.bootstrap, outputs)
    assert_covers_reference(got, stream.reference)
    assert Counter(got.alerts).most_common(1)[0][1] == 1, "each alert once"
    assert len(got.triggers) == len(set(got.triggers))
    assert sorted(got.dead) == sorted(stream.reference.dead), "each bad record dead-lettered once"


def _run_cluster(cmds: list[list[str]], logs: list[Path]) -> None:
    procs = [start(cmd, log) for cmd, log in zip(cmds, logs, strict=True)]
    for proc, log in zip(procs, logs, strict=True):
        finish(proc, log)


def test_two_processes_give_the_single_worker_outputs(stream: Stream, tmp_path: Path) -> None:
    outputs = new_outputs(stream.bootstrap)
    _run_cluster(
        _cluster_args(stream, outputs, tmp_path, 2, "--exit-at-end"), [tmp_path / "p0.log", tmp_path / "p1.log"]
    )
    _assert_exactly_reference(stream, outputs)


def test_two_processes_hold_their_recovery_share_and_resume(stream: Stream, tmp_path: Path) -> None:
    outputs = new_outputs(stream.bootstrap)
    cmds = _cluster_args(stream, outputs, tmp_path, 2, "--exit-at-end")
    logs = [tmp_path / f"p{i}.log" for i in range(2)]
    _run_cluster(cmds, logs)
    first = read_outputs(stream.bootstrap, outputs)
    assert first.alerts and first.triggers and len(first.alerts) == len(set(first.alerts))
    assert set(first.dead) == set(stream.reference.dead), "every bad record dead-lettered once"
    # each process holds its own share of the recovery partitions (a volume per pod)
    assert [sorted(p.name for p in (tmp_path / f"recovery-{i}").glob("*.sqlite3")) for i in range(2)] == [
        ["part-0.sqlite3"],
        ["part-1.sqlite3"],
    ]
    # the same cluster again: the partitions are found across both processes, it resumes at the end of its
    # input and emits nothing new
    _run_cluster(cmds, logs)
    assert read_outputs(stream.bootstrap, outputs) == first


def test_a_cluster_recovery_resumes_on_one_process(stream: Stream, tmp_path: Path) -> None:
    """Scaled in: one process finds every state of a 2-process run, its outputs' writer included."""
    outputs, shared = new_outputs(stream.bootstrap), tmp_path / "shared"
    cmds = _cluster_args(stream, outputs, tmp_path, 2, "--exit-at-end", shared=shared)
    _run_cluster(cmds, [tmp_path / "p0.log", tmp_path / "p1.log"])
    first = read_outputs(stream.bootstrap, outputs)
    assert first.alerts and first.triggers
    log = tmp_path / "alone.log"
    finish(start(run_args(stream, outputs, "--recovery-dir", shared, "--exit-at-end", "--metrics-port", "0"), log), log)
    assert read_outputs(stream.bootstrap, outputs) == first, "resumed at the end of its input: nothing new"


def test_two_workers_in_one_process_give_the_single_worker_outputs(stream: Stream, tmp_path: Path) -> None:
    outputs, log = new_outputs(stream.bootstrap), tmp_path / "run.log"
    finish(start(run_args(stream, outputs, "--exit-at-end", "--metrics-port", "0", "--workers", "2"), log), log)
    _assert_exactly_reference(stream, outputs)


def test_sigterm_to_any_process_stops_the_cluster_cleanly(stream: Stream, tmp_path: Path) -> None:
    paused = paused_copy(stream)
    s, outputs = paused.stream, new_outputs(stream.bootstrap)
    cmds = _cluster_args(s, outputs, tmp_path, 2)
    logs = [tmp_path / f"p{i}.log" for i in range(2)]
    procs = [start(cmd, log) for cmd, log in zip(cmds, logs, strict=True)]
    wait_for("some alerts", lambda: end_offset(s.bootstrap, outputs["alerts"]) > 0, proc=procs[0], log=logs[0])
    procs[1].send_signal(signal.SIGTERM)  # process 1 reads nothing: its stop must reach process 0's readers
    t0 = time.monotonic()
    for proc, log in zip(procs, logs, strict=True):
        finish(proc, log, timeout=20)
    assert time.monotonic() - t0 < 15
    assert "flow stopped" in logs[0].read_text() and "flow stopped" in logs[1].read_text()
    stopped = read_outputs(s.bootstrap, outputs)
    assert 0 < len(stopped.alerts) < len(s.reference.alerts), "stopped mid-stream"
    # resumed with --exit-at-end from the final snapshot: every output of the whole stream exactly once overall
    paused.rest()
    _run_cluster([[*cmd, "--exit-at-end"] for cmd in cmds], logs)
    _assert_exactly_reference(s, outputs)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_a_process_still_waiting_for_its_peers(stream: Stream, tmp_path: Path, sig) -> None:
    cmd = _cluster_args(stream, new_outputs(stream.bootstrap), tmp_path, 2)[0]  # process 1 never starts
    log = tmp_path / "p0.log"
    proc = start(cmd, log)
    wait_for("the cluster wait", lambda: "once every process of the cluster" in log.read_text(), proc=proc, log=log)
    time.sleep(0.5)  # inside Bytewax, waiting for process 1
    proc.send_signal(sig)
    try:
        code = proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"{sig.name} did not end the waiting process: {log.read_text()[-2000:]}") from None
    assert code == 128 + sig, log.read_text()[-2000:]
    assert f"{sig.name} before the flow started" in log.read_text()
    assert "panicked" not in log.read_text()
