"""Latency: event-to-alert under a steady live load, from the sale's Kafka timestamp to the alert's.

Starts an embedded broker and Redis and, per policy, a ``demandsense run`` subprocess (views and
metrics on) reading fresh topics from their end. A paced producer thread then sends simulated
records (10 stores x 2,000 SKUs) at ``--rate`` events/s with ``event_time = now`` and the Kafka
timestamp equal to it, as live POS would: by default (``--load steady``) the stores take turns, each
store's own sales and inventory in event-time order, so every store carries a steady share;
``--load replay`` sends the chain's rows in event-time order, which runs the simulated days about
6,800 times faster than real time, so stores go quiet for seconds at a time. Every 100 ms it
also sends a probe: a SNAPSHOT of one unit and, 10 ms later, a sale of it for a SKU not seen
before, so an OUT_OF_STOCK alert fires on a known sale even before the stores are warm.

**Matching.** An event-driven alert carries in ``event_time`` the event time of the record that
caused it, and every produced record is remembered by ``(store, sku, event_time)``. An alert that
matches one is timed as its Kafka timestamp (the sink's produce time) minus that event time;
alerts of the time-driven checks (on the 15-minute event-time grid) match none and are counted
apart. Alerts caused by records of the first ``--warmup`` seconds are left out (start-up).

Runs the documented low-latency setting (``allowed_lateness_s = 0``, ``stream_idle_s = 0.25``) with
and without Redis views, with the input's ``fetch.wait.max.ms`` at librdkafka's 500 ms default for
comparison, and on the replay load; ``allowed_lateness_s = 0`` with the default ``stream_idle_s``;
and the default 300 s (the load runs 300 s longer). A store applies an event only once its
watermark (its slowest active input stream, minus the allowed lateness) has passed it. Keeps the
hand-written "Where the time goes" section of ``bench/results/latency.md`` and rewrites the rest.

    python -m bench.latency [--rate 5000] [--duration 60] [--runs ...] [--load steady|replay] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil

from bench._util import fmt_rate, say, table, write_result

PY = sys.executable
FINDINGS = "## Where the time goes"
LOW_LATENCY = "0/idle=0.25/progress"  # the documented low-latency setting (docs/policy.example.toml)
DEFAULT_RUNS = (f"{LOW_LATENCY},{LOW_LATENCY}/noviews,{LOW_LATENCY}/linger=50,{LOW_LATENCY}/noviews/linger=50,"
                "0/idle=0.25,0/idle=0.25/noviews/fetchwait=500,0/noviews,"
                f"{LOW_LATENCY}/noviews/replay,default/noviews/linger=50")  # fmt: skip
QUICK_RUNS = f"{LOW_LATENCY},{LOW_LATENCY}/noviews"
LINGER_MS = 5.0  # the benchmark producer's linger.ms unless a run says '/linger=MS' (librdkafka's default)


def hist_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Upper bound (ms) of the bucket holding quantile ``q`` of a Prometheus histogram's cumulative buckets."""
    total = buckets[-1][1] if buckets else 0
    if not total:
        return math.nan
    for le, n in buckets:
        if n >= q * total:
            return le * 1000
    return math.inf


def metrics_text(port: int) -> str:
    """The flow's ``/metrics`` page."""
    import urllib.request

    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def scrape_histogram(port: int, name: str = "demandsense_event_to_alert_seconds") -> list[tuple[float, float]]:
    out = []
    for line in metrics_text(port).splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out.append((math.inf if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    return out


def broker_rtt_ms(port: int) -> float:
    """The input consumer's mean round trip to the broker over the last 5 s (``demandsense_broker_rtt_seconds``)."""
    for line in metrics_text(port).splitlines():
        if line.startswith("demandsense_broker_rtt_seconds{") and 'client="consumer"' in line:
            return float(line.rsplit(" ", 1)[1]) * 1000
    return math.nan


def cpu_pressure() -> float:
    """Share of the last 60 s in which some runnable task waited for a CPU (Linux PSI; NaN elsewhere)."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return math.nan
    return float(line.split("avg60=", 1)[1].split()[0]) / 100


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return math.nan
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


class Producer(threading.Thread):
    """Replays simulated records at ``rate`` events/s with event time = now; remembers what it sent."""

    def __init__(
        self, bootstrap: str, topics: dict[str, str], sim, rate: float, seconds: float, load: str = "steady",
        linger_ms: float = LINGER_MS,
    ) -> None:  # fmt: skip
        super().__init__(daemon=True)
        from confluent_kafka import Producer as KProducer

        from demandsense.serde import make_codec

        self.topics, self.rate, self.seconds = topics, rate, seconds
        self.producer = KProducer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms,
                                   "queue.buffering.max.messages": 1_000_000})  # fmt: skip
        self.codecs = {k: make_codec("avro", k) for k in ("Sale", "InventoryEvent", "ItemParams")}
        self.records = self._cycle(sim, load)
        self.sim = sim
        self.sent: dict[tuple[str, str, int], str] = {}
        self.acked: dict[tuple[str, str, int], float] = {}  # probe records: wall ms of the broker's ack
        self.counts: Counter = Counter()
        self.started = self.finished = 0.0
        self.behind_max = 0.0

    @staticmethod
    def _cycle(sim, load: str = "steady") -> Iterator[tuple[int, str, tuple]]:
        """Sales and inventory rows, over and over (ids are made unique when sent).

        ``replay``: the whole chain's rows in event-time order, so the simulated days run about 6,800
        times faster than real time: every store goes quiet for seconds at a time (its nights) and the
        midnight counts of all stores come as one burst. ``steady``: the stores take turns, one record
        each, every store's own rows in event-time order, so each store carries a steady 1/10 of the load
        (what a live feed of a chain looks like within an hour; the simulated time of day is not kept
        anyway, event time is the send time).
        """
        rows = Producer._order(sim, load)  # built here, before the paced loop starts

        def cycle():
            while True:
                yield from rows

        return cycle()

    _orders: dict[tuple[int, str], list] = {}

    @staticmethod
    def _order(sim, load: str) -> list:
        """The rows in sending order (built once per simulation and load)."""
        if (id(sim), load) not in Producer._orders:
            merged = list(heapq.merge(((r[2], "InventoryEvent", r) for r in sim.inventory.rows),
                                      ((r[2], "Sale", r) for r in sim.sales.rows), key=lambda x: x[0]))  # fmt: skip
            if load == "steady":
                per_store: dict[str, list] = {}
                for x in merged:
                    per_store.setdefault(x[2][3], []).append(x)
                longest = max(len(v) for v in per_store.values())
                lists = [per_store[s] for s in sorted(per_store)]
                # a store that runs out starts over, so every store keeps its share
                merged = [lst[i % len(lst)] for i in range(longest) for lst in lists]
            Producer._orders[id(sim), load] = merged
        return Producer._orders[id(sim), load]

    def _send(self, kind: str, rec: dict) -> None:
        key = f"{rec['store_id']}:{rec['sku']}".encode()
        value = self.codecs[kind].encode(rec)
        ident = (rec["store_id"], rec["sku"], rec["event_time"])
        acked = None
        if rec["event_id"].startswith("probe-"):  # when the broker acknowledged it: splits the broker's part off

            def acked(err, _msg, ident=ident) -> None:
                if err is None:
                    self.acked[ident] = time.time() * 1000

        while True:
            try:
                self.producer.produce(self.topics[kind], value, key, timestamp=rec["event_time"], on_delivery=acked)
                break
            except BufferError:
                self.producer.poll(0.01)
        self.sent[(rec["store_id"], rec["sku"], rec["event_time"])] = kind
        self.counts[kind] += 1

    def load_items(self) -> None:
        for item in self.sim.items:
            v = self.codecs["ItemParams"].encode(item)
            self.producer.produce(self.topics["ItemParams"], v, f"{item['store_id']}:{item['sku']}".encode())
        self.producer.flush(30)

    def run(self) -> None:
        from demandsense.simulate import INVENTORY_FIELDS, SALE_FIELDS

        fields = {"Sale": SALE_FIELDS, "InventoryEvent": INVENTORY_FIELDS}
        prefix = {"Sale": self.sim.sales.id_prefix, "InventoryEvent": self.sim.inventory.id_prefix}
        stores = sorted({it["store_id"] for it in self.sim.items})
        self.started = start = time.time()
        done, probes, next_probe = 0, 0, start + 0.1
        pending_probe: tuple[float, dict] | None = None
        while True:
            now = time.time()
            if now - start >= self.seconds:
                break
            due = int((now - start) * self.rate)
            self.behind_max = max(self.behind_max, (due - done) / self.rate)
            now_ms = int(now * 1000)
            while done < due:
                _, kind, r = next(self.records)
                f = fields[kind]
                rec = {f[0]: f"{prefix[kind]}{r[1]:09d}-{done}", f[1]: now_ms, f[2]: r[3], f[3]: r[4], f[4]: r[5],
                       f[5]: r[6], f[6]: r[7], f[7]: r[8]}  # fmt: skip
                self._send(kind, rec)
                done += 1
            if pending_probe is not None and now >= pending_probe[0]:
                self._send("Sale", pending_probe[1] | {"event_time": now_ms})
                pending_probe = None
            if now >= next_probe and pending_probe is None:
                probes += 1
                store, sku = stores[probes % len(stores)], f"PROBE-{probes:06d}"
                self._send("InventoryEvent", {"event_id": f"probe-i{probes}", "event_time": now_ms, "store_id": store,
                                              "sku": sku, "event_type": "SNAPSHOT", "quantity": 0, "on_hand": 1,
                                              "in_transit": 0})  # fmt: skip
                sale = {"event_id": f"probe-s{probes}", "store_id": store, "sku": sku, "channel": "STORE",
                        "quantity": 1, "unit_price": 4.0, "promo_id": None}  # fmt: skip
                pending_probe = (now + 0.01, sale)
                next_probe += 0.1
            self.producer.poll(0)
            time.sleep(0.002)
        self.producer.flush(30)
        self.finished = time.time()


class AlertReader(threading.Thread):
    """Reads the alerts topic: (event_time, Kafka timestamp, alert type, store, sku) of each alert."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        from confluent_kafka import Consumer

        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-latency",
                                  "enable.auto.commit": False, "fetch.queue.backoff.ms": 1,
                                  "fetch.wait.max.ms": 500})  # fmt: skip
        # (the alerts' Kafka timestamps are what is timed, not when this reads them: no need to load the broker)
        self.topic = topic
        self.alerts: list[tuple[int, int, str, str, str, str, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        from demandsense.serde import AvroCodec

        codec = AvroCodec("Alert")
        meta = self.consumer.list_topics(self.topic, timeout=10)
        parts = sorted(meta.topics[self.topic].partitions)
        self.consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
        while not self.stop.is_set():
            for m in self.consumer.consume(1000, 0.1):
                if m.error():
                    continue
                a = codec.decode(m.value())
                self.alerts.append((a["event_time"], m.timestamp()[1], a["alert_type"], a["status"], a["store_id"],
                                    a["sku"], a["detected_at"]))  # fmt: skip
        self.consumer.close()


def one_run(bs: str, broker_pid: int | None, redis_url: str | None, sim, lateness: float | None, rate: float,
            duration: float, warmup: float, partitions: int, tag: str, extra: list[tuple[str, float | str]],
            profile: str | None = None, load: str = "steady",
            consumer: dict[str, str] | None = None, linger_ms: float = LINGER_MS) -> dict:  # fmt: skip
    from demandsense.embedded import create_topics, free_port

    topics = {k: f"bench.lat.{tag}.{k}" for k in ("Sale", "InventoryEvent", "ItemParams", "Alert", "Trigger", "Dead")}
    create_topics(bs, [topics[k] for k in ("Sale", "InventoryEvent", "ItemParams")], partitions=partitions)
    create_topics(bs, [topics[k] for k in ("Alert", "Trigger", "Dead")])
    policy = Path(tempfile.mkdtemp(prefix="bench-lat-")) / "policy.toml"
    lines = ([] if lateness is None else [f"allowed_lateness_s = {lateness}"]) + [f"{k} = {v}" for k, v in extra]
    policy.write_text("[detection]\n" + "\n".join(lines) + "\n" if lines else "")
    producer = Producer(bs, topics, sim, rate, duration + (300.0 if lateness is None else lateness), load, linger_ms)
    producer.load_items()  # master data first, as in production
    mport = free_port()
    cmd = [PY, "-m", "demandsense.cli", "--log-level", "WARNING", "run", "--bootstrap-servers", bs,
           "--from-beginning", "--metrics-port", str(mport), "--policy", str(policy),
           "--sales-topic", topics["Sale"], "--inventory-topic", topics["InventoryEvent"],
           "--items-topic", topics["ItemParams"], "--alerts-topic", topics["Alert"],
           "--triggers-topic", topics["Trigger"], "--dead-letter-topic", topics["Dead"]]  # fmt: skip
    if redis_url:
        cmd += ["--redis-url", redis_url]
    if profile:
        cmd = [str(Path(PY).parent / "py-spy"), "record", "--rate", "200", "--format", "raw", "-o", profile,
               "--nonblocking", "--", *cmd]  # fmt: skip
    log = tempfile.NamedTemporaryFile(prefix="bench-lat-", suffix=".log", delete=False)  # noqa: SIM115
    env = os.environ | {"DEMANDSENSE_CONSUMER_" + k.upper().replace(".", "_"): v for k, v in (consumer or {}).items()}
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
    reader = AlertReader(bs, topics["Alert"])
    reader.start()
    try:
        time.sleep(4.0)  # the flow starts, reads the item params
        if proc.poll() is not None:
            raise RuntimeError(f"demandsense exited {proc.returncode}: {Path(log.name).read_text()[-2000:]}")
        ps = psutil.Process(proc.pid)
        if profile:  # py-spy's child is the flow
            ps = ps.children()[0]
        broker = psutil.Process(broker_pid) if broker_pid else None
        cpu0, broker0 = sum(ps.cpu_times()[:2]), sum(broker.cpu_times()[:2]) if broker else 0.0
        producer.start()
        producer.join()
        rtt_end = broker_rtt_ms(mport)
        cpu = sum(ps.cpu_times()[:2]) - cpu0
        broker_cpu = sum(broker.cpu_times()[:2]) - broker0 if broker else math.nan
        time.sleep(3.0)  # the last alerts reach the topic
        hist = scrape_histogram(mport)
    finally:
        if profile:  # py-spy writes its output on SIGINT; then the flow is stopped
            child = psutil.Process(proc.pid).children()
            proc.send_signal(signal.SIGINT)
            time.sleep(3)
            for c in child:
                with contextlib.suppress(psutil.NoSuchProcess):  # py-spy's SIGINT may have stopped it
                    c.terminate()
            _, alive = psutil.wait_procs(child, timeout=30)
            for c in alive:
                c.kill()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        reader.stop.set()
        reader.join(10)
        os.unlink(log.name)
    t0_ms = (producer.started + warmup) * 1000
    lat, to_sink, by_type, unmatched, late_start = [], [], Counter(), 0, 0
    thirds: list[list[float]] = [[], [], []]  # by the causing record's event time in the measured load
    third_ms = max(1.0, (producer.finished * 1000 - t0_ms) / 3)
    to_ack, from_ack = [], []
    for et, ts, kind, _status, store, sku, detected in reader.alerts:
        if (store, sku, et) not in producer.sent:
            unmatched += 1
            continue
        if et < t0_ms:
            late_start += 1
            continue
        lat.append(ts - et)
        thirds[min(2, int((et - t0_ms) // third_ms))].append(ts - et)
        to_sink.append(detected - et)
        if (store, sku, et) in producer.acked:
            ack = producer.acked[store, sku, et]
            to_ack.append(ack - et)
            from_ack.append(ts - ack)
        by_type[kind] += 1
    wall = producer.finished - producer.started
    return {
        "lateness": 300.0 if lateness is None else lateness,
        "default": lateness is None,
        "extra": extra,
        "views": redis_url is not None,
        "load": load,
        "consumer": consumer or {},
        "linger_ms": linger_ms,
        "sent": sum(producer.counts.values()),
        "rate": sum(producer.counts.values()) / wall,
        "producer_behind_s": producer.behind_max,
        "alerts": len(reader.alerts),
        "matched": len(lat),
        "unmatched": unmatched,
        "by_type": dict(by_type),
        "p50": percentile(lat, 0.50),
        "p99": percentile(lat, 0.99),
        "max": max(lat) if lat else math.nan,
        "p99_first_third": percentile(thirds[0], 0.99),
        "p99_last_third": percentile(thirds[2], 0.99),
        "sink_p50": percentile(to_sink, 0.50),
        "sink_p99": percentile(to_sink, 0.99),
        "ack_p50": percentile(to_ack, 0.50),
        "ack_p99": percentile(to_ack, 0.99),
        "from_ack_p50": percentile(from_ack, 0.50),
        "from_ack_p99": percentile(from_ack, 0.99),
        "cpu_share": cpu / wall,
        "broker_cpu_share": broker_cpu / wall,
        "broker_rtt_end": rtt_end,
        "engine_p50": hist_quantile(hist, 0.5),
        "engine_p99": hist_quantile(hist, 0.99),
        "loadavg": os.getloadavg()[0],
        "cpu_pressure": cpu_pressure(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=5000.0, help="events/s produced (5000)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of measured load per policy (60)")
    p.add_argument("--warmup", type=float, default=5.0, help="first seconds of load left out (5)")
    p.add_argument("--partitions", type=int, default=4, help="partitions of each input topic (4)")
    p.add_argument(
        "--runs",
        default=None,
        help="comma-separated policies: allowed_lateness_s ('default' = 300 s "
        "from the defaults), optionally '/idle=S' for stream_idle_s, '/progress' for partition_progress = true "
        "and '/noviews' to run without Redis "
        f"views ({DEFAULT_RUNS}; --quick: {QUICK_RUNS}); '/replay' or '/steady' sets the load, '/fetchwait=MS' "
        f"the input's fetch.wait.max.ms, '/linger=MS' the benchmark producer's linger.ms ({LINGER_MS:g})",
    )
    p.add_argument(
        "--load",
        choices=("steady", "replay"),
        default="steady",
        help="steady: the stores take turns, "
        "each a steady share; replay: the chain's rows in event-time order, simulated days ~6,800x "
        "faster than real, so stores go quiet for seconds (their nights); a run spec's '/replay' or "
        "'/steady' overrides it (steady)",
    )
    p.add_argument("--no-redis", action="store_true", help="run without Redis views")
    p.add_argument("--profile", help="py-spy collapsed stacks of the (last) run to this file")
    p.add_argument(
        "--quick", action="store_true", help="the low-latency setting with and without views, 15 s of load each"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.runs = min(args.duration, 15.0), args.runs or QUICK_RUNS
    runs = []
    for spec in (args.runs or DEFAULT_RUNS).split(","):
        parts = spec.split("/")
        lat = parts[0]
        extra: list[tuple[str, float | str]] = [
            ("stream_idle_s", float(x.split("=", 1)[1])) for x in parts[1:] if x.startswith("idle=")
        ]
        extra += [("partition_progress", "true")] if "progress" in parts[1:] else []
        views = "noviews" not in parts[1:] and not args.no_redis
        load = "replay" if "replay" in parts[1:] else ("steady" if "steady" in parts[1:] else args.load)
        consumer = dict(("fetch.wait.max.ms", x.split("=", 1)[1]) for x in parts[1:] if x.startswith("fetchwait="))
        linger = next((float(x.split("=", 1)[1]) for x in parts[1:] if x.startswith("linger=")), LINGER_MS)
        runs.append((None if lat == "default" else float(lat), extra, views, load, consumer, linger))

    from demandsense.embedded import Broker, RedisServer
    from demandsense.simulate import SimConfig, generate

    sim = generate(SimConfig(stores=10, skus=2000, days=14, seed=7))
    results = []
    with Broker() as broker, RedisServer() as redis_server:
        for i, (lateness, extra, views, load, consumer, linger) in enumerate(runs):
            name = (
                ("default (300 s)" if lateness is None else f"{lateness:g} s")
                + "".join(f", {k} = {v:g}" if isinstance(v, float) else f", {k} = {v}" for k, v in extra)
                + ("" if views else ", no Redis views")
                + f", {load} load"
                + "".join(f", {k} = {v}" for k, v in consumer.items())
                + f", producer linger.ms = {linger:g}"
            )
            say(f"allowed_lateness_s = {name}: {args.rate:,.0f} events/s for "
                f"{args.duration + (300 if lateness is None else lateness):.0f} s ...")  # fmt: skip
            redis_url = redis_server.url if views else None
            r = one_run(broker.bootstrap_servers, broker.pid, redis_url, sim, lateness, args.rate, args.duration,
                        args.warmup, args.partitions, f"{i}{int(time.time())}", extra, args.profile, load,
                        consumer, linger)  # fmt: skip
            results.append(r)
            say(f"  sent {r['sent']:,} ({r['rate']:,.0f}/s), {r['alerts']:,} alerts, {r['matched']:,} timed: "
                f"p50 {r['p50']:.0f} ms, p99 {r['p99']:.0f} ms, max {r['max']:.0f} ms; to the sink: "
                f"p50 {r['sink_p50']:.0f} ms, p99 {r['sink_p99']:.0f} ms; to the broker's ack "
                f"p50 {r['ack_p50']:.0f} ms, p99 {r['ack_p99']:.0f} ms; from it p50 {r['from_ack_p50']:.0f} ms, "
                f"p99 {r['from_ack_p99']:.0f} ms; engine p50 <= {r['engine_p50']:.0f} ms, "
                f"p99 <= {r['engine_p99']:.0f} ms; "
                f"demandsense CPU {r['cpu_share']:.0%} of a core; producer behind by up to "
                f"{r['producer_behind_s']:.1f} s; "
                f"load average {r['loadavg']:.1f}, CPU pressure {r['cpu_pressure']:.0%}")  # fmt: skip
    report = render(results, args)
    print(report)
    previous = Path(__file__).parent / "results" / "latency.md"
    text = previous.read_text() if previous.exists() else ""
    if FINDINGS in text:  # the hand-written analysis is kept across runs
        report += "\n\n" + text[text.index(FINDINGS) :].rstrip()
    say(f"wrote {write_result('latency', 'Latency', report)}")
    return 0


def _ms(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:,.0f}"


def render(results: list[dict], args) -> str:
    from operators.policy import Detection

    rows = []
    for r in results:
        name = f"{r['lateness']:g} s" + (" (default)" if r["default"] else "")
        name += "".join(f", {k} = {v:g} s" if isinstance(v, float) else f", {k} = {v}" for k, v in r["extra"])
        name += "" if r["views"] else "; **Redis views off**"
        name += "; replay load" if r["load"] == "replay" else ""
        name += "".join(f"; input `{k}` = {v}" for k, v in r["consumer"].items())
        name += f"; **producer `linger.ms` = {r['linger_ms']:g}**" if r["linger_ms"] != LINGER_MS else ""
        types = ", ".join(f"{k} {v:,}" for k, v in sorted(r["by_type"].items()))
        timed = f"{r['matched']:,}" + (f" ({types})" if types else "")
        rows.append([name, fmt_rate(r["rate"]), f"{r['producer_behind_s']:.1f}", timed,
                     _ms(r["p50"]), _ms(r["p99"]), _ms(r["max"]),
                     f"{_ms(r['p99_first_third'])} / {_ms(r['p99_last_third'])}",
                     f"{_ms(r['ack_p50'])} / {_ms(r['ack_p99'])}",
                     f"{_ms(r['from_ack_p50'])} / {_ms(r['from_ack_p99'])}",
                     f"<= {_ms(r['engine_p50'])} / <= {_ms(r['engine_p99'])}", f"{r['cpu_share']:.0%}",
                     f"{r['broker_cpu_share']:.0%}", _ms(r["broker_rtt_end"]),
                     f"{r['loadavg']:.1f} / {r['cpu_pressure']:.0%}",
                     "yes" if r["p99"] < 500 else "**no**"])  # fmt: skip
    return "\n".join([
        f"Steady load of {args.rate:,.0f} events/s (simulated sales and inventory of 10 stores x 2,000 SKUs with "
        f"event time = now, plus an OUT_OF_STOCK probe every 100 ms) for {args.duration:g} s (plus the lateness) "
        f"per policy into input topics of {args.partitions} partitions. 'Steady' load: the stores take turns, one "
        "record each, so each store carries a tenth of the load; 'replay' load: the chain's rows in event-time "
        "order, which runs the simulated days ~6,800x faster than real time, so every store goes quiet for "
        "seconds at a time (its nights). `demandsense run` with metrics on and Redis views on unless marked. "
        "Latency = alert's Kafka timestamp - event time (= Kafka timestamp) of the record "
        f"that caused it, matched by (store, sku, event time); the first {args.warmup:g} s of load are left out; "
        "alerts of the time-driven checks (no causing record) are not timed; 'first / last third' splits the "
        "timed alerts by the event time of their causing record into thirds of the measured load. 'engine' is "
        "the process's own "
        "`demandsense_event_to_alert_seconds` histogram (bucket upper bounds): alert emission minus the newest "
        "event time of the batch that released it, i.e. the path from the producer to the store state without "
        "the wait for the store's watermark. 'To the broker's ack': from the causing record's event time to the "
        "delivery report of its produce (the benchmark's producer queue and the broker's append); 'ack to alert': "
        "from that report to the alert's timestamp, i.e. what is left for demandsense (fetch included). "
        "'Producer `linger.ms`': how long the benchmark's producer gathers records into a batch (librdkafka's "
        "default, 5 ms, unless marked); it is part of the measured latency, and larger batches are fewer objects "
        "for the embedded broker to list on every fetch (`python -m bench.broker`). 'Producer behind': how far "
        "the benchmark's own paced producer fell "
        "behind its schedule (CPU contention on the shared machine). 'Broker round trip at the end': the input "
        "consumer's mean request round trip to the broker over the last 5 s of load (`demandsense_broker_rtt_seconds`; "
        "a fetch with nothing to read is held 50 ms); the embedded broker's fetch gets slower as a partition "
        "holds more record batches (`python -m bench.broker`). The load average and the CPU pressure "
        "(the share of time some runnable task waited for a CPU, `/proc/pressure/cpu`) are taken at the end of "
        "each run.",
        "",
        table(["policy [detection]", "events/s sent", "producer behind (max s)", "alerts timed", "p50 ms", "p99 ms",
               "max ms", "p99 first / last third of the load ms", "to the broker's ack p50 / p99 ms",
               "ack to alert p50 / p99 ms",
               "engine p50 / p99 ms", "demandsense CPU (of one core)", "broker CPU (of one core)",
               "broker round trip at the end (ms)",
               "load average / CPU pressure (1 min)",
               "p99 < 500 ms"], rows),  # fmt: skip
        "",
        "A store applies an event only once its watermark has passed it: the newest event time of its slowest "
        "*active* input stream (a topic partition that carried one of the store's events within `stream_idle_s`, "
        f"{Detection().stream_idle_s:g} s by default), minus `allowed_lateness_s`, and the event must be strictly "
        "before it. So the latency of an alert is the allowed lateness plus the time until every active stream of "
        "that store, its own included, has carried a later event *of the same store*, or has gone quiet for "
        "`stream_idle_s` of the store's event time. With the default 300 s lateness every alert waits at least "
        "300 s by design.",
    ])  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
