"""Detection quality: demandsense's decision layer against retail baselines, on simulated ground truth.

    python -m bench.detection [--seeds 1 2 3] [--stores 4] [--skus 250] [--days 10] [--quick]

For every seed and scenario mix (:data:`MIXES`) it simulates a run (``demandsense.simulate``),
feeds it through ``operators.store.StoreState`` per store exactly as ``demandsense replay`` does
(same merge order, same 2,000-line batches, same validation; ``--verify-replay SEED`` checks that
against the command line), runs the baselines of :mod:`bench.baselines` on the same data, and
scores every alarm against the labels: recall, detection delay, false alarms per 1,000 active
SKU-store-days, by item pace; STOCKOUT_RISK lead time and replenishment triggers. Threshold sweeps
of each method give the delay/false-alarm trade-off plotted in ``detection.png``; the figures and
the goals go to ``detection.md`` (``bench/results/``; ``bench/out/quick/`` with ``--quick``).
Definitions are in ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from bench.baselines import DROP, OOS, PHANTOM, SPIKE, StaticRule, drift_alarms, static_daily
from demandsense.evaluate import ms
from demandsense.simulate import SimConfig, Simulation, generate, write_files
from demandsense.validate import VALIDATORS
from operators.events import COUNT_TYPES, Alert, Event, Origin, Trigger
from operators.policy import Detection, Policy
from operators.store import StoreState

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
OUT = ROOT / "bench" / "out"
MINUTE_MS, HOUR_MS = 60_000, 3_600_000
DAY_MS = 24 * HOUR_MS
RISK = "STOCKOUT_RISK"
RATE_TYPES = (SPIKE, DROP, PHANTOM)
EXPECTED = {SPIKE: SPIKE, DROP: DROP, PHANTOM: PHANTOM, RISK: "STOCKOUT", OOS: "STOCKOUT"}  # alert -> scenario
RISK_LEAD_H = 48.0  # a STOCKOUT_RISK counts from this long before the shelf empties (as demandsense.evaluate)
MASK_MS = 3 * HOUR_MS  # a miss is "masked" when an alert of the type opened this long before the start
SPIKE_GRACE_H = 24.0  # a spike alert counts until this long after the spike window (as demandsense.evaluate)
BATCH_LINES = 2000  # lines per source batch of `demandsense replay` (flows.sources.FileBatchSource)
SHORT = {SPIKE: "spike", DROP: "drop", PHANTOM: "phantom", RISK: "risk", OOS: "out-of-stock"}
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
BANDS = ("sparse", "slow", "2-12/h", "12-20/h", "20+/h")
BAND_TEXT = {
    "sparse": "sparse (<=1 unit/day)",
    "slow": "slow (1/day-2/h)",
    "2-12/h": "2-12/h",
    "12-20/h": "12-20/h",
    "20+/h": "20+/h",
}


def band_of(per_open_hour: float, per_day: float) -> str:
    """Pace band of an item from its units per open hour and per day."""
    if per_day <= 1:
        return "sparse"
    if per_open_hour < 2:
        return "slow"
    if per_open_hour < 12:
        return "2-12/h"
    return "12-20/h" if per_open_hour < 20 else "20+/h"


# -- scenario mixes -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mix:
    """A family of simulator runs: SimConfig fields beyond stores, SKUs, days and seed."""

    name: str
    text: str
    overrides: tuple[tuple[str, float], ...] = ()
    sku_share: float = 1.0  # of --skus

    def config(self, seed: int, stores: int, skus: int, days: float) -> SimConfig:
        """The simulator configuration of this mix for one seed."""
        n = max(8, round(skus * self.sku_share))
        return SimConfig(stores=stores, skus=n, days=days, seed=seed, **dict(self.overrides))


MIXES = (
    Mix(
        "longtail",
        "the simulator's defaults: a long tail (median item 0.4 units/day, SKU popularity lognormal "
        "sigma 1.9; two thirds of items sell under a unit a day, the top ones dozens an hour), weekly "
        "and intraday seasonality, stores closed at night, promotions, 2% of items per scenario type, "
        "0.5% duplicates, 0.5% out of order, 0.1% late",
    ),
    Mix(
        "fast",
        "fast movers: the same model with a median item of 150 units/day and popularity sigma 0.8, a "
        "sixth of --skus, and 10% of items per scenario type, so that scenario items sell 2-40 units an "
        "open hour and the 12-20/h and 20+/h bands have labels",
        (("median_units_per_day", 150.0), ("rate_sigma", 0.8), ("scenario_rate", 0.1)),
        1 / 6,
    ),
    Mix(
        "fast-poisson",
        "diagnostic, not run by default: the fast mix with Poisson days (gamma shape 1e6 instead of 4: no "
        "busy or quiet days), to measure how much of the false alarms the day-level over-dispersion causes",
        (("median_units_per_day", 150.0), ("rate_sigma", 0.8), ("scenario_rate", 0.1), ("dispersion", 1e6)),
        1 / 6,
    ),
)
DEFAULT_MIXES = ("longtail", "fast")


# -- demandsense, as `demandsense replay` runs it ---------------------------------------------------
def replay_batches(sim: Simulation, batch_lines: int = BATCH_LINES) -> Iterator[list[tuple[str, str, int, dict]]]:
    """The source batches ``demandsense replay`` reads from ``write_files(sim)``'s files.

    As :func:`flows.sources.merged_records`: item params first, then inventory and sales lines
    merged by event time (each file in its own arrival order, ties to inventory); as
    ``FileBatchSource``: a batch every ``batch_lines`` lines, each line ``(kind, source, line number,
    record dict)``.
    """
    files = (
        ("ItemParams", "items.jsonl", sim.items),
        ("InventoryEvent", "inventory.jsonl", sim.inventory),
        ("Sale", "sales.jsonl", sim.sales),
    )

    def lines(kind: str, name: str, records: Sequence[dict]) -> Iterator[tuple[float, str, str, int, dict]]:
        for i, rec in enumerate(records, start=1):
            yield (-1.0 if kind == "ItemParams" else float(rec["event_time"])), kind, name, i, rec

    merged = heapq.merge(*(lines(*f) for f in files), key=itemgetter(0))
    while batch := [line[1:] for line in itertools.islice(merged, batch_lines)]:
        yield batch


def store_calls(sim: Simulation, max_quantity: int | None = None) -> tuple[list[tuple[str, list[Event]]], int]:
    """The ``(store_id, events)`` calls ``demandsense replay`` makes, in order, and the invalid records.

    Each record goes through the validator ``demandsense.validate.read_event`` applies after
    decoding JSON, with the same ``Origin`` (file, partition -1, line); each batch is split by
    store, as the flow's decoder does. Events are immutable, so one list serves many runs.
    """
    now_ms = int(time.time() * 1000)
    calls: list[tuple[str, list[Event]]] = []
    invalid = 0
    for batch in replay_batches(sim):
        by_store: dict[str, list[Event]] = {}
        for kind, name, line, rec in batch:
            try:
                ev = VALIDATORS[kind](rec, now_ms, max_quantity, Origin(name, -1, line))
            except Exception:
                invalid += 1
                continue
            by_store.setdefault(ev.store_id, []).append(ev)
        calls += by_store.items()
    return calls, invalid


def run_demandsense(
    sim: Simulation, policy: Policy, calls: tuple[list[tuple[str, list[Event]]], int] | None = None
) -> tuple[list[Alert], list[Trigger], int]:
    """Alerts, triggers and dead letters (count) of the decision layer over ``sim``, as replay gives.

    Every store's ``StoreState.on_events`` gets that store's part of each source batch group, in
    order (:func:`store_calls`, or ``calls`` made by it before), then ``flush`` at the end of input.
    """
    calls = calls or store_calls(sim, policy.max_quantity)
    stores: dict[str, StoreState] = {}
    alerts: list[Alert] = []
    triggers: list[Trigger] = []
    dead = calls[1]
    for sid, events in calls[0]:
        state = stores.get(sid)
        if state is None:
            state = stores[sid] = StoreState(sid)
        out = state.on_events(events, policy)
        alerts += out.alerts
        triggers += out.triggers
        dead += len(out.late)
    for state in stores.values():
        out = state.flush(policy)
        alerts += out.alerts
        triggers += out.triggers
    return alerts, triggers, dead


def verify_replay(seed: int, stores: int, skus: int, days: float, where: Path) -> str:
    """Run ``demandsense replay`` on one simulated run and compare with :func:`run_demandsense`."""
    sim = generate(MIXES[0].config(seed, stores, skus, days))
    where.mkdir(parents=True, exist_ok=True)
    paths = write_files(sim, where, progress=False)
    outs = {k: where / f"out-{k}.jsonl" for k in ("alerts", "triggers", "dead")}
    cmd = [sys.executable, "-m", "demandsense.cli", "replay", "--sales", paths["sales"], "--inventory",
           paths["inventory"], "--items", paths["items"], "--alerts-out", outs["alerts"], "--triggers-out",
           outs["triggers"], "--dead-letter-out", outs["dead"]]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)
    cli_s = time.perf_counter() - t0
    read = {k: [json.loads(x) for x in p.read_text().splitlines()] for k, p in outs.items()}
    t0 = time.perf_counter()
    alerts, triggers, dead = run_demandsense(sim, Policy())
    ours_s = time.perf_counter() - t0

    def akey(a: Any) -> tuple:
        g = a.get if isinstance(a, dict) else lambda k: getattr(a, k)
        return (g("alert_id"), g("status"), g("alert_type"), g("store_id"), g("sku"), ms(g("event_time")),
                g("priority"), g("confidence"))  # fmt: skip

    def tkey(t: Any) -> tuple:
        g = t.get if isinstance(t, dict) else lambda k: getattr(t, k)
        return g("trigger_id"), ms(g("event_time")), g("order_quantity"), g("approval")

    same_a = Counter(map(akey, read["alerts"])) == Counter(map(akey, alerts))
    same_t = Counter(map(tkey, read["triggers"])) == Counter(map(tkey, triggers))
    same_d = len(read["dead"]) == dead
    verdict = "identical" if same_a and same_t and same_d else "DIFFERENT"
    return (
        f"seed {seed}, {stores} stores x {skus} SKUs x {days:g} days ({len(sim.sales) + len(sim.inventory):,} "
        f"events): `demandsense replay` {len(read['alerts'])} alerts, {len(read['triggers'])} triggers, "
        f"{len(read['dead'])} dead letters in {cli_s:.1f} s; in-process {len(alerts)} alerts, {len(triggers)} "
        f"triggers, {dead} dead letters in {ours_s:.1f} s: {verdict} (alert ids, status, type, item, event "
        f"time, priority, confidence; trigger ids, times, quantities, approvals)"
    )


# -- one prepared run: the series the baselines and the scoring need ---------------------------------
@dataclass
class Label:
    scenario: str
    item: int
    start: int
    end: int | None
    band: str
    rate: float  # the simulator's baseline_rate_per_hour
    risk_from: int | None  # stockouts: when the simulator withheld the order
    drain_from: int  # last receipt before a stockout (or the run start): a trigger after it is for this drain
    lead_h: float


@dataclass
class Run:
    mix: str
    seed: int
    sim: Simulation
    day0: int
    start: int
    end: int
    n_days: int
    score_from: int  # false alarms and active days count from here (the simulator's warm-up end)
    keys: list[tuple[str, str]]
    band: list[str]
    labelled: list[bool]
    active_days: list[int]  # per item: active days from score_from on
    labels: list[Label]
    daily: np.ndarray  # (items, days) units sold
    promo: np.ndarray  # (items, days) any promoted sale
    stock_eod: np.ndarray  # (items, days) book stock at the end of the day (NaN: unknown)
    hourly: np.ndarray  # (items, hours) units sold
    open_hours: list[np.ndarray]  # per item: indices of the store's open hours

    @property
    def events(self) -> int:
        return len(self.sim.sales) + len(self.sim.inventory)


def prepare(mix: Mix, seed: int, stores: int, skus: int, days: float) -> Run:
    """Simulate one run and build the daily/hourly series, book stock, bands and labels."""
    sim = generate(mix.config(seed, stores, skus, days))
    cfg = sim.config
    start = int(cfg.start.timestamp() * 1000)
    end = start + int(cfg.days * DAY_MS)
    day0 = start - start % DAY_MS
    n_days = -(-(end - day0) // DAY_MS)
    warm = start + int(cfg.warmup_days * DAY_MS if cfg.days >= 3 else (end - start) / 3)
    first_day = -(-(warm - day0) // DAY_MS)
    keys = [(it["store_id"], it["sku"]) for it in sim.items]
    index = {k: i for i, k in enumerate(keys)}
    n = len(keys)

    seen: set[str] = set()
    s_item, s_t, s_q, s_promo = [], [], [], []
    store_hours: dict[str, set[int]] = defaultdict(set)
    per_item: list[list[tuple[int, int, int, int]]] = [[] for _ in range(n)]  # (t, rank, op, value)
    for rec in sim.sales:
        if rec["event_id"] in seen:  # duplicates: a batch system deduplicates transaction ids too
            continue
        seen.add(rec["event_id"])
        i, t = index[rec["store_id"], rec["sku"]], rec["event_time"]
        s_item.append(i)
        s_t.append(t)
        s_q.append(rec["quantity"])
        s_promo.append(rec["promo_id"] is not None)
        per_item[i].append((t, 1, 1, -rec["quantity"]))
        if rec["channel"] == "STORE":
            store_hours[rec["store_id"]].add((t % DAY_MS) // HOUR_MS)
    receipts: list[list[int]] = [[] for _ in range(n)]
    for rec in sim.inventory:
        i, t, kind = index[rec["store_id"], rec["sku"]], rec["event_time"], rec["event_type"]
        if kind in COUNT_TYPES:
            per_item[i].append((t, 0, 0, rec["on_hand"]))
        elif not kind.startswith("RESERVATION"):
            per_item[i].append((t, 0, 1, rec["quantity"]))
        if kind == "RECEIPT":
            receipts[i].append(t)

    item, tt, qq = np.array(s_item, np.int64), np.array(s_t, np.int64), np.array(s_q, np.float64)
    hour = (tt - day0) // HOUR_MS
    hourly = np.zeros((n, n_days * 24))
    np.add.at(hourly, (item, hour), qq)
    daily = hourly.reshape(n, n_days, 24).sum(axis=2)
    promo = np.zeros((n, n_days), bool)
    pm = np.array(s_promo, bool)
    promo[item[pm], hour[pm] // 24] = True

    stock_eod = np.full((n, n_days), np.nan)
    for i, evs in enumerate(per_item):
        evs.sort()
        stock: float | None = None
        d = 0
        for t, _, op, v in evs:
            while d < min((t - day0) // DAY_MS, n_days):
                stock_eod[i, d] = np.nan if stock is None else stock
                d += 1
            stock = v if op == 0 else (None if stock is None else max(0, stock + v))
        while d < n_days:
            stock_eod[i, d] = np.nan if stock is None else stock
            d += 1

    hours_of: dict[str, np.ndarray] = {}
    open_h: dict[str, int] = {}
    for sid in {k[0] for k in keys}:
        hs = store_hours.get(sid) or set(range(8, 22))
        lo, hi = min(hs), max(hs)
        open_h[sid] = hi - lo + 1
        hours_of[sid] = np.array([d * 24 + h for d in range(n_days) for h in range(lo, hi + 1)], np.int64)

    labels: list[Label] = []
    labelled = [False] * n
    for lab in sim.labels:
        i = index[lab["store_id"], lab["sku"]]
        labelled[i] = True
        t0 = ms(lab["start"])
        rate = float(lab["baseline_rate_per_hour"])
        drain = max([r for r in receipts[i] if r < t0], default=start)
        labels.append(
            Label(
                lab["scenario"], i, t0, ms(lab["end"]) if lab.get("end") else None,
                band_of(rate, rate * open_h[lab["store_id"]]), rate,
                ms(lab["risk_from"]) if lab.get("risk_from") else None, drain,
                float(sim.items[i].get("lead_time_hours") or 48.0),
            )
        )  # fmt: skip

    band, active = [], []
    for i, (sid, _) in enumerate(keys):
        per_day = daily[i].sum() / cfg.days
        band.append(band_of(per_day / open_h[sid], per_day))
        prev = np.concatenate(([stock_eod[i, 0]], stock_eod[i, :-1]))
        act = (daily[i] > 0) | (np.nan_to_num(stock_eod[i]) > 0) | (np.nan_to_num(prev) > 0)
        active.append(int(act[first_day:].sum()))
    return Run(
        mix.name, seed, sim, day0, start, end, n_days, day0 + first_day * DAY_MS, keys, band, labelled, active,
        labels, daily, promo, stock_eod, hourly, [hours_of[k[0]] for k in keys],
    )  # fmt: skip


# -- scoring --------------------------------------------------------------------------------------
@dataclass
class Tally:
    """Counts of one method and setting, summed over runs; see bench/README.md for the definitions."""

    n: Counter = field(default_factory=Counter)  # (alert type, band) -> labels
    hit: Counter = field(default_factory=Counter)  # (alert type, band) -> labels detected
    delays: dict = field(default_factory=lambda: defaultdict(list))  # (alert type, band) -> minutes
    fa: Counter = field(default_factory=Counter)  # (alert type, band) -> false alarms
    days: Counter = field(default_factory=Counter)  # band -> active SKU-store-days of unlabelled items
    stock: list = field(default_factory=list)  # per stockout: (band, risk delay, oos delay, trigger lead h, lead h)
    fa_day: Counter = field(default_factory=Counter)  # (alert type, weekday of the false alarm) -> count
    masked: Counter = field(default_factory=Counter)  # (alert type, band) -> missed, the type opened just before
    risk_noise: int = 0  # STOCKOUT_RISK OPENs on items without a scenario, from the warm-up end

    def add(self, other: Tally) -> Tally:
        self.n.update(other.n)
        self.hit.update(other.hit)
        for k, v in other.delays.items():
            self.delays[k] += v
        self.fa.update(other.fa)
        self.days.update(other.days)
        self.stock += other.stock
        self.fa_day.update(other.fa_day)
        self.masked.update(other.masked)
        self.risk_noise += other.risk_noise
        return self

    def labels(self, kind: str, bands: Sequence[str] | None = None) -> int:
        return sum(self.n[kind, b] for b in _sel(bands))

    def recall(self, kind: str, bands: Sequence[str] | None = None) -> float:
        n = self.labels(kind, bands)
        return sum(self.hit[kind, b] for b in _sel(bands)) / n if n else float("nan")

    def delay(self, kind: str, bands: Sequence[str] | None = None, q: float = 0.5) -> float:
        """Quantile of minutes from scenario start to the first detecting alarm (negative: before)."""
        d = sorted(x for b in _sel(bands) for x in self.delays.get((kind, b), ()))
        if not d:
            return float("nan")
        return float(np.median(d)) if q == 0.5 else d[min(len(d) - 1, int(q * len(d)))]

    def fa_rate(self, kinds: Sequence[str], bands: Sequence[str] | None = None) -> float:
        """False alarms of ``kinds`` per 1,000 active SKU-store-days."""
        bs = _sel(bands)
        days = sum(self.days[b] for b in bs)
        return 1000 * sum(self.fa[k, b] for k in kinds for b in bs) / days if days else float("nan")


def _sel(bands: Sequence[str] | None) -> list[str]:
    return list(BANDS) if bands is None else list(bands)


def score(run: Run, opens: Sequence[tuple[int, int, str]], triggers: Sequence[tuple[int, int]] = ()) -> Tally:
    """Score OPENs ``(item, event time, alert type)`` and triggers ``(item, time)`` of one run."""
    tally = Tally()
    by_item: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for i, t, kind in opens:
        by_item[i].append((t, kind))
    trig: dict[int, list[int]] = defaultdict(list)
    for i, t in triggers:
        trig[i].append(t)
    for lab in run.labels:
        alarms = sorted(by_item.get(lab.item, ()))
        delays: dict[str, float] = {}
        for kind, scenario in EXPECTED.items():
            if scenario != lab.scenario:
                continue
            earliest = lab.start
            if kind == RISK:  # from 48 h before the shelf empties, or from when the order was withheld
                earliest -= int(RISK_LEAD_H * HOUR_MS)
                earliest = min(earliest, lab.risk_from) if lab.risk_from is not None else earliest
            latest = lab.end + int(SPIKE_GRACE_H * HOUR_MS) if lab.end is not None else math.inf
            first = next((t for t, k in alarms if k == kind and earliest <= t <= latest), None)
            # "1+/h" is an extra, overlapping group (not one of BANDS) for the goal on items selling 1+/h
            groups = (lab.band, "1+/h") if lab.rate >= 1 else (lab.band,)
            for g in groups:
                tally.n[kind, g] += 1
            if first is None and any(k == kind and lab.start - MASK_MS <= t < lab.start for t, k in alarms):
                for g in groups:
                    tally.masked[kind, g] += 1
            if first is not None:
                delays[kind] = (first - lab.start) / MINUTE_MS
                for g in groups:
                    tally.hit[kind, g] += 1
                    tally.delays[kind, g].append(delays[kind])
        if lab.scenario == "STOCKOUT":
            first_trig = min((t for t in trig.get(lab.item, ()) if lab.drain_from <= t < lab.start), default=None)
            lead = None if first_trig is None else (lab.start - first_trig) / HOUR_MS
            tally.stock.append((lab.band, delays.get(RISK), delays.get(OOS), lead, lab.lead_h))
    for i, t, kind in opens:
        if kind == RISK and not run.labelled[i] and run.score_from <= t <= run.end:
            tally.risk_noise += 1
        if kind in RATE_TYPES and not run.labelled[i] and run.score_from <= t <= run.end:
            tally.fa[kind, run.band[i]] += 1
            tally.fa_day[kind, WEEKDAYS[(t // DAY_MS + 3) % 7]] += 1  # epoch day 0 was a Thursday
    for i, b in enumerate(run.band):
        if not run.labelled[i]:
            tally.days[b] += run.active_days[i]
    return tally


# -- methods --------------------------------------------------------------------------------------
DEFAULT_DETECTION = Detection()
SCALES = (0.6, 0.8, 1.0, 1.3, 1.6)
STATIC_RULES = tuple(StaticRule(multiplier=m) for m in (1.5, 2.0, 2.5, 3.0, 4.0)) + tuple(
    StaticRule(silent_days=d) for d in (1, 3, 4)
)
ADWIN_DELTAS = (1e-6, 1e-4, 0.002, 0.02, 0.2)
PH_THRESHOLDS = (10.0, 25.0, 50.0, 100.0, 200.0)
COVERS = {
    "demandsense": (SPIKE, DROP, PHANTOM, RISK, OOS),
    "static": (SPIKE, DROP, PHANTOM, OOS),
    "ADWIN": (SPIKE, DROP),
    "PageHinkley": (SPIKE, DROP),
}
DEFAULTS = {"demandsense": "x1", "static": StaticRule().label, "ADWIN": "delta=0.002", "PageHinkley": "threshold=50"}


def scaled(scale: float) -> dict[str, float]:
    """Detection thresholds of the sweep: spike, drop and phantom thresholds x ``scale``."""
    d = DEFAULT_DETECTION
    return {
        "spike_threshold": d.spike_threshold * scale,
        "drop_threshold": d.drop_threshold * scale,
        "phantom_threshold": d.phantom_threshold * scale,
    }


def demandsense_opens(run: Run, overrides: dict[str, float]) -> tuple[list, list, int]:
    """OPENs and triggers of demandsense with ``Detection(**overrides)`` on ``run``."""
    policy = Policy(detection=Detection(**overrides))
    key = (run.mix, run.seed)
    if key not in _CALLS:  # decoded once per worker process and run
        _CALLS.clear()
        _CALLS[key] = store_calls(run.sim)
    alerts, triggers, _ = run_demandsense(run.sim, policy, _CALLS[key])
    index = {k: i for i, k in enumerate(run.keys)}
    opens = [(index[a.store_id, a.sku], a.event_time, a.alert_type) for a in alerts if a.status == "OPEN"]
    trig = [(index[t.store_id, t.sku], t.event_time) for t in triggers]
    return opens, trig, len(alerts)


def static_opens(run: Run, rule: StaticRule) -> list[tuple[int, int, str]]:
    """OPENs of the nightly rule; an alarm for day d is raised at the end of day d (midnight UTC)."""
    out = []
    for i in range(len(run.keys)):
        if not run.daily[i].any():
            continue
        for d, kind in static_daily(run.daily[i].tolist(), run.stock_eod[i].tolist(), run.promo[i].tolist(), rule):
            out.append((i, min(run.day0 + (d + 1) * DAY_MS, run.end), kind))
    return out


def river_opens(run: Run, make: Any) -> list[tuple[int, int, str]]:
    """OPENs of a River detector per item on units sold per open hour, raised at the end of the hour."""
    out = []
    for i in range(len(run.keys)):
        hours = run.open_hours[i]
        values = run.hourly[i, hours]
        if not values.any():
            continue
        for j, kind in drift_alarms(values.tolist(), make):
            t = run.day0 + (int(hours[j]) + 1) * HOUR_MS
            if t <= run.end:
                out.append((i, t, kind))
    return out


def _adwin(delta: float) -> Any:
    from river.drift import ADWIN

    return lambda: ADWIN(delta=delta)


def _ph(threshold: float) -> Any:
    from river.drift import PageHinkley

    return lambda: PageHinkley(threshold=threshold)


# -- tasks (run in worker processes that share the prepared runs by fork) ---------------------------
RUNS: dict[tuple[str, int], Run] = {}
_CALLS: dict[tuple[str, int], tuple[list[tuple[str, list[Event]]], int]] = {}


@dataclass
class Config:
    seeds: list[int]
    mixes: tuple[Mix, ...]
    stores: int
    skus: int
    days: float
    scales: tuple[float, ...] = SCALES
    static: tuple[StaticRule, ...] = STATIC_RULES
    adwin: tuple[float, ...] = ADWIN_DELTAS
    ph: tuple[float, ...] = PH_THRESHOLDS
    variants: dict[str, dict[str, float]] = field(default_factory=dict)
    baselines: bool = True


def _task(task: tuple) -> tuple[list[tuple[str, str, str, Tally]], str, float]:
    kind, key, *rest = task
    run = RUNS[key]
    t0 = time.perf_counter()
    out = []
    if kind == "ds":
        label, overrides = rest
        opens, trig, n_alerts = demandsense_opens(run, overrides)
        out.append(("demandsense", label, run.mix, score(run, opens, trig)))
        what = f"demandsense {label} on {run.mix} seed {run.seed} ({run.events:,} events, {n_alerts} alerts)"
    else:
        static, adwin, ph = rest
        for rule in static:
            out.append(("static", rule.label, run.mix, score(run, static_opens(run, rule))))
        for delta in adwin:
            out.append(("ADWIN", f"delta={delta:g}", run.mix, score(run, river_opens(run, _adwin(delta)))))
        for thr in ph:
            out.append(("PageHinkley", f"threshold={thr:g}", run.mix, score(run, river_opens(run, _ph(thr)))))
        what = f"baselines on {run.mix} seed {run.seed}"
    return out, what, time.perf_counter() - t0


def run_all(cfg: Config, workers: int) -> tuple[dict, dict]:
    """Every method and setting on every run: ``{(method, setting): {mix: Tally}}`` and run facts."""
    facts: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    for mix in cfg.mixes:
        for seed in cfg.seeds:
            t0 = time.perf_counter()
            run = RUNS[mix.name, seed] = prepare(mix, seed, cfg.stores, cfg.skus, cfg.days)
            f = facts[mix.name]
            f["runs"] += 1
            f["items"] += len(run.keys)
            f["events"] += run.events
            for lab in run.labels:
                f[f"{lab.scenario} {lab.band}"] += 1
            for d in range((run.score_from - run.day0) // DAY_MS, run.n_days):
                f[f"day {WEEKDAYS[((run.day0 + d * DAY_MS) // DAY_MS + 3) % 7]}"] += len({k[0] for k in run.keys})
            _say(f"simulated {mix.name} seed {seed}: {len(run.keys)} items, {run.events:,} events, "
                 f"{len(run.labels)} labels ({time.perf_counter() - t0:.1f} s)")  # fmt: skip
    tasks: list[tuple] = []
    settings = [(f"x{s:g}", scaled(s)) for s in cfg.scales] + [(n, scaled(1.0) | o) for n, o in cfg.variants.items()]
    for key in sorted(RUNS, key=lambda k: -RUNS[k].events):
        tasks += [("ds", key, label, o) for label, o in settings]
        if cfg.baselines:
            tasks.append(("base", key, cfg.static, cfg.adwin, cfg.ph))
    results: dict[tuple[str, str], dict[str, Tally]] = defaultdict(dict)
    ctx = mp.get_context("fork")
    t0 = time.perf_counter()
    with ctx.Pool(workers) as pool:
        for n, (out, what, secs) in enumerate(pool.imap_unordered(_task, tasks), start=1):
            for method, setting, mix, tally in out:
                results[method, setting].setdefault(mix, Tally()).add(tally)
            _say(f"[{n}/{len(tasks)}] {what}: {secs:.1f} s (elapsed {time.perf_counter() - t0:.0f} s)")
    RUNS.clear()
    return results, {k: dict(v) for k, v in facts.items()}


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- report ---------------------------------------------------------------------------------------
def merged(per_mix: dict[str, Tally]) -> Tally:
    out = Tally()
    for t in per_mix.values():
        out.add(t)
    return out


def _f(x: float, nd: int = 0) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{nd}f}"


def _cell(t: Tally, kind: str, bands: Sequence[str] | None) -> str:
    n = t.labels(kind, bands)
    if not n:
        return ""
    return f"{_f(t.recall(kind, bands), 2)} ({n}) · {_f(t.delay(kind, bands))} / {_f(t.delay(kind, bands, 0.9))}"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def cusum_minutes(rate_units_h: float, ratio: float, h: float, basket: float = 1.3) -> float:
    """Expected minutes for a Poisson CUSUM tuned to ``ratio`` to reach ``h`` after a change to it.

    Wald's approximation, h / KL(post || pre) per hour, on transactions (``basket`` units each):
    the fastest a sales-only detector with that threshold can be on average.
    """
    lam = rate_units_h / basket
    return 60 * h / (lam * (ratio * math.log(ratio) - ratio + 1))


def _h(kind: str, rate_units_h: float, det: Detection = DEFAULT_DETECTION, basket: float = 1.3) -> float:
    """demandsense's default threshold for an item at this pace (``operators/item.py``, 15 open hours a day)."""
    per_day = rate_units_h / basket * 15
    pace = math.log(max(1.0, per_day / det.threshold_rate_per_day))
    if kind == SPIKE:
        return det.spike_threshold + pace
    if kind == DROP:
        return det.drop_threshold + pace
    return max(det.phantom_threshold, math.log(per_day / det.phantom_false_alarms_per_day))


def bound_text(kind: str, rates: Sequence[float]) -> str:
    """What the information in the sales allows at demandsense's default thresholds."""
    parts = []
    for r in rates:
        h = _h(kind, r)
        if kind == PHANTOM:
            minutes = 60 * h / (r / 1.3)
        else:
            minutes = cusum_minutes(r, 3.0 if kind == SPIKE else 0.25, h)
        parts.append(f"{minutes:,.0f} min at {r:g}/h")
    return ", ".join(parts)


def goals(t: Tally, catalogue: Tally | None = None) -> list[tuple[str, str, str, str]]:
    """(goal, measured, verdict, why) for demandsense's default setting.

    ``t`` pools every mix; the false-alarm budget is judged on ``catalogue`` (the long-tail mix, a
    realistic catalogue; the fast mix over-represents fast movers), when given.
    """
    rows = []
    cat = catalogue or t
    fa_all = cat.fa_rate(RATE_TYPES)
    per_type = ", ".join(f"{SHORT[k]} {_f(cat.fa_rate([k]), 1)}" for k in RATE_TYPES)
    by_band = ", ".join(f"{b} {_f(t.fa_rate(RATE_TYPES, [b]), 1)}" for b in BANDS if t.days[b])
    rows.append((
        "<= 20 false alarms / 1,000 active SKU-store-days (spike + drop + phantom)",
        f"{_f(fa_all, 1)} on the long-tail catalogue ({per_type}); all mixes pooled {_f(t.fa_rate(RATE_TYPES), 1)}",
        "met" if fa_all <= 20 else "not met",
        f"by item pace (pooled): {by_band}",
    ))  # fmt: skip

    def rd(kind: str, bands: Sequence[str], rec_goal: float, med_goal: float, rates: Sequence[float]) -> tuple:
        r, m, n = t.recall(kind, bands), t.delay(kind, bands), t.labels(kind, bands)
        if not n:
            return "no labels", "n/a", "no scenario item in these bands"
        ok = r >= rec_goal and m <= med_goal
        why = []
        if not r >= rec_goal:
            why.append(f"recall {_f(r, 2)} < {rec_goal}")
        if not m <= med_goal:
            why.append(f"median {_f(m)} min > {med_goal:g} min")
        masked = sum(t.masked[kind, b] for b in _sel(bands))
        if masked:
            why.append(f"{masked} of the {n - round(r * n)} misses had a {kind} opened in the 3 h before the start")
        if why:
            why.append(f"a sales-only CUSUM at the default threshold needs on average {bound_text(kind, rates)}")
        return (
            f"recall {_f(r, 2)} (n={n}), median {_f(m)} min, p90 {_f(t.delay(kind, bands, 0.9))} min",
            ("met" if ok else "not met"),
            "; ".join(why),
        )

    rows.append(("3x spike, 20+/h: recall >= 0.9, median <= 10 min", *rd(SPIKE, ["20+/h"], 0.9, 10, [20, 40])))
    rows.append(("3x spike, 2-12/h: recall >= 0.9, median <= 45 min", *rd(SPIKE, ["2-12/h"], 0.9, 45, [2, 6, 12])))
    rows.append(("drop to 1/4 (all items): recall >= 0.9, median <= 2 h", *rd(DROP, None, 0.9, 120, [0.5, 2, 12])))
    rows.append(("drop to 1/4, 2+/h items", *rd(DROP, ["2-12/h", "12-20/h", "20+/h"], 0.9, 120, [2, 12, 20])))
    rows.append((
        "phantom, items 1+/h: median <= 2 h (recall >= 0.9)",
        *rd(PHANTOM, ["1+/h"], 0.9, 120, [1, 2, 12]),
    ))  # fmt: skip
    st = t.stock
    if st:
        n = len(st)
        ahead = sum(1 for s in st if s[1] is not None and s[1] <= -60) / n
        oos = sum(1 for s in st if s[2] is not None) / n
        oos_med = float(np.median([s[2] for s in st if s[2] is not None])) if oos else float("nan")
        trig = sum(1 for s in st if s[3] is not None) / n
        in_time = sum(1 for s in st if s[3] is not None and s[3] >= s[4]) / n
        late = [s for s in st if s[1] is None or s[1] > -60]
        slow = sum(1 for s in late if s[0] in ("sparse", "slow"))
        rows.append((
            "STOCKOUT_RISK >= 1 h before the shelf empties, for 90%",
            f"{ahead:.0%} of {n}", "met" if ahead >= 0.9 else "not met",
            f"{slow} of the {len(late)} late or missing are items selling under 2 units/h" if late else "",
        ))  # fmt: skip
        rows.append((
            "OUT_OF_STOCK when the shelf empties (recall >= 0.9, median <= 15 min)",
            f"recall {oos:.2f}, median {_f(oos_med)} min",
            "met" if oos >= 0.9 and oos_med <= 15 else "not met", "",
        ))  # fmt: skip
        rows.append((
            "a replenishment trigger before the shelf empties (90%)",
            f"{trig:.0%} during the final drain; {in_time:.0%} at least a lead time ahead",
            "met" if trig >= 0.9 else "not met", "",
        ))  # fmt: skip
    sparse, fast = t.fa_rate(RATE_TYPES, ["sparse"]), t.fa_rate(RATE_TYPES, ["20+/h"])
    rows.append((
        "sparse items no more false alarms than fast movers (per 1,000 active days)",
        f"sparse {_f(sparse, 1)}, 20+/h {_f(fast, 1)}",
        "met" if not sparse > fast else "not met",
        "",
    ))  # fmt: skip
    return rows


def report(results: dict, facts: dict, cfg: Config, meta: dict, png: Path | None, verify: str | None) -> str:
    """The markdown report."""
    methods = [(m, DEFAULTS[m]) for m in ("demandsense", "static", "ADWIN", "PageHinkley")]
    default = {m: merged(results[m, s]) for m, s in methods if (m, s) in results}
    ds = default["demandsense"]
    out = [
        "# Detection quality",
        "",
        f"Measured {meta['date']} on {meta['machine']} (`uname -m`), nproc {meta['nproc']}, Python "
        f"{meta['python']}; code {meta['commit']}; {meta['seconds']:.0f} s wall with {meta['workers']} workers.",
        f"Command: `{meta['command']}`. Seeds {', '.join(map(str, cfg.seeds))}; {cfg.stores} stores x "
        f"{cfg.skus} SKUs x {cfg.days:g} days per long-tail run. Definitions: `bench/README.md`.",
        "",
        "## Runs",
        "",
    ]
    rows = []
    for mix in cfg.mixes:
        f = facts.get(mix.name, {})
        labs = ", ".join(
            f"{name} {int(sum(v for k, v in f.items() if k.startswith(sc + ' ')))}"
            for sc, name in (
                ("DEMAND_SPIKE", "spike"),
                ("DEMAND_DROP", "drop"),
                ("PHANTOM_INVENTORY", "phantom"),
                ("STOCKOUT", "stockout"),
            )  # fmt: skip
        )
        rows.append((f"`{mix.name}`", mix.text, int(f.get("items", 0)), f"{int(f.get('events', 0)):,}", labs))
    out += [_table(("mix", "what", "SKU-stores", "events", "labels"), rows), ""]
    if verify:
        out += [f"Equivalence with the command line: {verify}.", ""]

    out += [
        "## Detection by alert type and item pace (default settings)",
        "",
        "Cells: recall (labels) · median / p90 delay in minutes of event time from the scenario start to "
        "the first alert of the type. Pace: the simulator's `baseline_rate_per_hour` of the scenario item "
        "(units per open hour). Both mixes pooled. Baselines: static = nightly rule "
        f"`{DEFAULTS['static']}`, ADWIN and Page-Hinkley with River's defaults.",
        "",
    ]
    titles = {SPIKE: "DEMAND_SPIKE (3x for 3-6 h)", DROP: "DEMAND_DROP (to 1/4)", PHANTOM: "PHANTOM_INVENTORY",
              OOS: "OUT_OF_STOCK (delay after the shelf empties)"}  # fmt: skip
    for kind, title in titles.items():
        cols = [m for m in default if kind in COVERS[m]]
        rows = []
        for b in [*BANDS, None]:
            if not ds.labels(kind, [b] if b else None):
                continue
            bs = [b] if b else None
            rows.append([BAND_TEXT[b] if b else "**all**"] + [_cell(default[m], kind, bs) for m in cols])
        out += [f"### {title}", "", _table(["pace", *cols], rows), ""]
        masked = {m: sum(default[m].masked[kind, b] for b in BANDS) for m in cols}
        if any(masked.values()):
            missed = {m: default[m].labels(kind) - sum(default[m].hit[kind, b] for b in BANDS) for m in cols}
            out += [
                "Misses where an alert of the type had opened in the 3 h before the start (an earlier alarm "
                "still open, so no new OPEN): " + ", ".join(f"{m} {masked[m]} of {missed[m]}" for m in cols) + ".",
                "",
            ]

    st = ds.stock
    if st:
        out += ["### Stockouts (demandsense)", ""]
        rows = []
        for b in [*BANDS, None]:
            sel = [s for s in st if b is None or s[0] == b]
            if not sel:
                continue
            risk = [-s[1] / 60 for s in sel if s[1] is not None]
            trig = [s[3] for s in sel if s[3] is not None]
            rows.append((
                BAND_TEXT[b] if b else "**all**", len(sel),
                f"{len(risk) / len(sel):.2f}", _f(float(np.median(risk)) if risk else float("nan"), 1),
                f"{sum(1 for x in risk if x >= 1) / len(sel):.0%}",
                f"{sum(1 for s in sel if s[2] is not None) / len(sel):.2f}",
                _f(float(np.median([s[2] for s in sel if s[2] is not None])) if any(s[2] is not None for s in sel)
                   else float("nan"), 1),
                f"{len(trig) / len(sel):.0%}",
                f"{sum(1 for s in sel if s[3] is not None and s[3] >= s[4]) / len(sel):.0%}",
            ))  # fmt: skip
        out += [
            _table(
                (
                    "pace",
                    "stockouts",
                    "STOCKOUT_RISK recall",
                    "median lead (h)",
                    "risk >= 1 h ahead",
                    "OUT_OF_STOCK recall",
                    "median OOS delay (min)",
                    "trigger in final drain",
                    "trigger >= lead time ahead",
                ),
                rows,
            ),  # fmt: skip
            "",
            "Lead: hours from the first STOCKOUT_RISK (from 48 h before) to the label `start` (the shelf "
            "empties). Final drain: from the item's last receipt before `start`; the simulator withholds the "
            "order, so a demandsense trigger in that window is the order that would have prevented it.",
            "",
        ]

    out += [
        "## False alarms per 1,000 active SKU-store-days (default settings)",
        "",
        "Rate-type OPENs (spike, drop, phantom) on items without a scenario, from the end of the warm-up; "
        "by the item's own pace over the run. Cells: spike / drop / phantom = total.",
        "",
    ]
    rows = []
    for b in [*BANDS, None]:
        bs = [b] if b else None
        days = sum(ds.days[x] for x in (bs or BANDS))
        if not days:
            continue
        cells = []
        for m in default:
            t = default[m]
            parts = "/".join(_f(t.fa_rate([k], bs), 1) for k in RATE_TYPES)
            cells.append(f"{parts} = **{_f(t.fa_rate(RATE_TYPES, bs), 1)}**")
        rows.append([BAND_TEXT[b] if b else "**all**", f"{days:,}", *cells])
    out += [_table(["pace", "active days", *default], rows), ""]
    days = Counter()
    for run_days in facts.values():
        days.update({k: v for k, v in run_days.items() if k.startswith("day ")})
    by_day = ", ".join(
        f"{d} {sum(ds.fa_day[k, d] for k in RATE_TYPES)}/{int(days['day ' + d])}" for d in WEEKDAYS if days["day " + d]
    )
    cat = {m: results[m, DEFAULTS[m]].get("longtail") for m, _ in methods if (m, DEFAULTS[m]) in results}
    out += [
        "Per mix (all paces): "
        + "; ".join(
            f"{mix.name}: "
            + ", ".join(f"{m} {_f(results[m, DEFAULTS[m]][mix.name].fa_rate(RATE_TYPES), 1)}" for m in default)
            for mix in cfg.mixes
            if all(mix.name in results[m, DEFAULTS[m]] for m in default)
        )
        + f". STOCKOUT_RISK OPENs on items without a scenario (not counted above; some are natural stockouts): "
        f"{1000 * ds.risk_noise / max(1, sum(ds.days.values())):.1f} per 1,000 active days.",
        "",
    ]
    out += [f"demandsense's false alarms by weekday (false alarms / scored store-days of that weekday): {by_day}.", ""]

    out += [
        "## Goals (demandsense, default policy)",
        "",
        _table(("goal", "measured", "verdict", "why not / detail"), goals(ds, cat.get("demandsense"))),
        "",
        "## Sensitivity sweeps",
        "",
        "demandsense: spike, drop and phantom thresholds x scale (`Policy(detection=Detection(...))`, the pace "
        "terms unchanged); static: spike/drop multiplier (drop below 1/multiplier) / phantom silent days; ADWIN "
        "`delta`; Page-Hinkley `threshold`. Cells: recall · median delay (min) · false alarms per 1,000 active "
        "SKU-store-days of that type; all paces and mixes pooled. Last column (demandsense): share of stockouts "
        "with STOCKOUT_RISK at least 1 h ahead · STOCKOUT_RISK OPENs per 1,000 active days on items without a "
        "scenario.",
        "",
    ]
    rows = []
    for (m, s), per in sorted(results.items(), key=lambda kv: (_method_order(kv[0][0]), _setting_order(kv[0][1]))):
        t = merged(per)
        cells = []
        for kind in RATE_TYPES:
            if t.labels(kind) and kind in COVERS[m]:
                cells.append(f"{_f(t.recall(kind), 2)} · {_f(t.delay(kind))} · {_f(t.fa_rate([kind]), 1)}")
            else:
                cells.append("")
        variant = m == "demandsense" and s in cfg.variants
        tag = " (default)" if DEFAULTS.get(m) == s else (" (variant)" if variant else "")
        risk = ""
        if m == "demandsense" and t.stock:
            ahead = sum(1 for x in t.stock if x[1] is not None and x[1] <= -60) / len(t.stock)
            risk = f"{ahead:.0%} · {1000 * t.risk_noise / max(1, sum(t.days.values())):.1f}"
        rows.append((m, f"{s}{tag}", *cells, _f(t.fa_rate(RATE_TYPES), 1), risk))
    head = ("method", "setting", "spike", "drop", "phantom", "all FA", "risk >= 1 h ahead · risk OPENs w/o scenario")
    out += [_table(head, rows), ""]
    if cfg.variants:
        out += ["Variants (demandsense at x1 with these Detection overrides):", ""]
        out += [f"- `{n}`: " + ", ".join(f"{k}={v:g}" for k, v in o.items()) for n, o in cfg.variants.items()]
        out += [""]
    if png is not None:
        out += [f"![delay against false alarms]({png.name})", ""]
    return "\n".join(out)


def _method_order(m: str) -> int:
    return ("demandsense", "static", "ADWIN", "PageHinkley").index(m)


def _setting_order(s: str) -> tuple:
    if s.startswith("x"):
        try:
            return (0, float(s[1:]), "")
        except ValueError:
            pass
    if "=" in s:
        return (0, float(s.split("=")[1]), "")
    if "x/" in s:
        mult, days = s.split("x/")
        return (0 if days == f"{StaticRule().silent_days}d" else 1, float(mult), days)
    return (2, 0.0, s)


def plot(results: dict, path: Path, cfg: Config) -> None:
    """Median delay and recall against false alarms, one column per alert type, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    styles = {"demandsense": ("C0", "o"), "static": ("C3", "s"), "ADWIN": ("C2", "^"), "PageHinkley": ("C1", "D")}
    kinds = [(SPIKE, "DEMAND_SPIKE (3x)"), (DROP, "DEMAND_DROP (to 1/4)"), (PHANTOM, "PHANTOM_INVENTORY")]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), sharex="col", gridspec_kw={"height_ratios": [3, 2]})
    for col, (kind, title) in enumerate(kinds):
        top, bottom = axes[0, col], axes[1, col]
        for m, (color, marker) in styles.items():
            pts = []
            for (mm, s), per in results.items():
                if mm != m or (m == "demandsense" and s in cfg.variants):
                    continue
                if m == "static" and kind != PHANTOM and not s.endswith(f"x/{StaticRule().silent_days}d"):
                    continue
                if m == "static" and kind == PHANTOM and not s.startswith(f"{StaticRule().multiplier:g}x/"):
                    continue
                t = merged(per)
                if not t.labels(kind) or kind not in COVERS[m]:
                    continue
                pts.append((t.fa_rate([kind]), t.delay(kind), t.recall(kind), s))
            if not pts:
                continue
            pts.sort()
            xs = [max(p[0], 0.01) for p in pts]
            top.plot(xs, [p[1] for p in pts], color=color, marker=marker, label=m, lw=1.5, ms=5)
            bottom.plot(xs, [p[2] for p in pts], color=color, marker=marker, lw=1.5, ms=5)
            for x, p in zip(xs, pts, strict=True):
                if p[3] == DEFAULTS[m]:
                    top.plot([x], [p[1]], marker=marker, ms=12, mfc="none", mec="black", mew=1.5)
                    bottom.plot([x], [p[2]], marker=marker, ms=12, mfc="none", mec="black", mew=1.5)
                if not math.isnan(p[1]):
                    top.annotate(p[3], (x, p[1]), fontsize=6.5, color=color, xytext=(3, 3), textcoords="offset points")
        top.set_title(title)
        top.set_yscale("log")
        top.set_xscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")
        top.yaxis.set_major_formatter(plain)
        top.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if str(v)[0] in "235" else ""))
        bottom.xaxis.set_major_formatter(plain)
        top.axvline(20, color="grey", ls=":", lw=1)
        top.grid(True, which="both", alpha=0.25)
        bottom.axhline(0.9, color="grey", ls=":", lw=1)
        bottom.set_ylim(0, 1.02)
        bottom.grid(True, which="both", alpha=0.25)
        bottom.set_xlabel(f"false {SHORT[kind]} alarms per 1,000 active SKU-store-days")
        if col == 0:
            top.set_ylabel("median detection delay (min, log)")
            bottom.set_ylabel("recall")
            top.legend(loc="lower left", fontsize=8)
    fig.suptitle(
        "Detection delay and recall against false alarms over each method's settings, all mixes and paces pooled "
        "(ringed: default; dotted: 20 false alarms / 1,000 days, recall 0.9)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _jsonable(results: dict) -> dict:
    out = {}
    for (m, s), per in results.items():
        for mix, t in [*per.items(), ("all", merged(per))]:
            out.setdefault(m, {}).setdefault(s, {})[mix] = {
                "labels": {f"{k}|{b}": v for (k, b), v in t.n.items()},
                "detected": {f"{k}|{b}": v for (k, b), v in t.hit.items()},
                "delays_min": {f"{k}|{b}": v for (k, b), v in t.delays.items()},
                "false_alarms": {f"{k}|{b}": v for (k, b), v in t.fa.items()},
                "active_days": dict(t.days),
                "stockouts": t.stock,
                "risk_opens_without_scenario": t.risk_noise,
                "masked": {f"{k}|{b}": v for (k, b), v in t.masked.items()},
            }
    return out


def _meta(argv: Sequence[str], seconds: float, workers: int) -> dict:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    dirty = git("status", "--porcelain", "--", "operators", "demandsense", "flows")
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": platform.machine(),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "commit": commit + (" with uncommitted changes in operators/demandsense/flows" if dirty else ""),
        "command": "python -m bench.detection " + " ".join(argv),
        "seconds": seconds,
        "workers": workers,
    }


def _variant(text: str) -> tuple[str, dict[str, float]]:
    name, _, body = text.partition(":")
    if not body:
        raise argparse.ArgumentTypeError("a variant is NAME:key=value[,key=value...] of Detection fields")
    known = set(Detection.__dataclass_fields__)
    pairs = {}
    for part in body.split(","):
        k, _, v = part.partition("=")
        if k.strip() not in known:
            raise argparse.ArgumentTypeError(f"unknown Detection field {k.strip()!r}")
        pairs[k.strip()] = float(v)
    return name, pairs


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m bench.detection", description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--mixes", nargs="+", default=list(DEFAULT_MIXES), choices=[m.name for m in MIXES])
    p.add_argument("--stores", type=int, default=4)
    p.add_argument("--skus", type=int, default=250, help="SKUs of a long-tail run (the fast mix takes a sixth)")
    p.add_argument("--days", type=float, default=10.0)
    p.add_argument("--quick", action="store_true", help="one small seed, three settings per method (< 1 min)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", type=Path, help="directory for detection.md/.png (bench/results; --quick: bench/out/quick)")
    p.add_argument("--variant", type=_variant, action="append", default=[],
                   help="NAME:field=value,... extra demandsense run with Detection overrides (repeatable)")  # fmt: skip
    p.add_argument("--verify-replay", type=int, metavar="SEED",
                   help="first check on this seed that the in-process run equals `demandsense replay`")  # fmt: skip
    p.add_argument("--variants-only", action="store_true",
                   help="demandsense at x1 and the --variant runs only: no sweeps, no baselines (tuning)")  # fmt: skip
    p.add_argument("--no-plot", action="store_true")
    a = p.parse_args(argv)
    mixes = tuple(m for m in MIXES if m.name in a.mixes)
    if a.quick:
        cfg = Config([a.seeds[0]] if "--seeds" in argv else [1], mixes, min(a.stores, 2), min(a.skus, 120),
                     min(a.days, 6.0), (0.8, 1.0, 1.4), (StaticRule(), StaticRule(multiplier=3.0)), (0.002,),
                     (50.0,))  # fmt: skip
    else:
        cfg = Config(a.seeds, mixes, a.stores, a.skus, a.days)
    cfg.variants = dict(a.variant)
    if a.variants_only:
        cfg.scales, cfg.baselines = (1.0,), False
    out_dir = a.out or (OUT / "quick" if a.quick else RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    verify = None
    if a.verify_replay is not None:
        _say(f"verifying against `demandsense replay` on seed {a.verify_replay} ...")
        verify = verify_replay(a.verify_replay, cfg.stores, cfg.skus, cfg.days, OUT / "verify")
        _say(verify)
    results, facts = run_all(cfg, max(1, a.workers))
    png = None if a.no_plot else out_dir / "detection.png"
    if png is not None:
        plot(results, png, cfg)
    meta = _meta(argv, time.perf_counter() - t0, a.workers)
    text = report(results, facts, cfg, meta, png, verify)
    (out_dir / "detection.md").write_text(text + "\n")
    raw = a.out / "detection.json" if a.out else OUT / ("detection-quick.json" if a.quick else "detection.json")
    raw.write_text(json.dumps({"meta": meta, "facts": facts, "results": _jsonable(results)}, indent=1, default=str))
    print(text)
    _say(f"wrote {out_dir / 'detection.md'}" + (f" and {png}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
