"""The command line: clear one-line errors, never a traceback; `simulate` writes its files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fastavro
import pytest

from demandsense.embedded import free_port
from demandsense.serde import schema_json


def _cli(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "demandsense.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _one_clear_line(run: subprocess.CompletedProcess[str], *words: str) -> None:
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert "Traceback" not in run.stderr
    assert any(all(w in line for w in words) for line in lines), run.stderr
    assert lines[-1].startswith("demandsense"), run.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("simulate", "--out", "x", "--stores", "0"), ("--stores", "must be 1 or more")),
        (("simulate", "--days", "soon"), ("--days", "must be a number", "soon")),
        (("simulate",), ("--out", "--bootstrap-servers")),
        (("replay", "--sales", "no-such.jsonl", "--alerts-out", "a.jsonl"), ("no such file", "no-such.jsonl")),
        (("replay", "--alerts-out", "a.jsonl"), ("--sales",)),
        (("replay", "--sales", ".", "--alerts-out", "a.jsonl"), ("--sales", "is a directory")),
        (("run",), ("--bootstrap-servers",)),
        (("run", "--bootstrap-servers", "h:1", "--format", "xml"), ("--format", "xml")),
        (("frobnicate",), ("invalid choice", "frobnicate")),
        (("top",), ("--redis-url",)),
        (("top", "--redis-url", "localhost:6379"), ("--redis-url", "must start with redis://")),
        (("tail", "--bootstrap-servers", "h:1", "--topic", "t", "--record-type", "Nope"), ("--record-type", "Nope")),
    ],
)
def test_bad_arguments_give_one_clear_line(args: tuple[str, ...], words: tuple[str, ...], tmp_path: Path) -> None:
    _one_clear_line(_cli(*args), *words)


def test_a_bad_policy_file_is_named_with_the_offending_key(tmp_path: Path) -> None:
    (tmp_path / "s.jsonl").write_text("")
    policy = tmp_path / "policy.toml"
    policy.write_text("[items]\nservice_level = 1.5\n")
    (tmp_path / "a.jsonl").write_text('{"alert_id": "from the last replay"}\n')
    run = _cli("replay", "--sales", tmp_path / "s.jsonl", "--alerts-out", tmp_path / "a.jsonl", "--policy", policy)
    _one_clear_line(run, "policy.toml", "service_level")
    assert "from the last replay" in (tmp_path / "a.jsonl").read_text(), "outputs are kept when the replay cannot start"


@pytest.mark.parametrize("command", [("simulate", "--stores", "1", "--skus", "5", "--days", "1"), ("run",), ("tail",)])
def test_an_unreachable_broker_is_one_line_naming_it(command: tuple[str, ...]) -> None:
    address = f"127.0.0.1:{free_port()}"
    run = _cli(*command, "--bootstrap-servers", address)
    _one_clear_line(run, address, "did not answer")
    assert "panicked" not in run.stderr  # checked before the dataflow starts
    if command in {("run",), ("tail",)}:  # librdkafka's own log lines say why, in the error line, not before it
        assert "Connection refused" in run.stderr.splitlines()[-1] and "%3|" not in run.stderr


def test_an_error_behind_bytewax_or_a_file_that_cannot_be_used_is_one_line() -> None:
    from bytewax.errors import BytewaxRuntimeError

    from demandsense.cli import user_error
    from demandsense.errors import ServiceUnavailable

    cause = ServiceUnavailable("Kafka at h:1 did not answer")
    wrapped = BytewaxRuntimeError("error calling `FixedPartitionSource.build_part`")
    wrapped.__cause__ = cause
    assert user_error(wrapped) == str(cause)
    with pytest.raises(OSError) as missing:
        open("/no/such/dir/alerts.jsonl", "w")
    assert user_error(missing.value) == "/no/such/dir/alerts.jsonl: No such file or directory"
    assert user_error(RuntimeError("a bug")) is None


def test_help_lists_every_command() -> None:
    run = _cli("--help")
    assert run.returncode == 0
    for command in ("demo", "run", "replay", "simulate", "tail", "top", "show", "view"):
        assert command in run.stdout


def test_every_option_of_every_command_says_what_it_is_for() -> None:
    import argparse

    from demandsense.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    bare = [
        f"{name} {action.dest}"
        for name, command in commands.items()
        for action in command._actions
        if not action.help and action.dest != "help"
    ]
    assert not bare, f"arguments without a help line: {bare}"


def test_simulate_writes_a_week_of_five_stores(tmp_path: Path) -> None:
    run = _cli("simulate", "--out", tmp_path, "--stores", "5", "--skus", "200", "--days", "7")
    assert run.returncode == 0, run.stderr
    for name in ("sales", "inventory", "items", "labels"):
        assert (tmp_path / f"{name}.jsonl").stat().st_size > 0
    labels = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert {lab["scenario"] for lab in labels} >= {"DEMAND_SPIKE", "DEMAND_DROP", "STOCKOUT", "PHANTOM_INVENTORY"}


def test_commands_collect_cycles_at_the_flow_threshold(tmp_path: Path) -> None:
    import gc

    from demandsense import cli

    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # Python's default (another test may have run a command in this process)
    try:
        assert cli.main(["simulate", "--out", str(tmp_path), "--stores", "1", "--skus", "5", "--days", "1"]) == 0
        assert gc.get_threshold() == cli.GC_THRESHOLD
    finally:
        gc.set_threshold(*before)


def test_an_output_path_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    simulate = _cli("simulate", "--out", blocker / "sim", "--stores", "1", "--skus", "3", "--days", "1")
    _one_clear_line(simulate, str(blocker / "sim"), "Not a directory")
    (tmp_path / "s.jsonl").write_text("")
    replay = _cli("replay", "--sales", tmp_path / "s.jsonl", "--alerts-out", blocker / "out" / "alerts.jsonl")
    _one_clear_line(replay, str(blocker / "out"), "Not a directory")


def test_replay_says_how_many_dead_letters_it_did_not_write(tmp_path: Path) -> None:
    sale = ('{"event_id": "s1", "event_time": "2026-03-02T09:00:00Z", "store_id": "S1", "sku": "A", '
            '"channel": "STORE", "quantity": 1, "unit_price": 2.0}\n')  # fmt: skip
    (tmp_path / "s.jsonl").write_text('not json\n{"also": "not a sale"}\n' + sale + sale)
    replay = _cli("replay", "--sales", tmp_path / "s.jsonl", "--alerts-out", tmp_path / "a.jsonl")
    assert replay.returncode == 0, replay.stderr
    assert "2 records were dead letters, not written (give --dead-letter-out FILE" in replay.stderr
    assert "; 1 duplicate record dropped" in replay.stderr
    # each bad record's reason is logged (the first of each reason at once, then at most one line per 10 s)
    assert "dead letter (decode, malformed): Sale " in replay.stderr and "s.jsonl:1: not JSON" in replay.stderr
    assert "dead letter (validate, missing_field): Sale " in replay.stderr
    kept = _cli("replay", "--sales", tmp_path / "s.jsonl", "--alerts-out", tmp_path / "a.jsonl",
                "--dead-letter-out", tmp_path / "d.jsonl")  # fmt: skip
    assert kept.returncode == 0 and "dead letters, not written" not in kept.stderr
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 2


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Replay arguments of a simulated week of one store that raises alerts."""
    out = tmp_path_factory.mktemp("sim")
    run = _cli("simulate", "--out", out, "--stores", "1", "--skus", "100", "--days", "5")
    assert run.returncode == 0, run.stderr
    return ["--sales", str(out / "sales.jsonl"), "--inventory", str(out / "inventory.jsonl"),
            "--items", str(out / "items.jsonl")]  # fmt: skip


def test_replay_to_standard_output_counts_what_it_wrote(simulated: list[str], tmp_path: Path) -> None:
    replay = _cli("replay", *simulated, "--alerts-out", "/dev/stdout", "--triggers-out", tmp_path / "t.jsonl")
    assert replay.returncode == 0, replay.stderr
    alerts = [json.loads(line) for line in replay.stdout.splitlines()]
    triggers = (tmp_path / "t.jsonl").read_text().splitlines()
    assert alerts and triggers
    assert f"wrote {len(alerts)} alerts to /dev/stdout, {len(triggers)} triggers to {tmp_path / 't.jsonl'}" in (
        replay.stderr
    )


def test_replay_stops_quietly_when_the_reader_of_its_output_leaves(simulated: list[str]) -> None:
    cmd = [sys.executable, "-m", "demandsense.cli", "replay", *simulated, "--alerts-out", "/dev/stdout"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # gone before the first alert, as `| head -0` (later, the pipe's buffer may hold them all)
    err = proc.stderr.read()
    assert proc.wait(60) == 0, err
    assert "Traceback" not in err and "Error" not in err, err
    assert "/dev/stdout: the reader closed the pipe: stopping" in err


def _sales_container(path: Path, n: int) -> None:
    sales = [{"event_id": f"s{i}", "event_time": 1_772_438_400_000 + i * 60_000, "store_id": "S1", "sku": "A",
              "channel": "STORE", "quantity": 1, "unit_price": 2.0} for i in range(n)]  # fmt: skip
    with path.open("wb") as f:
        fastavro.writer(f, fastavro.parse_schema(schema_json("Sale")), sales, sync_interval=1000)


def test_replay_of_an_avro_container_of_another_record_type_is_one_line(tmp_path: Path) -> None:
    _sales_container(tmp_path / "sales.avro", 3)
    replay = _cli("replay", "--sales", tmp_path / "sales.avro", "--inventory", tmp_path / "sales.avro",
                  "--alerts-out", tmp_path / "a.jsonl")  # fmt: skip
    _one_clear_line(replay, "sales.avro", "after record 0", "do not read as InventoryEvent")


@pytest.mark.parametrize("damage", ["overwritten", "truncated", "flipped"])
def test_replay_of_a_corrupt_avro_container_names_the_file_and_the_record(damage: str, tmp_path: Path) -> None:
    """A broken sync marker or a short file is found before the flow starts, a bad byte inside a block as it reads."""
    _sales_container(tmp_path / "sales.avro", 500)  # several blocks of ~1000 bytes
    data = bytearray((tmp_path / "sales.avro").read_bytes())
    half = len(data) // 2
    if damage == "overwritten":
        data[half:] = b"\xff" * (len(data) - half)
    elif damage == "truncated":
        del data[half:]
    else:
        data[half] ^= 0xFF
    (tmp_path / "sales.avro").write_bytes(bytes(data))
    replay = _cli("replay", "--sales", tmp_path / "sales.avro", "--alerts-out", tmp_path / "a.jsonl")
    _one_clear_line(replay, "sales.avro", "Avro container unreadable after record")
    read = int(replay.stderr.split("after record ")[1].split(":")[0])
    assert 0 < read < 500


@pytest.mark.parametrize(
    ("name", "value", "flag"),
    [
        ("WORKERS", "abc", "--workers"),
        ("METRICS_PORT", "x", "--metrics-port"),
        ("METRICS_PORT", "70000", "--metrics-port"),
        ("SNAPSHOT_INTERVAL", "soon", "--snapshot-interval"),
        ("SNAPSHOT_INTERVAL", "inf", "--snapshot-interval"),
        ("FORMAT", "xml", "--format"),
        ("GROUP_ID", " ", "--group-id"),
    ],
)
def test_a_bad_environment_default_is_one_line(
    name: str, value: str, flag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"DEMANDSENSE_{name}", value)
    _one_clear_line(_cli("run", "--bootstrap-servers", "h:1"), flag, value.strip() or "empty")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("simulate", "--out", "x", "--days", "nan"), ("--days", "finite")),
        (("simulate", "--out", "x", "--days", "1e12"), ("--days", "ten years")),
        (("demo", "--duration", "nan"), ("--duration", "finite")),
        (("demo", "--seed", "-1"), ("--seed", "0 or more")),
        (("view", "--port", "99999"), ("--port", "65535")),
        (("run", "--bootstrap-servers", "h:1", "--process-id", "3"), ("--process-id 3 needs --addresses",)),
        (("run", "--bootstrap-servers", "h:1", "--process-id", "0", "--addresses", "a:1;garbage"), ("'garbage'",)),
    ],
)
def test_values_the_job_cannot_use_are_refused_at_once(args: tuple[str, ...], words: tuple[str, ...]) -> None:
    _one_clear_line(_cli(*args, timeout=20), *words)


def test_a_policy_section_that_is_not_a_table_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "s.jsonl").write_text("")
    (tmp_path / "policy.toml").write_text("detection = 5\n")
    run = _cli("replay", "--sales", tmp_path / "s.jsonl", "--alerts-out", tmp_path / "a.jsonl",
               "--policy", tmp_path / "policy.toml")  # fmt: skip
    _one_clear_line(run, "policy section [detection] must be a table")


def test_replay_refuses_an_output_that_is_an_input_or_another_output(tmp_path: Path) -> None:
    sales = tmp_path / "sales.jsonl"
    sales.write_text('{"not": "read"}\n')
    _one_clear_line(_cli("replay", "--sales", sales, "--alerts-out", sales), "--alerts-out and --sales are the same")
    assert sales.read_text() == '{"not": "read"}\n'  # untouched
    out = tmp_path / "out.jsonl"
    run = _cli("replay", "--sales", sales, "--alerts-out", out, "--dead-letter-out", tmp_path / "." / "out.jsonl")
    _one_clear_line(run, "--dead-letter-out and --alerts-out are the same file")


def test_replay_with_views_needs_redis_to_answer(tmp_path: Path) -> None:
    (tmp_path / "s.jsonl").write_text("")
    run = _cli("replay", "--sales", tmp_path / "s.jsonl", "--alerts-out", tmp_path / "a.jsonl",
               "--redis-url", f"redis://127.0.0.1:{free_port()}/0")  # fmt: skip
    _one_clear_line(run, "Redis at 127.0.0.1:", "did not answer")


def test_replay_progress_updates_one_line_while_it_runs(capsys: pytest.CaptureFixture[str]) -> None:
    import time

    from demandsense.cli import _progress

    with _progress(False):
        time.sleep(1.2)
    assert capsys.readouterr().err == ""
    with _progress(True):
        time.sleep(1.5)
    err = capsys.readouterr().err
    lines = err.split("\r")[1:]
    assert lines and all(" records (" in line and " dead letters " in line for line in lines), err
    assert err.endswith("\n")


def test_top_says_when_redis_holds_no_views_or_not_that_store(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from urllib.parse import urlsplit

    from demandsense.cli import main
    from state.views import RedisViews, connect
    from tests.state.test_views import FakeClock, make_view

    # a database of its own: other tests write views under the same prefix
    url = urlsplit(redis_url)._replace(path="/13").geturl()
    client = connect(url)
    client.flushdb()
    assert main(["top", "--redis-url", url]) == 0
    assert "No live views in Redis yet" in capsys.readouterr().out
    assert RedisViews(client=client, clock=FakeClock()).write([make_view("S001", "C03-000123", risk=87.0)], [])
    assert main(["top", "--redis-url", url, "--store", "S404"]) == 0
    assert "No store S404 in the live views; stores: S001" in capsys.readouterr().out
    assert main(["top", "--redis-url", url]) == 0
    assert "C03-000123" in capsys.readouterr().out
    client.flushdb()


def test_a_recovery_dir_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    run = _cli("run", "--bootstrap-servers", f"127.0.0.1:{free_port()}", "--recovery-dir", tmp_path / "state")
    _one_clear_line(run, "--recovery-dir", "is a file")


def test_a_replay_where_every_record_is_a_dead_letter_asks_about_the_files(tmp_path: Path) -> None:
    inventory = {"event_id": "i1", "event_time": "2026-03-02T08:00:00Z", "store_id": "S1", "sku": "A",
                 "event_type": "COUNT", "on_hand": 5}  # fmt: skip
    (tmp_path / "inventory.jsonl").write_text(json.dumps(inventory) + "\n")
    run = _cli("replay", "--sales", tmp_path / "inventory.jsonl", "--alerts-out", tmp_path / "a.jsonl")
    assert run.returncode == 0, run.stderr
    assert "every record was a dead letter: is each file given to the right flag?" in run.stderr.splitlines()[-1]
