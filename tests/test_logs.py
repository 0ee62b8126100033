"""Structured logs: one JSON object per line with ``--log-format json``, readable text by default."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from demandsense import logs


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_json_lines_carry_time_level_logger_message_and_extras(restore_logging: None) -> None:
    out = io.StringIO()
    logs.setup("INFO", "json", stream=out)
    log = logging.getLogger("demandsense.test")
    log.info("flow %s", "starting", extra={"process_id": 1, "workers": 2, "path": logs})
    log.debug("not shown")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = map(json.loads, lines)
    assert first["message"] == "flow starting" and first["level"] == "INFO" and first["logger"] == "demandsense.test"
    assert first["process_id"] == 1 and first["workers"] == 2 and "demandsense.logs" in first["path"]
    assert first["time"].endswith("Z") and len(first["time"]) == len("2026-03-02T08:00:56.073Z")
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exception"]


def test_text_is_the_default_with_extras_as_key_value(restore_logging: None) -> None:
    out = io.StringIO()
    logs.setup(stream=out)
    logging.getLogger("demandsense.test").warning("careful", extra={"topic": "t"})
    line = out.getvalue().strip()
    assert " WARNING demandsense.test: careful topic=t" in line
    with pytest.raises(ValueError, match="log format"):
        logs.setup("INFO", "xml")


@pytest.mark.parametrize(
    ("args", "env", "fmt"),
    [
        (["--log-format", "json", "top"], {}, "json"),
        (["top", "--log-format", "json"], {}, "json"),
        (["top"], {"DEMANDSENSE_LOG_FORMAT": "json"}, "json"),
        (["top"], {}, "text"),
    ],
)
def test_log_format_flag_before_or_after_the_command_or_from_env(monkeypatch, args, env, fmt) -> None:
    from demandsense.cli import build_parser

    monkeypatch.delenv("DEMANDSENSE_LOG_FORMAT", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert build_parser().parse_args(args).log_format == fmt


@pytest.mark.integration
def test_run_logs_json_lines(kafka_bootstrap: str, topic_factory) -> None:
    import os

    topics = [t for name in ("sales", "inventory", "alerts", "triggers", "dead-letter") for t in
              (f"--{name}-topic", topic_factory())]  # fmt: skip
    no_items = f"missing-{topic_factory()}"  # never created
    cmd = [sys.executable, "-m", "demandsense.cli", "run", "--log-format", "json", "--bootstrap-servers",
           kafka_bootstrap, "--exit-at-end", "--metrics-port", "0", *topics, "--items-topic", no_items]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEMANDSENSE_")}
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    records = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    assert [r["message"] for r in records][-1] == "flow finished: every input reached its end", run.stderr[-2000:]
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    missing, starting = records[0], records[1]
    assert missing["level"] == "WARNING" and f"{no_items} (ItemParams) does not exist" in missing["message"]
    assert starting["message"] == "flow starting" and starting["workers"] == 1
    assert starting["compiled"] is False  # the development install runs the Python source


def test_bad_log_level_is_one_clear_line() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "demandsense.cli", "--log-level", "LOUD", "top"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr and "LOUD" in run.stderr
