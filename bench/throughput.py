"""Throughput: demandsense end to end against the baselines, on the same topics, in the same run.

Starts an embedded Tansu broker and Redis, produces a simulated catalogue (10 stores x 2,000 SKUs,
enough days for ``--events``) as Confluent Avro with event-time timestamps into input topics of
``--partitions`` partitions, then times, each as a subprocess from start to exit, repeated and
interleaved so that load from other jobs on the machine spreads over all of them:

- ``demandsense``: ``demandsense run --from-beginning --exit-at-end`` with Redis views and metrics
  on (decode, validation, dedup, every detector, triggers, alerts and dead letters to Kafka), as
  ``pip install`` builds it (``operators/`` compiled by mypyc, see setup.py), and as pure Python
  (the editable development install);
- ``demandsense x2``: the compiled build as two processes (``--process-id``/``--addresses``);
- ``2 jobs at once``: two independent single-process demandsense jobs, each reading all the input
  (their own consumer group, output topics and Redis database): the work two processes of this job
  get from this machine with no coordination at all, the ceiling for ``demandsense x2``;
- ``raw consumer``: confluent-kafka + fastavro decode, no engine (``bench/passthrough.py raw``);
- ``bytewax passthrough``: Bytewax KafkaSource -> decode/re-encode -> KafkaSink (``... bytewax``);
- ``quix passthrough``: the same in Quix Streams (``bench/quix_passthrough.py``), if installed;
- ``CPU-bound Python``: :data:`CPU_WORK` as one process and as two at once, the machine's own ceiling
  for two processes (two vCPUs of a shared host do not give twice one's work).

Then profiles one demandsense run with py-spy (``bench/results/flame.svg``) and reports the hot
spots. Writes ``bench/results/throughput.md`` and its plot, ``throughput.png``.

    python -m bench.throughput [--events 1000000] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench._util import (
    RESULTS,
    SIM_SKUS,
    SIM_STORES,
    compiled_install,
    fmt_rate,
    machine,
    median,
    revision,
    say,
    sim_days,
    table,
    write_result,
)

PY = sys.executable

CPU_WORK = """
d = {}
for i in range(8_000_000):
    d[i % 5000] = (i, str(i))
"""
"""Pure Python work with no I/O (dict stores, small allocations), run as one process and as two at once."""


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    inner: dict = field(default_factory=dict)
    services_cpu_s: float = 0.0  # the broker's and Redis's CPU during the run


def _cpu(pids: tuple[int, ...]) -> float:
    """User + system CPU seconds the running processes ``pids`` have used so far."""
    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_procs(cmds: list[list[str]], timeout: float = 1800, env: dict | None = None, services: tuple[int, ...] = ()
              ) -> Run:  # fmt: skip
    """Start ``cmds`` together; wall time until all exit, their CPU seconds and summed peak RSS, and the CPU
    seconds the ``services`` (the broker's and Redis's pids) used meanwhile."""
    cpu0, services0 = _children_cpu(), _cpu(services)
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path.cwd(), env=env)
        for c in cmds
    ]
    peaks = [0] * len(procs)
    handles = [psutil.Process(p.pid) for p in procs]
    while any(p.poll() is None for p in procs):
        for i, h in enumerate(handles):
            try:
                rss = h.memory_info().rss + sum(c.memory_info().rss for c in h.children(recursive=True))
                peaks[i] = max(peaks[i], rss)
            except psutil.Error:
                pass
        if time.perf_counter() - t0 > timeout:
            for p in procs:
                p.kill()
            raise RuntimeError(f"{cmds[0][:4]} ran over {timeout} s")
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    outs = [p.communicate() for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(p.args[:5])} exited {p.returncode}: {err[-3000:]}")
    inner: dict = {}
    for out, _ in outs:
        for line in out.splitlines()[::-1]:  # a baseline's figures
            if line.startswith("{"):
                inner = json.loads(line)
                break
    ends = [json.loads(line) for _, err in outs for line in err.splitlines() if '"input_ended_at"' in line]
    reader = next((e for e in ends if "read_s" in e), None)
    if reader:  # demandsense's final log lines: from the reader's first record to the last process's end of input
        first = reader["input_ended_at"] - reader["read_s"]
        inner = {"messages": reader["records_read"], "first_to_last_s": max(e["input_ended_at"] for e in ends) - first}
    return Run(wall, _children_cpu() - cpu0, sum(peaks) / 2**20, inner, _cpu(services) - services0)


def demandsense_cmds(bootstrap: str, redis_url: str | None, processes: int, extra: list[str] | None = None
                     ) -> list[list[str]]:  # fmt: skip
    from demandsense.embedded import free_port

    base = [PY, "-P", "-m", "demandsense.cli", "--log-format", "json", "run", "--bootstrap-servers", bootstrap,
            "--from-beginning", "--exit-at-end", *(["--redis-url", redis_url] if redis_url else []),
            *(extra or [])]  # fmt: skip
    if processes == 1:
        return [[*base, "--metrics-port", str(free_port())]]
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    return [
        [*base, "--metrics-port", str(free_port()), "--process-id", str(i), "--addresses", addresses]
        for i in range(processes)
    ]


def topic_args(inputs: dict[str, str]) -> list[str]:
    return [a for kind, topic in inputs.items() for a in ("--topic", f"{kind}={topic}")]


# -- profile analysis -------------------------------------------------------------------------
def _frame_name(frame: str) -> str:
    """``func (path/file.py:line)`` -> ``path/file.py:func`` with the path shortened."""
    func, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{func}"


def hot_spots(raw: Path, top: int = 15) -> tuple[int, list[tuple[str, float, float]]]:
    """Total samples and (function, self share, inclusive share) of the top functions by inclusive share."""
    self_n: dict[str, int] = defaultdict(int)
    incl_n: dict[str, int] = defaultdict(int)
    total = 0
    for line in raw.read_text().split("\n"):  # not splitlines: frame names may hold its separators
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [_frame_name(f) for f in stack.split(";")]
        self_n[frames[-1]] += n
        for f in set(frames):
            incl_n[f] += n
    rows = [(f, self_n[f] / total, incl_n[f] / total) for f in incl_n]
    return total, rows


def profile(bootstrap: str, redis_url: str, out_svg: Path, env: dict[str, str]) -> tuple[float, Path | None]:
    """py-spy over one demandsense run: collapsed stacks, rendered as a flame graph (SVG)."""
    spy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    if not Path(spy).exists():
        say("py-spy not installed (pip install py-spy): no profile")
        return float("nan"), None
    cmd = demandsense_cmds(bootstrap, redis_url, 1)[0]
    raw = Path(tempfile.mkdtemp(prefix="bench-profile-")) / "demandsense.collapsed.txt"
    say("profiling one demandsense run with py-spy ...")
    r = run_procs([[spy, "record", "--rate", "200", "--nonblocking", "--format", "raw", "-o", str(raw), "--", *cmd]],
                  env=env)  # fmt: skip
    flame_svg(raw, out_svg, "demandsense run --from-beginning --exit-at-end (py-spy, 200 Hz)")
    return r.wall_s, raw


def flame_svg(raw: Path, out: Path, title: str, width: int = 1400, row: int = 16) -> None:
    """A flame graph (SVG, hover for names and shares) from py-spy's collapsed stacks."""
    from html import escape

    root: dict = {"n": 0, "kids": {}}
    for line in raw.read_text().split("\n"):  # not splitlines: frame names may hold its separators
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        node = root
        node["n"] += n
        for frame in stack.split(";"):
            node = node["kids"].setdefault(frame, {"n": 0, "kids": {}})
            node["n"] += n
    total = root["n"] or 1
    rects: list[str] = []
    depth_max = 0

    def walk(node: dict, x: float, depth: int) -> None:
        nonlocal depth_max
        for name, kid in sorted(node["kids"].items()):
            w = kid["n"] / total * width
            if w >= 0.3:
                depth_max = max(depth_max, depth)
                short = _frame_name(name)
                hue = 20 + (hash(short) % 40)
                label = escape(short) if w > 60 else ""
                tip = escape(f"{short} ({kid['n']:,} samples, {kid['n'] / total:.1%})")
                rects.append(
                    f'<g><title>{tip}</title><rect x="{x:.1f}" y="{{Y{depth}}}" width="{w:.1f}" height="{row - 1}" '
                    f'fill="hsl({hue},85%,60%)"/><text x="{x + 3:.1f}" y="{{T{depth}}}" font-size="11" '
                    f'clip-path="none">{label[: int(w / 6.5)]}</text></g>'
                )
            walk(kid, x, depth + 1)
            x += w

    walk(root, 0.0, 0)
    height = (depth_max + 3) * row
    body = "\n".join(rects)
    for d in range(depth_max + 1):  # icicle upside down: the root at the bottom
        y = height - (d + 2) * row
        body = body.replace(f"{{Y{d}}}", str(y)).replace(f"{{T{d}}}", str(y + row - 4))
    out.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace">\n'
        f'<rect width="100%" height="100%" fill="#fff"/><text x="4" y="14" font-size="13">{escape(title)}: '
        f"{total:,} samples; hover a frame for its share</text>\n{body}\n</svg>\n"
    )


# -- the benchmark ----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000, help="at least this many input records (1,000,000)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each configuration, interleaved (3)")
    p.add_argument("--partitions", type=int, default=4, help="partitions of each input topic (4)")
    p.add_argument("--quick", action="store_true", help="100k events, one repeat, no profile (1-2 min)")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument(
        "--only",
        help="comma-separated subset: raw,bytewax,quix,ds1,ds2,ds1nv (views off),ds1py (pure), "
        "pair (two single-process jobs at once), cpu (a CPU-bound Python loop alone and as two at once)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.repeats, args.no_profile = min(args.events, 100_000), 1, True

    from demandsense.embedded import Broker, RedisServer, create_topics, delete_topics
    from demandsense.simulate import SimConfig, generate, produce
    from flows.demand import Topics

    topics = Topics()
    inputs = topics.inputs()
    days = sim_days(args.events)
    cfg = SimConfig(stores=SIM_STORES, skus=SIM_SKUS, days=days, seed=42)
    say(f"simulating {cfg.stores} stores x {cfg.skus} SKUs x {days:g} days")
    sim = generate(cfg)
    have_quix = importlib.util.find_spec("quixstreams") is not None
    configs = ["raw", "bytewax", "ds1", "ds1py", "ds2", "pair", "ds1nv", "cpu"] + (["quix"] if have_quix else [])
    if args.only:
        configs = [c for c in configs if c in args.only.split(",")]
    results: dict[str, list[Run]] = defaultdict(list)
    say("building demandsense as pip installs it (mypyc) ...")
    compiled = compiled_install(Path(tempfile.mkdtemp(prefix="bench-compiled-")))

    with Broker() as broker, RedisServer() as redis_server:
        bs = broker.bootstrap_servers
        create_topics(bs, inputs.values(), partitions=args.partitions)
        create_topics(bs, topics.outputs().values())
        t0 = time.perf_counter()
        counts = produce(sim, bs, fmt="avro")
        total = sum(counts.values())
        say(f"produced {total:,} records {counts} in {time.perf_counter() - t0:.1f} s")
        del sim

        # fixed cost: the same command over empty input topics
        empty = {k: f"bench.empty.{k}" for k in inputs}
        create_topics(bs, empty.values(), partitions=args.partitions)
        startup_extra = ["--sales-topic", empty["Sale"], "--inventory-topic", empty["InventoryEvent"],
                         "--items-topic", empty["ItemParams"]]  # fmt: skip
        startup = run_procs(demandsense_cmds(bs, redis_server.url, 1, startup_extra), env=compiled).wall_s
        say(f"demandsense start-up and shutdown over empty topics: {startup:.2f} s")

        assert broker.pid and redis_server.pid
        services = (broker.pid, redis_server.pid)

        def one(name: str) -> Run:
            if name == "raw":
                cmd = [PY, "-m", "bench.passthrough", "raw", "--bootstrap-servers", bs, *topic_args(inputs)]
                return run_procs([cmd], services=services)
            if name in ("bytewax", "quix"):
                out = f"bench.{name}.out"
                create_topics(bs, [out])
                try:
                    if name == "bytewax":
                        cmd = [PY, "-m", "bench.passthrough", "bytewax", "--bootstrap-servers", bs, "--out-topic", out]
                    else:
                        cmd = [PY, "-m", "bench.quix_passthrough", "--bootstrap-servers", bs, "--out-topic", out,
                               "--count", str(total)]  # fmt: skip
                    return run_procs([[*cmd, *topic_args(inputs)]], services=services)
                finally:
                    delete_topics(bs, [out])  # the broker keeps everything in memory
            redis_url = None if name == "ds1nv" else redis_server.url
            env = None if name == "ds1py" else compiled
            delete_topics(bs, [*topics.outputs().values(), *PAIR_OUTPUTS])  # each run writes to empty topics
            create_topics(bs, topics.outputs().values())
            if name == "pair":
                create_topics(bs, PAIR_OUTPUTS)
                other = [*pair_args(), "--redis-url", redis_server.url.rsplit("/", 1)[0] + "/1"]
                cmds = demandsense_cmds(bs, redis_url, 1) + demandsense_cmds(bs, None, 1, other)
                r = run_procs(cmds, env=env, services=services)
                r.inner = {}  # two readers: one job's first-to-last span is not the pair's
                return r
            return run_procs(demandsense_cmds(bs, redis_url, 2 if name == "ds2" else 1), env=env, services=services)

        for rep in range(args.repeats):
            order = configs[rep % len(configs) :] + configs[: rep % len(configs)]
            for name in order:
                if name == "cpu":  # the loop alone, then two at once, back to back: the same minute of the machine
                    results["cpu1"].append(run_procs([[PY, "-c", CPU_WORK]]))
                    results["cpu2"].append(run_procs([[PY, "-c", CPU_WORK]] * 2))
                    say(f"[{rep + 1}/{args.repeats}] CPU-bound Python loop: alone {results['cpu1'][-1].wall_s:.2f} s, "
                        f"two at once {results['cpu2'][-1].wall_s:.2f} s")  # fmt: skip
                    continue
                r = one(name)
                results[name].append(r)
                say(f"[{rep + 1}/{args.repeats}] {LABELS[name]:<22} {records(name, total) / r.wall_s:>10,.0f} events/s "
                    f"(wall {r.wall_s:.2f} s, cpu {r.cpu_s:.1f} s, peak RSS {r.peak_rss_mb:.0f} MB)")  # fmt: skip

        prof_wall, raw = (float("nan"), None)
        if not args.no_profile:
            prof_wall, raw = profile(bs, redis_server.url, RESULTS / "flame.svg", compiled)

    report = render(results, total, counts, cfg, args, startup, prof_wall, raw)
    print(report)
    path = write_result("throughput", "Throughput", report)
    plot(results, total, RESULTS / "throughput.png")
    say(f"wrote {path} and throughput.png")
    return 0


LABELS = {
    "ds1": "demandsense (1 proc)",
    "ds1py": "demandsense (1 proc, pure Python)",
    "ds2": "demandsense (2 procs)",
    "pair": "2 demandsense jobs at once (1 proc each)",
    "ds1nv": "demandsense (1 proc, no Redis views)",
    "bytewax": "Bytewax passthrough",
    "quix": "Quix passthrough",
    "raw": "raw consumer + fastavro",
}


PAIR_OUTPUTS = ("bench.pair.alerts", "bench.pair.triggers", "bench.pair.dead-letter")


def pair_args() -> list[str]:
    """The second job of ``pair``: its own consumer group and output topics (its own Redis database is added)."""
    alerts, triggers, dead = PAIR_OUTPUTS
    return ["--group-id", "bench-pair", "--alerts-topic", alerts, "--triggers-topic", triggers,
            "--dead-letter-topic", dead]  # fmt: skip


def end_to_end(runs: list[Run], total: int) -> list[float]:
    """Events/s of each run, from start to exit (``total`` is what the run's processes read between them)."""
    return [total / r.wall_s for r in runs]


def records(name: str, total: int) -> int:
    """Input records a run of configuration ``name`` reads: ``pair`` reads the input twice."""
    return 2 * total if name == "pair" else total


def first_to_last(runs: list[Run]) -> list[float]:
    """Events/s of the runs that measured it inside, from the first input record to the last."""
    return [r.inner["messages"] / r.inner["first_to_last_s"] for r in runs if r.inner.get("first_to_last_s")]


def machine_scaling(results: dict[str, list[Run]]) -> float | None:
    """Median over repeats of the work two CPU-bound processes did per second against one's (``cpu1``: the loop
    alone, ``cpu2``: two at once, back to back): what two processes can reach on this machine."""
    pairs = list(zip(results.get("cpu1", []), results.get("cpu2", []), strict=True))
    return median([2 * one.wall_s / two.wall_s for one, two in pairs]) if pairs else None


def render(results, total, counts, cfg, args, startup, prof_wall, raw) -> str:
    def rate(name: str) -> float:
        return median(end_to_end(results.get(name, []), records(name, total)))

    def steady(name: str) -> float | None:
        """Median first-to-last-record rate, where the runs measured it."""
        rates = first_to_last(results.get(name, []))
        return median(rates) if rates else None

    rows = []
    for name in ("ds1", "ds1py", "ds2", "pair", "ds1nv", "bytewax", "quix", "raw"):
        runs = results.get(name)
        if not runs:
            continue
        n = records(name, total)
        rates = end_to_end(runs, n)
        inside = steady(name)
        rows.append([
            LABELS[name],
            fmt_rate(rate(name)),
            " / ".join(f"{x:,.0f}" for x in rates),
            f"{median([r.wall_s for r in runs]):.2f}",
            f"{median([r.cpu_s for r in runs]) / n * 1e6:.1f}",
            f"{median([r.services_cpu_s for r in runs]) / n * 1e6:.1f}",
            f"{median([(r.cpu_s + r.services_cpu_s) / r.wall_s for r in runs]):.2f}",
            f"{median([r.peak_rss_mb for r in runs]):.0f}",
            fmt_rate(inside) if inside else "",
        ])  # fmt: skip
    ratios = []
    for label, a, b, goal in RATIOS:
        if results.get(a) and results.get(b):  # --only may have left one out
            x = rate(a) / rate(b)
            ratios.append([label, f"{x:.2f}x", f">= {goal}x" if goal else "", _ok(x >= goal) if goal else ""])
    for label, a, b in STEADY_RATIOS:
        sa, sb = steady(a), steady(b)
        if sa and sb:
            ratios.append([f"{label}, first to last record", f"{sa / sb:.2f}x", "", ""])
    ceiling = machine_scaling(results)
    if ceiling is not None:
        ratios.append(["2 CPU-bound Python processes / 1, this machine (the ceiling for 2 processes)",
                       f"{ceiling:.2f}x", "", ""])  # fmt: skip
        if results.get("ds2") and results.get("ds1"):
            share = rate("ds2") / rate("ds1") / ceiling
            ratios.append(["demandsense 2 procs / 1 proc, as a share of that ceiling", f"{share:.0%}", "", ""])
    if results.get("ds2") and results.get("pair"):
        ratios.append(["demandsense 2 procs / 2 jobs at once (as a share of this job's ceiling)",
                       f"{rate('ds2') / rate('pair'):.0%}", "", ""])  # fmt: skip
    if results.get("ds1"):  # the spread the medians hide on a noisy machine
        for name, label in (("ds2", "demandsense 2 procs"), ("pair", "2 jobs at once")):
            if results.get(name):
                each = [(records(name, total) / other.wall_s) / (total / one.wall_s)
                        for one, other in zip(results["ds1"], results[name], strict=True)]  # fmt: skip
                ratios.append([f"{label} / 1 proc, each repeat's runs", " / ".join(f"{x:.2f}x" for x in each), "", ""])
    fixed = f"demandsense start-up and shutdown over empty topics takes {startup:.2f} s of each run"
    if results.get("ds1"):  # --only may have left it out
        net = total / (median([r.wall_s for r in results["ds1"]]) - startup)
        fixed += f"; without it the single process runs at {net:,.0f} events/s"
    body = [
        f"Input: `SimConfig(stores={cfg.stores}, skus={cfg.skus}, days={cfg.days:g}, seed={cfg.seed})` produced as "
        f"Confluent Avro with event-time timestamps: {total:,} records "
        f"({', '.join(f'{t}: {n:,}' for t, n in counts.items())}); input topics with {args.partitions} partitions; "
        f"embedded Tansu broker and Redis on loopback. Each configuration ran {args.repeats} time(s), interleaved; "
        "events/s is input records / wall time of the process(es) from start to exit (median of the runs). "
        "demandsense runs with Redis views and metrics on, compiled as `pip install` builds it unless it says "
        "pure Python.",
        "",
        table(
            [
                "configuration",
                "events/s (median)",
                "each run",
                "wall s",
                "CPU µs/event",
                "broker + Redis CPU µs/event",
                "cores busy",
                "peak RSS MB",
                "first-to-last msg events/s",
            ],
            rows,
        ),  # fmt: skip
        "",
        table(["ratio", "measured", "goal", "met"], ratios),
        "",
        "![events/s of each configuration](throughput.png)",
        "",
        f"{fixed}. CPU µs/event counts all the processes' CPU (user + sys) "
        "per input record: less sensitive to other jobs on the machine than wall time. 'broker + Redis' is the "
        "embedded services' CPU during the run, and 'cores busy' the CPU of the run and the services over its wall "
        f"time (of {os.cpu_count()} cores; other jobs on the machine not counted). 'first-to-last' is measured "
        "inside each run from its first input record to its last (demandsense: until the end of input reached the "
        "stores of every process, from its final log lines): it leaves out start-up and shutdown (and, for Quix, "
        "the group join). The goals are judged end to end. The CPU-bound Python ratio times `CPU_WORK` "
        "(bench/throughput.py) as one process and as two at once, back to back in each repeat: the work per "
        "second two processes get from this machine's cores against one's. '2 jobs at once' runs two independent "
        "single-process jobs side by side, each reading all the input (its events/s counts both jobs' records): "
        "two processes of this very job with nothing shared between them, which no cluster of it can beat by "
        "much (the pair's broker serves the input twice, a cluster's once).",
    ]
    if raw is not None:
        n, spots = hot_spots(raw)
        by_self = sorted(spots, key=lambda r: -r[1])[:15]
        body += [
            "",
            f"## Profile of the demandsense run (py-spy, {n:,} samples at 200 Hz; flame graph: "
            f"[flame.svg](flame.svg); the profiled run took {prof_wall:.1f} s)",
            "",
            "Top functions by own time (self) with their inclusive share:",
            "",
            table(["function", "self", "inclusive"], [[f"`{f}`", f"{s:.1%}", f"{i:.1%}"] for f, s, i in by_self]),
        ]
        wanted = ("flows/demand.py:", "operators/", "demandsense/", "flows/sinks.py:", "flows/sources.py:",
                  "state/", "pickle", "fastavro", "prometheus_client")  # fmt: skip
        by_incl = sorted((r for r in spots if any(w in r[0] for w in wanted)), key=lambda r: -r[2])[:25]
        body += [
            "",
            "Project code and libraries by inclusive share (time in the function and everything it calls):",
            "",
            table(["function", "inclusive", "self"], [[f"`{f}`", f"{i:.1%}", f"{s:.1%}"] for f, s, i in by_incl]),
        ]
    return "\n".join(body)


def plot(results: dict[str, list[Run]], total: int, path: Path) -> None:
    """Events/s of each configuration: the median end to end (bar), each run (dots), the median from the first
    record to the last (tick), and the ratio to the Bytewax passthrough."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in ("ds1", "ds1nv", "ds2", "pair", "ds1py", "bytewax", "quix", "raw") if results.get(n)]
    base = median(end_to_end(results.get("bytewax", []), total))  # NaN if the passthrough did not run
    ceiling = machine_scaling(results)
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(names) + 1.4))
    for y, name in enumerate(names):
        runs, inside = end_to_end(results[name], records(name, total)), first_to_last(results[name])
        ax.barh(y, median(runs), color="C0" if name.startswith("ds") else "C7", alpha=0.8)
        ax.plot(runs, [y] * len(runs), "k.", ms=4)
        if inside:
            ax.plot([median(inside)], [y], "|", color="k", ms=14, mew=1.5)
        label = f" {median(runs):,.0f}/s"
        if name != "pair" and not math.isnan(base):  # the pair is two jobs: against one process only
            label += f", {median(runs) / base:.2f}x passthrough"
        if name in ("ds2", "pair") and results.get("ds1"):
            label += f", {median(runs) / median(end_to_end(results['ds1'], total)):.2f}x 1 proc"
        if name == "ds2" and ceiling is not None:
            label += f"\n (CPU-bound loop's ceiling {ceiling:.2f}x)"  # one line ran off the plot
        ax.annotate(label, (max(runs + inside), y), va="center", fontsize=8)
    if not math.isnan(base):
        ax.axvline(base, color="C3", ls="--", lw=1, label="Bytewax passthrough (1.0x)")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(range(len(names)), [LABELS[n] for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("input events/s: bar = median end to end, dots = each run, tick = first record to last")
    ax.set_xlim(0, ax.get_xlim()[1] * 1.3)
    ax.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    ax.grid(axis="x", alpha=0.3)
    m = machine()
    ax.set_title(f"Throughput, {total:,} Avro events ({m['date']}, {m['cpu']}, {m['nproc']} cores, "
                 f"demandsense at {revision()})", fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


RATIOS = (  # label, numerator, denominator, goal (0: none)
    ("demandsense (1 proc) / Bytewax passthrough", "ds1", "bytewax", 1.0),
    ("demandsense (1 proc, pure Python) / Bytewax passthrough", "ds1py", "bytewax", 0.0),
    ("demandsense compiled / pure Python (1 proc)", "ds1", "ds1py", 0.0),
    ("demandsense (1 proc, no Redis views) / Bytewax passthrough", "ds1nv", "bytewax", 0.0),
    ("demandsense 2 procs / 1 proc", "ds2", "ds1", 1.6),
    ("2 demandsense jobs at once / 1 proc (the ceiling for 2 processes of this job)", "pair", "ds1", 0.0),
    ("raw consumer + fastavro / Bytewax passthrough", "raw", "bytewax", 0.0),
    ("Quix passthrough / Bytewax passthrough", "quix", "bytewax", 0.0),
)

STEADY_RATIOS = (  # the same, first record to last: start-up and shutdown left out
    ("demandsense (1 proc) / Bytewax passthrough", "ds1", "bytewax"),
    ("demandsense 2 procs / 1 proc", "ds2", "ds1"),
)


def _ok(b: bool) -> str:
    return "yes" if b else "**no**"


if __name__ == "__main__":
    sys.exit(main())
