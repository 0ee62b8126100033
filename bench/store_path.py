"""Store path: the CPU cost per input record of demandsense's store path alone, without Kafka or Redis.

What ``demandsense run`` does to the records the Kafka source hands over, and nothing else: the
flow's :class:`flows.demand.Router` splits each batch of ``--batch`` records (the reader's 5,000)
by store, and each store's :class:`flows.demand.SenseLogic`, built as the flow builds it (default
``Policy``, Redis views on at the default pace, no recovery), decodes the Confluent Avro,
validates, deduplicates, runs every detector and the replenishment triggers and builds the views;
at the end of input each store's ``on_eof`` flushes it. No engine, no sinks: the alerts, triggers,
dead letters and views are collected in a list.

Input, built before any timing: ``SimConfig(stores=10, skus=2000, seed=42)`` (bench/throughput.py's
catalogue) for enough days to give ``--events`` records, each encoded as ``demandsense simulate
--format avro`` produces it (key ``store_id:sku``, Confluent-framed Avro by the project's codec,
timestamp = event time) and wrapped as the source's ``RawRecord`` (topics of ``flows.demand.Topics``,
partition = CRC-32 of the key modulo ``--partitions`` as librdkafka's default partitioner, offsets
per partition): item params first, then the sale and inventory partitions merged by timestamp,
each partition in arrival order (what the reader's event-time alignment gives).

Each measurement runs in a child process (``PYTHONHASHSEED=0``) against the build ``pip install``
makes (mypyc, cached under the temp dir by a hash of the sources), or with ``--pure`` the source
tree. The flow's wall clock (views pace, state size gauge, dead-letter log, the future-time check)
is frozen one day after the input's last event, so the outputs do not depend on how fast the run
goes: views go out on a store's first batch and at the end, as in a backfill shorter than a minute.

It prints the CPU µs per record (``time.process_time`` of the driving loop, best of ``--repeats``,
each with fresh state), the outputs' counts and a digest of them (sha256 of the repr of each
output's fields, views sorted by SKU within a batch) that two commits must share if they give
identical outputs. ``--callgrind`` instead runs the child under ``valgrind --tool=callgrind`` with
the loop and without it (the same setup) and prints instructions per record: the difference of
the two totals over the records, which does not depend on the machine's load (two runs of one build
differed by 3 in 10 million) where CPU time moves 10-30%.

    python -m bench.store_path [--events 200000] [--repeats 3] [--pure]
    python -m bench.store_path --callgrind [--events 100000] [--pure]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import heapq
import json
import logging
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import fields
from pathlib import Path
from typing import Any

from bench._util import ROOT, SIM_SKUS, SIM_STORES, compiled_install, say, sim_days

EVENTS, CALLGRIND_EVENTS = 200_000, 100_000
BATCH = 5_000  # records per poll of the Kafka reader (flows.sources._KafkaReader.BATCH_RECORDS)
RawRecord = tuple[str, str, int, int, bytes | None, bytes | None, int]


# -- the parent: input, build, children ---------------------------------------------------------
def build_input(events: int, partitions: int) -> dict[str, Any]:
    """The simulated catalogue as the Kafka source would emit it, and what it is."""
    from demandsense.serde import make_codec
    from demandsense.simulate import SimConfig, generate
    from flows.demand import Topics
    from operators.events import key_on

    cfg = SimConfig(stores=SIM_STORES, skus=SIM_SKUS, days=sim_days(events), seed=42)
    say(f"simulating {cfg.stores} stores x {cfg.skus} SKUs x {cfg.days:g} days ...")
    sim = generate(cfg)
    topics = Topics().inputs()
    parts: dict[tuple[str, int], list[RawRecord]] = {}  # (kind, partition) -> records in produce order
    for kind, recs in (("ItemParams", sim.items), ("Sale", sim.sales), ("InventoryEvent", sim.inventory)):
        codec = make_codec("avro", kind, topic=topics[kind])
        for rec in recs:
            key = key_on(rec["store_id"], rec["sku"]).encode()
            part = parts.setdefault((kind, zlib.crc32(key) % partitions), [])
            part.append((kind, topics[kind], zlib.crc32(key) % partitions, len(part), key, codec.encode(rec),
                         rec.get("event_time", 0)))  # fmt: skip
    items = [r for (kind, _), rs in sorted(parts.items()) if kind == "ItemParams" for r in rs]
    streams = [rs for (kind, _), rs in sorted(parts.items()) if kind != "ItemParams"]
    records = items + list(heapq.merge(*streams, key=lambda r: r[6]))
    counts = {kind: sum(len(rs) for (k, _), rs in parts.items() if k == kind) for kind in topics}
    config = f"SimConfig(stores={cfg.stores}, skus={cfg.skus}, days={cfg.days:g}, seed={cfg.seed})"
    return {"records": records, "counts": counts, "config": config, "now_s": max(r[6] for r in records) / 1000 + 86400}


def source_key() -> str:
    """Hash of what the compiled build is made from."""
    h = hashlib.sha256(sys.version.encode())
    files = [p for d in ("demandsense", "flows", "operators", "state") for p in (ROOT / d).rglob("*.py")]
    files += [*(ROOT / "avro").glob("*.avsc"), ROOT / "setup.py", ROOT / "pyproject.toml"]
    for p in sorted(files):
        h.update(p.relative_to(ROOT).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def compiled_env() -> dict[str, str]:
    """The environment running demandsense as ``pip install`` builds it, built once per state of the sources."""
    key = source_key()
    dest = Path(tempfile.gettempdir()) / f"demandsense-compiled-{key}"
    if (dest / ".built").exists():
        say(f"compiled build: {dest} (cached)")
    else:
        say(f"building demandsense as pip installs it (mypyc) into {dest} ...")
        t0 = time.perf_counter()
        compiled_install(dest)
        if source_key() == key:
            (dest / ".built").touch()
        else:
            say("the sources changed during the build: it is used this once, not cached")
        say(f"built in {time.perf_counter() - t0:.0f} s")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(dest), str(ROOT)])}


def run_child(env: dict[str, str], args: list[str], prefix: list[str] | None = None) -> dict[str, Any]:
    """Run this module as a child with ``args`` (under ``prefix``, e.g. valgrind); its JSON result."""
    cmd = [*(prefix or []), sys.executable, "-P", "-m", "bench.store_path", *args]
    out = subprocess.run(cmd, env={**env, "PYTHONHASHSEED": "0"}, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:8])} ... exited {out.returncode}")
    return json.loads(out.stdout.splitlines()[-1])


def callgrind_total(path: Path) -> int:
    """Instructions (Ir) of a callgrind output file: its ``summary:`` (or ``totals:``) line."""
    for line in path.read_text().splitlines():
        if m := re.match(r"(?:summary|totals):\s+(\d+)", line):
            return int(m.group(1))
    raise ValueError(f"{path}: no summary or totals line")


# -- the child: the measured loop -----------------------------------------------------------------
class FrozenClock:
    """``flows.demand``'s ``time`` module with the wall clock standing still at ``now`` (seconds)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def store_path() -> tuple[Any, Any]:
    """A fresh router and builder of store logic, as ``build_flow`` makes them for ``demandsense run``."""
    from flows import demand
    from operators.policy import Policy

    policy, topics = Policy(), demand.Topics().inputs()
    decoder = demand.Decoder({k: demand.make_codec("avro", k, topic=topics[k]) for k in demand.KINDS}, policy)
    return demand.Router(decoder, policy, []), demand._builder_for(policy, decoder, demand.ViewsPace(), False)


def drive(batches: list[list[RawRecord]], router: Any, build: Any) -> list[Any]:
    """Every batch through the router and each store's logic, then every store's end of input: the outputs."""
    logics: dict[str, Any] = {}
    out: list[Any] = []
    for batch in batches:
        for store, delivery in router(batch):
            logic = logics.get(store)
            if logic is None:
                logic = logics[store] = build(None)
            out += logic.on_item(delivery)[0]
    for logic in logics.values():
        out += logic.on_eof()[0]
    return out


def digest(out: list[Any]) -> tuple[dict[str, int], str]:
    """Counts of alerts, triggers, views and dead letters, and the sha256 (12 hex) of every one's fields in order."""
    h, counts = hashlib.sha256(), {"alerts": 0, "triggers": 0, "views": 0, "dead letters": 0}
    for s in out:
        views = sorted(s.views, key=lambda v: (v.store_id, v.sku))
        for name, recs in (("alerts", s.alerts), ("triggers", s.triggers), ("views", views), ("dead letters", s.dead)):
            counts[name] += len(recs)
            for r in recs:
                h.update(repr(tuple(getattr(r, f.name) for f in fields(r))).encode())
    return counts, h.hexdigest()[:12]


def child(args: argparse.Namespace) -> None:
    from flows import demand
    from operators import store

    with open(args.child, "rb") as f:
        data = pickle.load(f)
    records: list[RawRecord] = data["records"]
    batches = [records[i : i + args.batch] for i in range(0, len(records), args.batch)]
    demand.time = FrozenClock(data["now_s"])  # type: ignore[assignment]
    demand.DEAD_LOG = demand.DeadLetterLog(clock=lambda: 0.0)  # each kind logged once, whatever the speed
    logging.getLogger("demandsense").setLevel(logging.ERROR)
    result: dict[str, Any] = {"module": store.__file__, "records": len(records), "cpu_s": []}
    for _ in range(args.repeats):
        router, build = store_path()
        gc.collect()
        t0 = time.process_time()
        out = [] if args.empty else drive(batches, router, build)
        result["cpu_s"].append(time.process_time() - t0)
        if not args.callgrind:
            result["counts"], result["digest"] = digest(out)
        del out, router, build
    print(json.dumps(result), flush=True)
    if args.callgrind:
        os._exit(0)  # no teardown of the states: the totals differ by the loop alone


# -- main ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.store_path", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, help=f"input records, at least ({EVENTS:,}; {CALLGRIND_EVENTS:,} with "
                   "--callgrind: ~50x slower there); the catalogue is 10 x 2,000, days in quarters")  # fmt: skip
    p.add_argument("--repeats", type=int, default=3, help="timed runs, each with fresh state; the best counts (3)")
    p.add_argument("--batch", type=int, default=BATCH, help=f"records per source batch ({BATCH:,})")
    p.add_argument("--partitions", type=int, default=4, help="partitions of each input topic (4)")
    p.add_argument("--pure", action="store_true", help="run the source tree (pure Python), not the compiled build")
    p.add_argument("--callgrind", action="store_true", help="instructions per record under valgrind's callgrind")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (input pickle, callgrind output files)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--empty", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0
    if args.callgrind and shutil.which("valgrind") is None:
        p.error("--callgrind needs valgrind on the PATH")
    events = args.events or (CALLGRIND_EVENTS if args.callgrind else EVENTS)
    env = {**os.environ, "PYTHONPATH": str(ROOT)} if args.pure else compiled_env()
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-path-"))
    try:
        t0 = time.perf_counter()
        data = build_input(events, args.partitions)
        n = len(data["records"])
        with open(tmp / "input.pickle", "wb") as f:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        say(f"input: {n:,} records in {time.perf_counter() - t0:.1f} s")
        batches = -(-n // args.batch)
        child_args = ["--child", str(tmp / "input.pickle"), "--batch", str(args.batch)]
        print(f"input: {n:,} records ({', '.join(f'{k} {v:,}' for k, v in data['counts'].items())}) from "
              f"{data['config']}, {batches} batches of up to {args.batch:,}")  # fmt: skip
        del data
        if args.callgrind:
            ir = {}
            for name in ("full", "empty"):
                say(f"callgrind, {'with' if name == 'full' else 'without'} the loop ...")
                t0 = time.perf_counter()
                out = tmp / f"callgrind.{name}.out"
                prefix = ["valgrind", "--tool=callgrind", "--quiet", f"--callgrind-out-file={out}"]
                res = run_child(env, [*child_args, "--repeats", "1", "--callgrind", *(["--empty"] * (name == "empty"))],
                                prefix)  # fmt: skip
                ir[name] = callgrind_total(out)
                say(f"  {ir[name]:,} Ir in {time.perf_counter() - t0:.0f} s")
            print(f"build: {res['module']}")
            print(f"callgrind: {ir['full']:,} Ir with the loop, {ir['empty']:,} without (setup): "
                  f"{(ir['full'] - ir['empty']) / n:,.0f} instructions per record")  # fmt: skip
        else:
            say(f"{args.repeats} timed run(s) in a child process ...")
            res = run_child(env, [*child_args, "--repeats", str(args.repeats)])
            cpu = res["cpu_s"]
            print(f"build: {res['module']}")
            print(f"CPU µs/record: {min(cpu) / n * 1e6:.2f} (best of {len(cpu)}: "
                  f"{' / '.join(f'{c / n * 1e6:.2f}' for c in cpu)})")  # fmt: skip
            print(f"outputs: {', '.join(f'{v:,} {k}' for k, v in res['counts'].items())}")
            print(f"digest: {res['digest']}")
    finally:
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
