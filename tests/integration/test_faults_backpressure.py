"""A slow downstream: `demandsense run` with a producer queue of 5 records against a normal run.

The producer's local queue is the only buffer between the flow and Kafka. When it is full the
sink waits (back-pressure: ``demandsense_producer_queue_full_total``) instead of growing, so a
downstream that accepts records slowly slows the flow down and costs no memory. Both runs read
the session stream of ``test_recovery.py``; their outputs must equal the reference run's, and the
slow run's peak RSS must not exceed the normal run's.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

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

pytestmark = pytest.mark.integration


def peak_rss_mb(proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> float:
    """Follow a run until it exits (0, within ``timeout``); its peak resident set (VmHWM) in MB."""
    peak_kb, deadline = 0, time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:  # exited between the poll and the read
            break
        for line in status.splitlines():  # a zombie has no VmHWM line
            if line.startswith("VmHWM:"):
                peak_kb = max(peak_kb, int(line.split()[1]))
        time.sleep(0.05)
    finish(proc, log, timeout=max(1.0, deadline - time.monotonic()))
    return peak_kb / 1024


def _last_line(log: Path) -> dict:
    last = json.loads(log.read_text().strip().splitlines()[-1])
    assert last["message"].startswith("flow finished"), last
    return last


def test_slow_downstream_backpressure_delivers_everything_in_bounded_memory(
    stream: Stream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = {}
    for name, env in (("normal", {}), ("slow", {"QUEUE_BUFFERING_MAX_MESSAGES": "5", "LINGER_MS": "10"})):
        for k, v in env.items():
            monkeypatch.setenv(f"DEMANDSENSE_PRODUCER_{k}", v)
        outputs, log = new_outputs(stream.bootstrap), tmp_path / f"{name}.log"
        t0 = time.monotonic()
        proc = start(run_args(stream, outputs, "--exit-at-end", "--metrics-port", "0", "--log-format", "json"), log)
        rss = peak_rss_mb(proc, log)
        results[name] = (rss, time.monotonic() - t0, _last_line(log))
        assert_covers_reference(read_outputs(stream.bootstrap, outputs), stream.reference)
    (normal_rss, normal_s, normal), (slow_rss, slow_s, slow) = results["normal"], results["slow"]
    out = len(stream.reference.alerts) + len(stream.reference.triggers) + len(stream.reference.dead)
    print(
        f"\nslow downstream: {out} outputs; normal run {normal_s:.1f} s, peak RSS {normal_rss:.0f} MB; queue of 5: "
        f"{slow_s:.1f} s, peak RSS {slow_rss:.0f} MB, {slow['producer_queue_full']} waits for room"
    )
    assert normal["producer_queue_full"] == 0
    assert normal["records_read"] == sum(stream.produced.values()), "the final line reports what the reader read"
    assert 0 < normal["read_s"] < normal_s
    assert slow["producer_queue_full"] > 0, "the queue bound was reached: back-pressure engaged"
    assert slow["delivery_lost"] == 0
    assert slow_rss <= normal_rss * 1.1 + 10, (slow_rss, normal_rss)
