"""`/metrics` of a live `demandsense run`: the counts add up against what was produced and written."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path
from urllib.request import urlopen

import pytest

from demandsense.embedded import free_port
from tests.integration.test_recovery import (
    Stream,
    finish,
    new_outputs,
    read_outputs,
    run_args,
    scrape,
    start,
    total,
    wait_for,
)
from tests.integration.test_recovery import stream as stream  # noqa: PLC0414 (the session fixture)

pytestmark = pytest.mark.integration


def rtts(m: dict[tuple[str, frozenset], float]) -> dict[str, float]:
    """``demandsense_broker_rtt_seconds`` by client (one broker here), once both clients have one."""
    got = {dict(lab)["client"]: v for (n, lab), v in m.items() if n == "demandsense_broker_rtt_seconds"}
    return got if len(got) == 2 else {}


def test_metrics_add_up_and_pass_promtool(stream: Stream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for client in ("CONSUMER", "PRODUCER"):  # broker round trips every 0.2 s instead of 5 s
        monkeypatch.setenv(f"DEMANDSENSE_{client}_STATISTICS_INTERVAL_MS", "200")
    outputs, port, log = new_outputs(stream.bootstrap), free_port(), tmp_path / "run.log"
    proc = start(run_args(stream, outputs, "--metrics-port", port), log)
    produced = sum(stream.produced.values())
    try:
        m = wait_for(
            "every input record counted, both clients' broker round trips",
            lambda: (s := scrape(port)) and total(s, "demandsense_events_in_total") >= produced and rtts(s) and s,
            proc=proc,
            log=log,
        )
        text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        written = read_outputs(stream.bootstrap, outputs)
        m = scrape(port)  # after the outputs were read: nothing moved meanwhile
    finally:
        proc.send_signal(signal.SIGTERM)
        finish(proc, log, timeout=15)

    # in = ok + dead_letter + duplicate + late, per topic, against what was produced
    for topic, n in stream.produced.items():
        outcomes = {o: total(m, "demandsense_events_in_total", topic=topic, outcome=o) for o in
                    ("ok", "dead_letter", "duplicate", "late")}  # fmt: skip
        assert sum(outcomes.values()) == n, (topic, outcomes, n)
        assert total(m, "demandsense_events_in_total", topic=topic) == n
    sales = stream.inputs["sales"]
    assert total(m, "demandsense_events_in_total", topic=sales, outcome="duplicate") > 0  # the simulator repeats ids
    assert total(m, "demandsense_events_in_total", topic=sales, outcome="dead_letter") >= 1  # the poison record

    # dead letters: by stage, the same records as the outcomes and as the topic
    dead_outcomes = total(m, "demandsense_events_in_total", outcome="dead_letter")
    late_outcomes = total(m, "demandsense_events_in_total", outcome="late")
    assert total(m, "demandsense_dead_letters_total", stage="late") == late_outcomes
    assert total(m, "demandsense_dead_letters_total") == dead_outcomes + late_outcomes == len(written.dead)
    assert total(m, "demandsense_dead_letters_total", stage="decode", reason="malformed") >= 1

    # outputs: counted once each, as written
    assert total(m, "demandsense_alerts_out_total") == len(written.alerts) > 0
    assert total(m, "demandsense_triggers_out_total") == len(written.triggers) > 0
    assert total(m, "demandsense_event_to_alert_seconds_count") == len(written.alerts)
    assert total(m, "demandsense_event_to_alert_seconds_sum") > 0
    assert total(m, "demandsense_delivery_errors_total") == 0

    # gauges from the store states and the consumers
    assert 0 < total(m, "demandsense_active_keys") <= 4 * 200
    assert total(m, "demandsense_state_bytes") > 1000
    assert total(m, "demandsense_last_event_timestamp_seconds") > 0
    assert ("demandsense_event_time_lag_seconds", frozenset()) in m
    lags = {lab: v for (n, lab), v in m.items() if n == "demandsense_consumer_lag"}
    assert len(lags) == 2 * 3 + 1 and set(lags.values()) == {0}, lags  # every input partition, caught up
    assert ("demandsense_model_resets_total", frozenset()) in m
    rtt = rtts(m)  # the input consumer's and the sink's, from librdkafka's statistics
    assert set(rtt) == {"consumer", "producer"} and all(0 < v < 5 for v in rtt.values()), rtt
    assert ("demandsense_redis_write_failures_total", frozenset()) in m

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; .ci/run installs it): exposition not linted")
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=30, check=False)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
