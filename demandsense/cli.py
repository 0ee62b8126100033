"""The ``demandsense`` command line: parses flags and settings, then starts a flow or a tool."""

from __future__ import annotations

import argparse
import fcntl
import gc
import logging
import math
import os
import shutil
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from demandsense import logs
from demandsense.errors import DemandsenseError, ServiceUnavailable
from demandsense.serde import RECORD_TYPES
from demandsense.settings import env, kafka_config_from_env, load_policy
from demandsense.signals import Interrupted, Stopper

log = logging.getLogger("demandsense")

GC_THRESHOLD = (50_000, 20, 10)
"""Python's cycle collector runs after this many net container allocations (Python's default: 700, 10, 10).

A flow makes almost no cyclic garbage (about 900 objects in a 440k-event backfill) but allocates
millions of short-lived events and keeps a growing state, which each full collection walks: at the
default the collector took 2.3 s of a 17 s backfill's CPU, here 0.2 s (10-14% faster, same peak
RSS; bench/README.md, throughput findings)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One clear line and exit 2, never a traceback."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def _whole(low: int, high: int | None = None):
    """A parser of whole numbers from ``low`` (to ``high``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"{low} or more" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


_positive_int = _whole(1)
_seed = _whole(0)
_port = _whole(0, 65535)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0 < value < math.inf:  # nan fails too
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {value}")
    return value


def _at_most(limit: float, what: str):
    """:func:`_positive_float` of at most ``limit`` (``what`` says how much that is)."""

    def parse(text: str) -> float:
        value = _positive_float(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"must be at most {limit:g} ({what}), got {value:g}")
        return value

    return parse


def _format(text: str) -> str:
    """A wire format; a type rather than choices, so that a bad DEMANDSENSE_FORMAT is refused too."""
    if text not in ("avro", "json"):
        raise argparse.ArgumentTypeError(f"must be avro or json, got {text!r}")
    return text


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _existing_file(text: str) -> Path:
    p = Path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory: give a file")
    if not p.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return p


def _env_flag(name: str) -> bool:
    return (env(name) or "").lower() in ("1", "true", "yes")


def _add_kafka(p: argparse.ArgumentParser, *, required: bool) -> None:
    bootstrap = env("BOOTSTRAP_SERVERS")
    p.add_argument(
        "--bootstrap-servers",
        default=bootstrap,
        required=required and bootstrap is None,
        metavar="HOST:PORT",
        help="Kafka brokers (env DEMANDSENSE_BOOTSTRAP_SERVERS)",
    )
    p.add_argument(
        "--format", type=_format, default=env("FORMAT", "avro"), help="avro or json (avro; env DEMANDSENSE_FORMAT)"
    )
    p.add_argument(
        "--schema-registry-url",
        default=env("SCHEMA_REGISTRY_URL"),
        help="Confluent Schema Registry (env DEMANDSENSE_SCHEMA_REGISTRY_URL)",
    )


def _add_topics(p: argparse.ArgumentParser) -> None:
    from flows.demand import Topics

    defaults = Topics()
    for name in ("sales", "inventory", "items", "alerts", "triggers", "dead_letter"):
        flag = f"--{name.replace('_', '-')}-topic"
        p.add_argument(flag, default=env(f"{name.upper()}_TOPIC", getattr(defaults, name)), help="(%(default)s)")


def _redis_url(text: str) -> str:
    """A Redis URL (not echoed in the error: it may hold a password)."""
    if urlsplit(text).scheme not in ("redis", "rediss", "unix"):
        raise argparse.ArgumentTypeError("must start with redis://, rediss:// or unix:// (e.g. redis://host:6379/0)")
    return text


def _add_redis(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--redis-url",
        type=_redis_url,
        default=env("REDIS_URL"),
        help="Redis for live views (env DEMANDSENSE_REDIS_URL)",
    )


def _redis_args(url: str | None) -> dict | None:
    if not url:
        return None
    return {
        "url": url,
        "username": env("REDIS_USERNAME"),
        "password": env("REDIS_PASSWORD"),
        "ssl_ca_certs": env("REDIS_SSL_CA_CERTS"),
    }


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and flags."""
    parser = _Parser(prog="demandsense", description="Streaming demand sensing for retail.")
    parser.add_argument("--log-level", default=env("LOG_LEVEL", "INFO"), help="(INFO; env DEMANDSENSE_LOG_LEVEL)")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=env("LOG_FORMAT", "text"),
        help="text, or one JSON object per line (text; env DEMANDSENSE_LOG_FORMAT)",
    )
    # the log flags work before or after the command (``demandsense run --log-format json``)
    logging_flags = argparse.ArgumentParser(add_help=False)
    logging_flags.add_argument("--log-level", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    logging_flags.add_argument(
        "--log-format", choices=("text", "json"), default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_parser = sub.add_parser
    sub.add_parser = lambda *a, **kw: add_parser(*a, parents=[logging_flags], **kw)  # type: ignore[method-assign]

    demo = sub.add_parser("demo", help="embedded broker, Redis and simulator; prints alerts live")
    demo.add_argument("--duration", type=_positive_float, default=90.0, help="seconds to run (90)")
    demo.add_argument("--stores", type=_positive_int, default=3, help="simulated stores (3)")
    demo.add_argument("--skus", type=_positive_int, default=150, help="simulated SKUs per store (150)")
    demo.add_argument("--days", type=_at_most(3660, "ten years"), default=4.0, help="simulated days to stream (4)")
    demo.add_argument("--seed", type=_seed, default=7, help="simulator seed: the same seed, the same stream (7)")

    run = sub.add_parser(
        "run",
        help="the production job: Kafka in, alerts and triggers out",
        epilog="Every flag's default can also come from DEMANDSENSE_<FLAG> (DEMANDSENSE_SALES_TOPIC, "
        "DEMANDSENSE_EXIT_AT_END=1, ...); Kafka security from DEMANDSENSE_KAFKA_* (README, The command line).",
    )
    _add_kafka(run, required=True)
    _add_topics(run)
    _add_redis(run)
    run.add_argument(
        "--policy", type=_existing_file, default=env("POLICY"), help="policy TOML (env DEMANDSENSE_POLICY)"
    )
    run.add_argument(
        "--recovery-dir",
        type=Path,
        default=env("RECOVERY_DIR"),
        help="Bytewax recovery snapshots; created with this process's share of partitions on first use; "
        "restarting with the same directory resumes from the last snapshot (env DEMANDSENSE_RECOVERY_DIR)",
    )
    run.add_argument(
        "--snapshot-interval",
        type=_at_most(86_400, "a day"),
        default=env("SNAPSHOT_INTERVAL", "30"),  # argparse applies the type to a string default
        help="seconds between snapshots, the Bytewax epoch interval (30; env DEMANDSENSE_SNAPSHOT_INTERVAL)",
    )
    run.add_argument(
        "--metrics-port",
        type=_port,
        default=env("METRICS_PORT", "9100"),
        help="port of /metrics, /healthz and /readyz (9100; 0 disables; env DEMANDSENSE_METRICS_PORT)",
    )
    run.add_argument(
        "--workers", type=_positive_int, default=env("WORKERS", "1"), help="per process (1; env DEMANDSENSE_WORKERS)"
    )
    run.add_argument(
        "--process-id",
        type=int,
        default=env("PROCESS_ID"),
        help="this process's index in --addresses (env DEMANDSENSE_PROCESS_ID)",
    )
    run.add_argument(
        "--addresses",
        default=env("ADDRESSES"),
        help="host:port;host:port of every process of a cluster, in process-id order (env DEMANDSENSE_ADDRESSES)",
    )
    run.add_argument(
        "--group-id", type=_non_empty, default=env("GROUP_ID", "demandsense"), help="Kafka consumer group (demandsense)"
    )
    run.add_argument(
        "--from-beginning",
        action="store_true",
        default=_env_flag("FROM_BEGINNING"),
        help="partitions without a snapshot start at their earliest offset (else at the end)",
    )
    run.add_argument(
        "--exit-at-end",
        action="store_true",
        default=_env_flag("EXIT_AT_END"),
        help="stop once every input partition reached the end offset it had at start",
    )
    run.add_argument(
        "--print-alerts",
        action="store_true",
        default=_env_flag("PRINT_ALERTS"),
        help="also print alerts on stdout (env DEMANDSENSE_PRINT_ALERTS)",
    )

    replay = sub.add_parser("replay", help="the same dataflow over JSONL or Avro container files, in event time")
    replay.add_argument("--sales", type=_existing_file, required=True, help="Sale records: JSONL or Avro container")
    replay.add_argument("--inventory", type=_existing_file, help="InventoryEvent records: JSONL or Avro container")
    replay.add_argument("--items", type=_existing_file, help="ItemParams records: JSONL or Avro container")
    replay.add_argument("--alerts-out", type=Path, required=True, help="JSONL file for the alerts")
    replay.add_argument("--triggers-out", type=Path, help="JSONL file for the replenishment triggers")
    replay.add_argument("--dead-letter-out", type=Path, help="JSONL file for the dead letters")
    replay.add_argument(
        "--policy", type=_existing_file, default=env("POLICY"), help="policy TOML (env DEMANDSENSE_POLICY)"
    )
    _add_redis(replay)

    sim = sub.add_parser("simulate", help="realistic synthetic retail streams with ground-truth labels")
    sim.add_argument("--out", type=Path, help="directory for JSONL files")
    sim.add_argument(
        "--bootstrap-servers",
        default=env("BOOTSTRAP_SERVERS"),
        metavar="HOST:PORT",
        help="produce to Kafka (as well, with --out) (env DEMANDSENSE_BOOTSTRAP_SERVERS)",
    )
    sim.add_argument("--format", choices=("avro", "json"), default="avro", help="Kafka wire format (avro)")
    sim.add_argument("--stores", type=_positive_int, default=5, help="stores (5)")
    sim.add_argument("--skus", type=_positive_int, default=200, help="SKUs per store (200)")
    sim.add_argument("--days", type=_at_most(3660, "ten years"), default=7.0, help="days of event time (7)")
    sim.add_argument("--seed", type=_seed, default=42, help="the same seed gives the same streams (42)")

    tail = sub.add_parser("tail", help="print a topic's records as JSON lines (a plain consumer)")
    tail.add_argument(
        "--bootstrap-servers",
        default=env("BOOTSTRAP_SERVERS"),
        required=env("BOOTSTRAP_SERVERS") is None,
        metavar="HOST:PORT",
        help="Kafka to read from (env DEMANDSENSE_BOOTSTRAP_SERVERS)",
    )
    tail.add_argument("--topic", default="retail.demand-alerts.v1", help="(%(default)s)")
    tail.add_argument("--format", type=_format, default=env("FORMAT", "avro"), help="avro or json (avro)")
    tail.add_argument("--record-type", choices=RECORD_TYPES, help="the topic's record type (guessed from its name)")
    tail.add_argument("-n", "--max", type=_positive_int, help="stop after this many records")
    tail.add_argument("-f", "--follow", action="store_true", help="keep waiting for new records")

    top = sub.add_parser("top", help="top risks from Redis")
    top.add_argument("--store", help="one store's top risks (else every store's)")
    top.add_argument("-n", type=_positive_int, default=20, help="rows, riskiest first, of all stores or --store (20)")
    _add_redis(top)
    show = sub.add_parser("show", help="one item's live view from Redis")
    show.add_argument("store", help="store id, e.g. S001")
    show.add_argument("sku", help="SKU as in the events")
    _add_redis(show)
    view = sub.add_parser("view", help="a live web page of top risks and alerts, read from Redis")
    view.add_argument("--port", type=_port, default=8050, help="HTTP port (8050; 0: any free port)")
    view.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    _add_redis(view)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``demandsense`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        logs.setup(args.log_level, args.log_format)
    except ValueError as exc:
        parser.error(f"--log-level/--log-format: {exc}")
    gc.set_threshold(*GC_THRESHOLD)
    stopper = _stopper(args.command)
    try:
        code = COMMANDS[args.command](args)
        return stopper.exit_code() if stopper is not None and code == 0 else code
    except Interrupted as exc:
        return 128 + exc.signum
    except Exception as exc:
        if isinstance(exc, BrokenPipeError):  # not a cause: redis-py raises its errors while handling an OSError
            # the reader of our output left (`| head`): stop quietly, as a Unix tool killed by SIGPIPE does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 128 + signal.SIGPIPE
        error = user_error(exc)
        if error is None:
            raise
        print(f"demandsense {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _stopper(command: str) -> Stopper | None:
    """For the commands that run a flow, signals stop it cleanly (:mod:`demandsense.signals`); made first, before
    any other thread starts."""
    if command not in ("run", "demo"):
        return None
    from flows.sources import request_stop

    return Stopper(request_stop, unwind_early=command == "demo")  # the demo's services must stop


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions behind it (Bytewax wraps a dataflow's errors)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        yield cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__


def user_error(exc: BaseException) -> str | None:
    """What the user can act on behind ``exc`` or a cause: an error demandsense raised on purpose, or a file or
    directory that could not be used; None for a bug."""
    from bytewax.recovery import InconsistentPartitionsError, MissingPartitionsError, NoPartitionsError

    for cause in _causes(exc):
        if isinstance(cause, DemandsenseError):
            return str(cause)
        if isinstance(cause, MissingPartitionsError | InconsistentPartitionsError | NoPartitionsError):
            return f"--recovery-dir: {cause} (docs/operations.md, Recovery and scaling)"
        if isinstance(cause, OSError) and cause.filename is not None:
            return f"{cause.filename}: {cause.strerror}"
    return None


def _replay(args: argparse.Namespace) -> int:
    from flows.demand import FileIO, FlowSettings, build_flow, check, run_flow

    outs = [p for p in (args.alerts_out, args.triggers_out, args.dead_letter_out) if p is not None]
    inputs = {"--sales": args.sales, "--inventory": args.inventory, "--items": args.items}
    _distinct_files(inputs, {"--alerts-out": args.alerts_out, "--triggers-out": args.triggers_out,
                             "--dead-letter-out": args.dead_letter_out})  # fmt: skip
    if args.redis_url:  # a replay ends: views it could not write would not catch up later
        _redis_client(args)
    io = FileIO(args.sales, args.alerts_out, args.inventory, args.items, args.triggers_out, args.dead_letter_out)
    settings = FlowSettings(io, load_policy(args.policy), _redis_args(args.redis_url))
    check(settings)
    for p in outs:  # emptied only once the inputs and the policy are known good
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    flow = build_flow(settings)
    with _progress(sys.stderr.isatty()):
        run_flow(flow, workers_per_process=1)
    totals = _totals()
    dead, duplicates = totals["dead_letters"], totals["duplicates"]
    written = ((args.alerts_out, "alerts_out", "alert"), (args.triggers_out, "triggers_out", "trigger"),
               (args.dead_letter_out, "dead_letters", "dead letter"))  # fmt: skip
    # counted, not read back: an output may be a pipe or a terminal (--alerts-out /dev/stdout)
    summary = "wrote " + ", ".join(f"{_count(totals[n], what)} to {p}" for p, n, what in written if p is not None)
    if dead and args.dead_letter_out is None:
        were = "was a dead letter" if dead == 1 else "were dead letters"
        summary += f"; {_count(dead, 'record')} {were}, not written (give --dead-letter-out FILE to keep them)"
    if duplicates:
        summary += f"; {_count(duplicates, 'duplicate record')} dropped"
    if dead and dead == totals["events_in"]:
        summary += "; every record was a dead letter: is each file given to the right flag?"
    print(summary, file=sys.stderr)
    return 0


def _count(n: float, noun: str) -> str:
    """``n`` and its noun: "1 alert", "2,024 alerts"."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


@contextmanager
def _progress(enabled: bool) -> Iterator[None]:
    """While the block runs, a self-updating stderr line of the records and outputs so far, once a second."""
    if not enabled:
        yield
        return
    done, t0 = threading.Event(), time.perf_counter()

    def show() -> None:
        while not done.wait(1.0):
            t = _totals()
            rate = t["events_in"] / (time.perf_counter() - t0)
            sys.stderr.write(
                f"\r{t['events_in']:,} records ({rate:,.0f}/s): {t['alerts_out']:,} alerts, "
                f"{t['triggers_out']:,} triggers, {t['dead_letters']:,} dead letters "
            )
            sys.stderr.flush()

    ticker = threading.Thread(target=show, name="progress", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()
        if time.perf_counter() - t0 >= 1.0:
            sys.stderr.write("\n")


def _distinct_files(inputs: dict[str, Path | None], outputs: dict[str, Path | None]) -> None:
    """Refuse an output that is an input or another output: it would be emptied, or mixed, before the replay."""
    seen = {flag: p.resolve() for flag, p in inputs.items() if p is not None}
    for flag, p in outputs.items():
        if p is None:
            continue
        path = p.resolve()
        for other, other_path in seen.items():
            if path == other_path:
                raise DemandsenseError(f"{flag} and {other} are the same file ({path}): give each its own")
        seen[flag] = path


def _cluster(args: argparse.Namespace) -> tuple[int, list[str] | None]:
    """(process id, addresses) from the flags; one process when no addresses are given."""
    pid = args.process_id
    if not args.addresses:
        if pid:
            raise DemandsenseError(f"--process-id {pid} needs --addresses (or DEMANDSENSE_ADDRESSES)")
        return 0, None
    addresses = [a.strip() for a in args.addresses.split(";") if a.strip()]
    for a in addresses:
        host, colon, port = a.rpartition(":")
        if not (colon and host and port.isdigit() and int(port) <= 65535):
            raise DemandsenseError(f"--addresses: {a!r} is not host:port")
    if pid is None:
        raise DemandsenseError("--addresses needs --process-id (or DEMANDSENSE_PROCESS_ID)")
    if not 0 <= pid < len(addresses):
        raise DemandsenseError(f"--process-id {pid} is not an index of the {len(addresses)} --addresses")
    return pid, addresses


def _run(args: argparse.Namespace) -> int:
    from bytewax.recovery import RecoveryConfig

    from demandsense import server
    from demandsense.cluster import await_lower_peers
    from flows import sinks, sources
    from flows.demand import FlowSettings, KafkaIO, Topics, build_flow, check, run_flow

    process_id, addresses = _cluster(args)
    processes = len(addresses) if addresses else 1
    conf = kafka_config_from_env(args.bootstrap_servers, group_id=args.group_id)
    topics = Topics(
        args.sales_topic, args.inventory_topic, args.items_topic, args.alerts_topic, args.triggers_topic,
        args.dead_letter_topic,
    )  # fmt: skip
    io = KafkaIO(
        conf, topics, args.format, args.schema_registry_url, args.from_beginning, args.exit_at_end,
        process_id=process_id, processes=processes, workers=args.workers,
    )  # fmt: skip
    settings = FlowSettings(
        io, load_policy(args.policy), _redis_args(args.redis_url), args.print_alerts,
        recovery=args.recovery_dir is not None,
    )  # fmt: skip
    if args.recovery_dir is not None and args.recovery_dir.exists() and not args.recovery_dir.is_dir():
        raise DemandsenseError(f"--recovery-dir {args.recovery_dir} is a file: give a directory")
    if args.workers > (cpus := _usable_cpus()):
        log.warning("--workers %d is more than the %d CPUs this process may use: workers are threads that poll, "
                    "so the extra ones slow the flow down", args.workers, cpus)  # fmt: skip
    check(settings)
    flow = build_flow(settings)
    recovery = None
    if args.recovery_dir is not None:  # after the checks: the partition count is fixed when they are created
        recovery = RecoveryConfig(str(_init_recovery(args.recovery_dir, process_id, processes, args.workers)))
    if args.metrics_port:
        try:
            server.serve(args.metrics_port)
        except OSError as exc:
            raise DemandsenseError(f"cannot serve metrics on port {args.metrics_port}: {exc}") from exc
    log.info(
        "flow starting",
        extra={
            "process_id": process_id, "processes": processes, "workers": args.workers,
            "recovery_dir": str(args.recovery_dir) if args.recovery_dir else None,
            "snapshot_interval_s": args.snapshot_interval, "compiled": _compiled(),
        },
    )  # fmt: skip
    if addresses:
        log.info("the flow starts once every process of the cluster has connected: %s", ";".join(addresses))
    if addresses and process_id > 0:
        await_lower_peers(addresses, process_id)
    run_flow(
        flow,
        workers_per_process=args.workers,
        process_id=process_id if addresses else None,
        addresses=addresses,
        epoch_interval=timedelta(seconds=args.snapshot_interval),
        recovery_config=recovery,
    )
    if sinks.UNDELIVERED[0]:
        raise DemandsenseError(f"{sinks.UNDELIVERED[0]} records could not be delivered to Kafka (see the log)")
    why = "flow stopped" if sources.STOP.is_set() else "flow finished: every input reached its end"
    log.info(why, extra=_totals())
    return 0


def _totals() -> dict[str, int | float]:
    """What this process counted (its share in a cluster): for the last log line.

    Once the input ended, each process adds ``input_ended_at`` (epoch seconds, when its stores reached
    the end), and the one that reads the input ``records_read`` and ``read_s``, the seconds from its
    first batch to that end: a backfill's rate without start-up and shutdown.
    """
    from demandsense import metrics
    from flows.sources import SPAN

    def total(counter, **labels: str) -> int:
        samples = (s for m in counter.collect() for s in m.samples if s.name.endswith("_total"))
        return int(sum(s.value for s in samples if labels.items() <= s.labels.items()))

    totals: dict[str, int | float] = {
        "events_in": total(metrics.EVENTS_IN),
        "duplicates": total(metrics.EVENTS_IN, outcome="duplicate"),
        "alerts_out": total(metrics.ALERTS_OUT),
        "triggers_out": total(metrics.TRIGGERS_OUT),
        "dead_letters": total(metrics.DEAD_LETTERS),
        "delivery_errors": total(metrics.DELIVERY_ERRORS),
        "delivery_retries": total(metrics.DELIVERY_RETRIES),
        "delivery_lost": total(metrics.DELIVERY_LOST),
        "producer_queue_full": total(metrics.PRODUCER_QUEUE_FULL),
    }
    if SPAN.ended:
        totals["input_ended_at"] = round(SPAN.ended, 3)
        if SPAN.records:
            totals.update(records_read=SPAN.records, read_s=round(SPAN.ended - SPAN.first, 3))
    return totals


def _usable_cpus() -> int:
    """The CPUs this process may run on (its affinity on Linux: a container's cpuset, taskset)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _recovery_partitions(path: Path) -> dict[int, int]:
    """Partition index -> partition count of every Bytewax recovery partition file in ``path``."""
    found = {}
    for f in sorted(path.glob("*.sqlite3")):
        con = sqlite3.connect(f"{f.resolve().as_uri()}?mode=ro", uri=True)
        try:
            for index, count in con.execute("SELECT part_index, part_count FROM parts"):
                found[int(index)] = int(count)
        except sqlite3.DatabaseError as exc:
            raise DemandsenseError(f"{f} is not a Bytewax recovery partition: {exc}") from exc
        finally:
            con.close()
    return found


def _compiled() -> bool:
    """Whether the decision layer runs as mypyc-compiled C (``pip install``, the image) or as Python source."""
    import operators.store

    return not operators.store.__file__.endswith(".py")


def _init_recovery(path: Path, process_id: int = 0, processes: int = 1, workers: int = 1) -> Path:
    """Create this process's share of the recovery partitions on first use; reuse them afterwards.

    Bytewax reads every ``*.sqlite3`` partition in each process's directory; the cluster as a
    whole must hold all partitions (each in one place is enough) and their count is fixed when
    they are created. A new cluster gets ``processes x workers`` partitions; process ``p`` holds
    those with ``index % processes == p``, so a pod with its own volume has just its share, and a
    directory shared by all processes ends up with all of them. A process that already holds some
    of its share creates nothing: a partition missing after a change of the process count is
    reported by Bytewax (``Missing recovery partitions``), never silently re-created empty.
    """
    from bytewax.recovery import init_db_dir

    path.mkdir(parents=True, exist_ok=True)
    with (path / ".init.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # processes sharing one directory start at once
        held = _recovery_partitions(path)
        counts = set(held.values())
        if len(counts) > 1:
            raise DemandsenseError(f"{path} holds recovery partitions of different counts {sorted(counts)}")
        count = counts.pop() if counts else processes * workers
        mine = [i for i in range(count) if i % processes == process_id]
        if not mine or any(i in held for i in mine):
            return path
        tmp = path / f".init-{process_id}-{os.getpid()}"
        tmp.mkdir()
        try:
            init_db_dir(tmp, count)
            for i in mine:
                os.replace(tmp / f"part-{i}.sqlite3", path / f"part-{i}.sqlite3")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("created recovery partitions %s of %d in %s", mine, count, path)
    return path


def _simulate(args: argparse.Namespace) -> int:
    from demandsense import simulate

    if args.out is None and args.bootstrap_servers is None:
        raise DemandsenseError("give --out DIR, --bootstrap-servers HOST:PORT, or both")
    cfg = simulate.SimConfig(stores=args.stores, skus=args.skus, days=args.days, seed=args.seed)
    sim = simulate.generate(cfg)
    if args.out is not None:
        paths = simulate.write_files(sim, args.out)
        print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    if args.bootstrap_servers is not None:
        counts = simulate.produce(sim, args.bootstrap_servers, fmt=args.format, progress=sys.stderr.isatty())
        print(f"produced {counts} to {args.bootstrap_servers}", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from demandsense.demo import run_demo

    return run_demo(duration_s=args.duration, stores=args.stores, skus=args.skus, days=args.days, seed=args.seed)


def _tail(args: argparse.Namespace) -> int:
    from demandsense.tail import tail

    tail(
        args.bootstrap_servers,
        args.topic,
        fmt=args.format,
        record_type=args.record_type,
        follow=args.follow,
        max_messages=args.max,
    )
    return 0


def _redis_client(args: argparse.Namespace):
    """A client of the analysts' Redis that has answered a PING."""
    import redis

    from state.views import connect

    if not args.redis_url:
        raise DemandsenseError("give --redis-url or set DEMANDSENSE_REDIS_URL")
    client = connect(**_redis_args(args.redis_url))
    try:
        client.ping()
    except redis.RedisError as exc:
        at = client.connection_pool.connection_kwargs
        where = at.get("path") or f"{at.get('host')}:{at.get('port')}"  # never the URL: it may hold a password
        raise ServiceUnavailable(f"Redis at {where} did not answer: {exc}") from exc
    return client


def _top(args: argparse.Namespace) -> int:
    from state.report import format_top
    from state.views import known_stores, top

    client = _redis_client(args)
    rows = top(client, store=args.store, n=args.n)
    stores = [] if rows else known_stores(client)
    if not rows and not stores:
        print("No live views in Redis yet: `demandsense run --redis-url URL` writes them.")
    elif not rows and args.store not in (None, *stores):
        print(f"No store {args.store} in the live views; stores: {', '.join(stores[:20])}{' ...' * (len(stores) > 20)}")
    else:
        print(format_top(rows))
    return 0


def _show(args: argparse.Namespace) -> int:
    from state.report import format_item
    from state.views import recent_alerts, show

    client = _redis_client(args)
    item = show(client, args.store, args.sku)
    if item is None:
        raise DemandsenseError(f"no live view of {args.store}:{args.sku} in Redis")
    alerts = [a for a in recent_alerts(client, n=500) if a.get("store_id") == args.store and a.get("sku") == args.sku]
    print(format_item(item, alerts))
    return 0


def _view(args: argparse.Namespace) -> int:
    from state.web import serve

    client = _redis_client(args)
    try:
        server = serve(client, host=args.host, port=args.port)
    except OSError as exc:
        raise DemandsenseError(f"cannot serve the live view on {args.host}:{args.port}: {exc.strerror}") from exc
    host, port = server.server_address[:2]
    print(f"live view on http://{host}:{port}/ (Ctrl-C to stop)", file=sys.stderr)
    while True:
        time.sleep(3600)


COMMANDS = {
    "demo": _demo,
    "run": _run,
    "replay": _replay,
    "simulate": _simulate,
    "tail": _tail,
    "top": _top,
    "show": _show,
    "view": _view,
}


if __name__ == "__main__":
    sys.exit(main())
