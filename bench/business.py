"""Business value of the replenishment triggers: a closed-loop inventory simulation (issue 7, part 4).

``python -m bench.business [--quick]``

Demand comes from the simulator's demand model before any shelf (:func:`demandsense.simulate.demand_paths`:
long-tail rates, over-dispersion, weekly and intraday profiles, promotions, demand spikes and drops).
Each policy runs the shelf of every store x SKU: a sale needs stock (what the shelf cannot serve is a
lost sale), orders arrive after the item's lead time (deliveries outside opening hours are put away at
the next opening), and the policy sees only what the shelf let it sell.

- **demandsense**: the served sale lines, the receipts and a daily count (SNAPSHOT at opening) go to
  :class:`operators.store.StoreState` hour by hour; every trigger it emits is ordered as proposed
  (AUTO_APPROVED and NEEDS_REVIEW alike). Its fallback min-max (``ItemParams.min_qty/max_qty``) is the
  static rule below at the same service level.
- **static min-max**: reorder point and order-up-to per item, set once from the first two weeks'
  average daily sales, checked every hour.
- **daily batch**: once a day (at midnight) order up to a trailing 7-day average x (lead + 1 day)
  plus safety stock.

All three start from the same two-week warm-up run by the simulator's own (generous) min-max, which
demandsense watches; they take over the shelf and the open orders at day 14 and are scored from then
on. Each policy runs over a range of service levels; the baselines are interpolated to
demandsense's average inventory value so lost sales are compared at equal inventory.

Everything in the ledger and order rules is a pure function or a small class; :mod:`tests.bench.test_business`
tests them.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from demandsense.simulate import DemandPaths, SimConfig, demand_paths
from operators.events import CHANNELS, HOUR_MS, InventoryEvent, ItemParams, Sale
from operators.item import ItemState
from operators.policy import Policy
from operators.store import StoreState

DAY_MS = 24 * HOUR_MS
RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_DAYS = 14
STATIC_CYCLE_DAYS = 3.0  # static max - min in days of demand (demandsense's cycle_hours was 72 when this was set)
DAILY_REVIEW_DAYS = 1.0
DS_LEVELS = (0.8, 0.9, 0.95, 0.98)
BASE_LEVELS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999)
REFERENCE_LEVEL = 0.95  # demandsense's default service level: the point the baselines are matched at
POLICIES = ("demandsense", "static min-max", "daily batch")
BAND_EDGES = (1.0, 5.0, 20.0)  # units/day in the warm-up: items are banded for the "where are the lost sales" table
BAND_NAMES = ("< 1/day", "1-5/day", "5-20/day", ">= 20/day")


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the inventory ledger ----------------------------------------------------------------------
def round_up_packs(units: np.ndarray, pack: np.ndarray) -> np.ndarray:
    """Whole packs covering ``units`` (0 where nothing is needed)."""
    units = np.maximum(np.ceil(units - 1e-9), 0).astype(np.int64)
    return -(-units // pack) * pack


def arrival_hours(
    order_ms: int, lead_h: np.ndarray, open_h: np.ndarray, close_h: np.ndarray, start_ms: int
) -> np.ndarray:
    """Hour index (from ``start_ms``) from which an order placed at ``order_ms`` is on the shelf.

    It arrives ``lead_h`` hours later; outside opening hours it is put away at the next opening,
    and it is counted from the start of the hour it is on the shelf in (the next whole hour).
    """
    t = order_ms + (lead_h * HOUR_MS).astype(np.int64)
    day, tod = t - t % DAY_MS, t % DAY_MS
    open_ms, close_ms = open_h * HOUR_MS, close_h * HOUR_MS
    put = np.where(tod < open_ms, day + open_ms, np.where(tod >= close_ms, day + DAY_MS + open_ms, t))
    return -(-(put - start_ms) // HOUR_MS)


@dataclass
class Ledger:
    """The shelf of N items hour by hour: receipts, censored sales, the order pipeline, and the score.

    Each hour: :meth:`receive` (orders due this hour go on the shelf), :meth:`sell` (demand beyond
    the shelf is lost), :meth:`place` (orders arrive at the given hour), :meth:`end_hour`. Hours
    from ``score_from`` on are scored.
    """

    shelf: np.ndarray
    hours: int
    price: np.ndarray | None = None  # (N, hours) price of a unit (promotion price in a promotion)
    cost: np.ndarray | None = None  # (N,) unit cost, for inventory value
    open_mask: np.ndarray | None = None  # (N, hours) store open: stockout hours are counted then
    score_from: int = 0
    groups: np.ndarray | None = None  # (N,) band of each item: lost units and inventory value by band
    pipeline: np.ndarray = field(init=False)
    on_order: np.ndarray = field(init=False)
    sold_log: np.ndarray = field(init=False)
    score: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.shelf)
        self.shelf = np.asarray(self.shelf, np.int64).copy()
        self.pipeline = np.zeros((n, self.hours + 1), np.int64)  # column ``hours``: arrives after the run
        self.on_order = np.zeros(n, np.int64)
        self.sold_log = np.zeros((n, self.hours), np.int64)
        self.score = dict.fromkeys(
            ("demand", "sold", "lost", "lost_value", "demand_value", "stockout_hours", "open_hours",
             "inv_units", "inv_value", "orders", "order_units", "hours"), 0.0)  # fmt: skip

    def receive(self, h: int) -> np.ndarray:
        q = self.pipeline[:, h].copy()
        self.shelf += q
        self.on_order -= q
        return q

    def sell(self, h: int, demand: np.ndarray) -> np.ndarray:
        sold = np.minimum(demand, self.shelf)
        self.shelf -= sold
        self.sold_log[:, h] = sold
        if h >= self.score_from:
            s = self.score
            s["demand"] += float(demand.sum())
            s["sold"] += float(sold.sum())
            s["lost"] += float((demand - sold).sum())
            if self.price is not None:
                s["lost_value"] += float((demand - sold) @ self.price[:, h])
                s["demand_value"] += float(demand @ self.price[:, h])
            if self.groups is not None:
                for k, v in enumerate(np.bincount(self.groups, demand - sold, len(BAND_NAMES)).tolist()):
                    s[f"lost_{k}"] = s.get(f"lost_{k}", 0.0) + v
        return sold

    def place(self, h: int, qty: np.ndarray, arrive: np.ndarray) -> None:
        idx = np.flatnonzero(qty > 0)
        if not len(idx):
            return
        np.add.at(self.pipeline, (idx, np.minimum(arrive[idx], self.hours)), qty[idx])
        self.on_order[idx] += qty[idx]
        if h >= self.score_from:
            self.score["orders"] += len(idx)
            self.score["order_units"] += float(qty[idx].sum())

    def end_hour(self, h: int) -> None:
        if h < self.score_from:
            return
        s = self.score
        s["hours"] += 1
        s["inv_units"] += float(self.shelf.sum())
        if self.cost is not None:
            s["inv_value"] += float(self.shelf @ self.cost)
            if self.groups is not None:
                for k, v in enumerate(np.bincount(self.groups, self.shelf * self.cost, len(BAND_NAMES)).tolist()):
                    s[f"inv_{k}"] = s.get(f"inv_{k}", 0.0) + v
        empty = self.shelf == 0
        if self.open_mask is not None:
            s["stockout_hours"] += float((empty & self.open_mask[:, h]).sum())
            s["open_hours"] += float(self.open_mask[:, h].sum())
        else:
            s["stockout_hours"] += float(empty.sum())
            s["open_hours"] += len(empty)

    def position(self) -> np.ndarray:
        """On hand plus on order."""
        return self.shelf + self.on_order


def metrics(score: dict[str, float]) -> dict[str, float]:
    """The reported figures from a ledger's score (sums over items, averages over scored hours)."""
    hours = max(score["hours"], 1.0)
    return (
        {
            "stockout_hours": score["stockout_hours"],
            "stockout_pct": 100 * score["stockout_hours"] / max(score["open_hours"], 1.0),
            "lost_units": score["lost"],
            "lost_value": score["lost_value"],
            "fill_rate": score["sold"] / score["demand"] if score["demand"] else 1.0,
            "avg_inv_units": score["inv_units"] / hours,
            "avg_inv_value": score["inv_value"] / hours,
            "orders": score["orders"],
            "demand_units": score["demand"],
        }
        | {k: v for k, v in score.items() if k.startswith("lost_") and k[5:].isdigit()}
        | {k: v / hours for k, v in score.items() if k.startswith("inv_") and k[4:].isdigit()}
    )


# -- the baselines' order rules ----------------------------------------------------------------
def z_of(level: float) -> float:
    return NormalDist().inv_cdf(level)


def variance_ratio(daily: np.ndarray) -> np.ndarray:
    """Variance over mean of daily unit sales per item (at least 1: Poisson or more dispersed)."""
    mean = daily.mean(axis=1)
    var = daily.var(axis=1, ddof=1) if daily.shape[1] > 1 else mean
    return np.maximum(1.0, np.divide(var, mean, out=np.ones_like(mean), where=mean > 0))


def static_min_max_levels(
    daily: np.ndarray, lead_h: np.ndarray, pack: np.ndarray, z: float, cycle_days: float = STATIC_CYCLE_DAYS
) -> tuple[np.ndarray, np.ndarray]:
    """Reorder point and order-up-to from a history of daily sales (items x days).

    ``min`` = lead-time demand at the average daily rate + ``z`` standard deviations of it (the
    variance scaled by the history's variance-to-mean ratio); ``max`` = ``min`` + ``cycle_days``
    of demand, at least one pack.
    """
    d = daily.mean(axis=1)
    lead_d = lead_h / 24
    mean_l = d * lead_d
    mn = np.maximum(np.ceil(mean_l + z * np.sqrt(variance_ratio(daily) * mean_l) - 1e-9), 0).astype(np.int64)
    mx = mn + np.maximum(pack, np.ceil(d * cycle_days - 1e-9).astype(np.int64))
    return mn, mx


def min_max_orders(position: np.ndarray, mn: np.ndarray, mx: np.ndarray, pack: np.ndarray) -> np.ndarray:
    """At or below ``mn``: order up to ``mx`` in whole packs; else nothing."""
    return np.where(position <= mn, round_up_packs(mx - position, pack), 0)


def daily_batch_orders(
    position: np.ndarray,
    history: np.ndarray,
    lead_h: np.ndarray,
    pack: np.ndarray,
    z: float,
    review_days: float = DAILY_REVIEW_DAYS,
) -> np.ndarray:
    """Periodic review (R, S): up to ``S`` = forecast x (lead + review) + ``z`` sigma, at least 1 unit.

    The forecast is the mean of the last 7 days of ``history`` (items x days of unit sales); the
    variance-to-mean ratio comes from the whole history.
    """
    f = history[:, -7:].mean(axis=1)
    cover = f * (lead_h / 24 + review_days)
    target = np.maximum(cover + z * np.sqrt(variance_ratio(history) * cover), 1.0)
    return np.where(position < target, round_up_packs(target - position, pack), 0)


# -- the world --------------------------------------------------------------------------------
@dataclass
class World:
    """One simulated chain: hourly demand, item master data and the sale lines by hour."""

    dp: DemandPaths
    demand: np.ndarray  # (N, H) units
    price: np.ndarray  # (N, H)
    cost: np.ndarray
    lead_h: np.ndarray
    pack: np.ndarray
    open_h: np.ndarray
    close_h: np.ndarray
    open_mask: np.ndarray
    min0: np.ndarray  # the simulator's min-max, run in the warm-up
    max0: np.ndarray
    handover: int  # first scored hour
    lines: dict[str, np.ndarray]  # sale lines sorted by (hour, item, time), with ``before`` units in the item-hour
    bounds: np.ndarray  # (H + 1,) line index of each hour's first line

    @property
    def n(self) -> int:
        return len(self.lead_h)

    @property
    def hours(self) -> int:
        return self.demand.shape[1]

    def arrive(self, h: int) -> np.ndarray:
        """Arrival hours of orders placed at the end of hour ``h``."""
        return arrival_hours(self.dp.start_ms + (h + 1) * HOUR_MS, self.lead_h, self.open_h, self.close_h,
                             self.dp.start_ms)  # fmt: skip


def build_world(cfg: SimConfig) -> World:
    dp = demand_paths(cfg)
    n, hours = len(dp.items), dp.hours
    col = {k: np.array([it[k] for it in dp.items]) for k in ("unit_price", "unit_cost", "lead_time_hours",
                                                             "pack_size", "min_qty", "max_qty")}  # fmt: skip
    hours_by_store = {s["store_id"]: (s["open_hour"], s["close_hour"]) for s in dp.stores}
    open_h = np.array([hours_by_store[it["store_id"]][0] for it in dp.items])
    close_h = np.array([hours_by_store[it["store_id"]][1] for it in dp.items])
    hod = ((dp.start_ms // HOUR_MS + np.arange(hours)) % 24)[None, :]
    open_mask = (hod >= open_h[:, None]) & (hod < close_h[:, None])
    price = np.repeat(col["unit_price"].astype(float)[:, None], hours, axis=1)
    index = {it["sku"]: [] for it in dp.items}
    for i, it in enumerate(dp.items):
        index[it["sku"]].append(i)
    for p in dp.promotions:
        a = max(0, (p["start_ms"] - dp.start_ms) // HOUR_MS)
        b = min(hours, (p["end_ms"] - dp.start_ms) // HOUR_MS)
        for i in index[p["sku"]]:
            price[i, a:b] = dp.promo_price[i]
    hour = (dp.t - dp.start_ms) // HOUR_MS
    order = np.lexsort((dp.t, dp.item, hour))
    lines = {"item": dp.item[order], "t": dp.t[order], "qty": dp.qty[order], "channel": dp.channel[order],
             "promo": dp.promo[order], "id": order}  # fmt: skip
    key = hour[order] * n + lines["item"]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    group = np.cumsum(np.r_[True, key[1:] != key[:-1]]) - 1
    before = np.cumsum(lines["qty"]) - lines["qty"]
    lines["before"] = before - before[starts][group]
    return World(
        dp=dp,
        demand=dp.hourly(),
        price=price,
        cost=col["unit_cost"].astype(float),
        lead_h=col["lead_time_hours"].astype(float),
        pack=col["pack_size"].astype(np.int64),
        open_h=open_h,
        close_h=close_h,
        open_mask=open_mask,
        min0=col["min_qty"].astype(np.int64),
        max0=col["max_qty"].astype(np.int64),
        handover=WARMUP_DAYS * 24,
        lines=lines,
        bounds=np.searchsorted(hour[order], np.arange(hours + 1)),
    )


def daily_sales(led: Ledger, upto_h: int) -> np.ndarray:
    """Units sold per item and whole day before hour ``upto_h`` (a multiple of 24)."""
    days = upto_h // 24
    return led.sold_log[:, : days * 24].reshape(len(led.shelf), days, 24).sum(axis=2)


# -- policies ---------------------------------------------------------------------------------
class StaticMinMax:
    """Fixed reorder point and order-up-to per item, checked every hour."""

    def __init__(self, mn: np.ndarray, mx: np.ndarray, pack: np.ndarray) -> None:
        self.mn, self.mx, self.pack = mn, mx, pack

    def step(self, h: int, led: Ledger, received: np.ndarray, shelf0: np.ndarray) -> np.ndarray:
        return min_max_orders(led.position(), self.mn, self.mx, self.pack)


class DailyBatch:
    """Re-planned at midnight from the trailing sales (forecast: last 7 days' mean)."""

    def __init__(self, world: World, z: float, history_days: int = 28) -> None:
        self.w, self.z, self.history_days = world, z, history_days

    def step(self, h: int, led: Ledger, received: np.ndarray, shelf0: np.ndarray) -> np.ndarray | None:
        if (h + 1) % 24:
            return None
        hist = daily_sales(led, h + 1)[:, -self.history_days :]
        return daily_batch_orders(led.position(), hist, self.w.lead_h, self.w.pack, self.z)


@dataclass
class DsStats:
    triggers: int = 0
    fallback: int = 0
    review: int = 0
    units: int = 0


class DemandSense:
    """demandsense's StoreState per store, fed the shelf's sales, receipts and daily counts.

    ``in_transit_feed`` puts the ledger's open orders into the ``in_transit`` field of RECEIPTs and
    SNAPSHOTs, as an ERP that knows the purchase orders would; without it demandsense relies on its
    own ``on_order`` for the orders it triggered. ``ordering`` off: it only watches (the warm-up).
    """

    def __init__(self, world: World, policy: Policy | None = None, *, in_transit_feed: bool = False) -> None:
        self.w, self.policy, self.in_transit_feed = world, policy or Policy(), in_transit_feed
        dp = world.dp
        self.sid = [it["store_id"] for it in dp.items]
        self.sku = [it["sku"] for it in dp.items]
        self.store_of = np.array([int(s[1:]) - 1 for s in self.sid])
        self.stores = [StoreState(s["store_id"]) for s in dp.stores]
        self.index = [{} for _ in dp.stores]
        for i in range(world.n):
            self.index[self.store_of[i]][self.sku[i]] = i
        self.ordering = False
        self.stats = DsStats()
        self.trigger_log: list[Any] | None = None  # set to a list to keep every trigger (diagnostics)
        for s in range(len(self.stores)):
            params = [self._params(i) for i in range(world.n) if self.store_of[i] == s]
            self.stores[s].on_events(params, self.policy)

    def _params(self, i: int, **kw: Any) -> ItemParams:
        it = self.w.dp.items[i]
        return ItemParams(
            store_id=it["store_id"], sku=it["sku"], unit_price=it["unit_price"], unit_cost=it["unit_cost"],
            lead_time_hours=it["lead_time_hours"], service_level=it["service_level"], pack_size=it["pack_size"],
            min_qty=it["min_qty"], max_qty=it["max_qty"], category=it["category"],
        ) if not kw else replace(self._params(i), **kw)  # fmt: skip

    def take_over(self, h: int, led: Ledger, level: float, mn: np.ndarray, mx: np.ndarray) -> None:
        """From hour ``h`` its triggers are the orders: service level, fallback min-max, open orders."""
        t = self.w.dp.start_ms + h * HOUR_MS
        for s, store in enumerate(self.stores):
            idx = [i for i in range(self.w.n) if self.store_of[i] == s]
            store.on_events([self._params(i, service_level=level, min_qty=int(mn[i]), max_qty=int(mx[i]))
                             for i in idx], self.policy)  # fmt: skip
            for i in idx:
                item = store.items.get(self.sku[i])
                if item is None:
                    continue
                # the open orders of the warm-up are demandsense's from now on (reported as in transit
                # instead when the feed carries it); the triggers it proposed while watching are dropped
                item.on_order = 0 if self.in_transit_feed else int(led.on_order[i])
                item.ordered_at = t if item.on_order else None
        self.ordering = True
        self.stats = DsStats()

    def step(self, h: int, led: Ledger, received: np.ndarray, shelf0: np.ndarray, count: bool = False) -> np.ndarray:
        w, dp = self.w, self.w.dp
        t_h = dp.start_ms + h * HOUR_MS
        per_store: list[list[Any]] = [[] for _ in self.stores]
        feed = self.in_transit_feed
        for i in np.flatnonzero(received).tolist():
            per_store[self.store_of[i]].append(InventoryEvent(
                f"a{h}:{i}", t_h, self.sid[i], self.sku[i], "RECEIPT", int(received[i]), None,
                int(led.on_order[i]) if feed else None))  # fmt: skip
        tod = h % 24
        for s in range(len(self.stores)):
            if count or tod == dp.stores[s]["open_hour"]:
                for i in np.flatnonzero(self.store_of == s).tolist():
                    per_store[s].append(InventoryEvent(
                        f"b{h}:{i}", t_h, self.sid[i], self.sku[i], "SNAPSHOT", 0, int(shelf0[i]),
                        int(led.on_order[i]) if feed else 0))  # fmt: skip
        a, b = w.bounds[h], w.bounds[h + 1]
        if b > a:
            L = w.lines
            item, qty = L["item"][a:b], L["qty"][a:b]
            served = np.clip(shelf0[item] - L["before"][a:b], 0, qty)
            ok = np.flatnonzero(served > 0)
            ok = ok[np.argsort(L["t"][a:b][ok], kind="stable")]
            for j, i, q, t, ch, pr in zip(
                L["id"][a:b][ok].tolist(), item[ok].tolist(), served[ok].tolist(), L["t"][a:b][ok].tolist(),
                L["channel"][a:b][ok].tolist(), L["promo"][a:b][ok].tolist(), strict=True,
            ):  # fmt: skip
                per_store[self.store_of[i]].append(Sale(
                    f"s{j}", t, self.sid[i], self.sku[i], CHANNELS[ch], q, float(w.price[i, h]),
                    dp.promo_id[i] if pr else None))  # fmt: skip
        qty_out = np.zeros(w.n, np.int64)
        for s, events in enumerate(per_store):
            if not events:
                continue
            store = self.stores[s]
            out = store.on_events(events, self.policy)
            triggers = out.triggers + store.flush(self.policy).triggers
            if self.trigger_log is not None:
                self.trigger_log.extend(triggers)
            if not self.ordering:
                continue
            for tr in triggers:
                qty_out[self.index[s][tr.sku]] += tr.order_quantity
                self.stats.triggers += 1
                self.stats.fallback += tr.fallback
                self.stats.review += tr.approval == "NEEDS_REVIEW"
                self.stats.units += tr.order_quantity
        return qty_out


class Incumbent(StaticMinMax):
    """The simulator's own min-max (ItemParams), run in the warm-up while demandsense watches."""

    def __init__(self, world: World, watcher: DemandSense | None) -> None:
        super().__init__(world.min0, world.max0, world.pack)
        self.watcher = watcher

    def step(self, h: int, led: Ledger, received: np.ndarray, shelf0: np.ndarray) -> np.ndarray:
        if self.watcher is not None:
            self.watcher.step(h, led, received, shelf0)
        return super().step(h, led, received, shelf0)


def run(world: World, led: Ledger, policy: Any, h_from: int, h_to: int) -> Ledger:
    """Hours ``[h_from, h_to)``: receive, sell, let the policy order, score."""
    for h in range(h_from, h_to):
        received = led.receive(h)
        shelf0 = led.shelf.copy()
        led.sell(h, world.demand[:, h])
        qty = policy.step(h, led, received, shelf0)
        if qty is not None:
            led.place(h, qty, world.arrive(h))
        led.end_hour(h)
    return led


@dataclass
class Warm:
    """The shared state at the handover: the shelf and orders, and demandsense having watched."""

    world: World
    ledger: Ledger
    ds: DemandSense | None


def warm_up(cfg: SimConfig, *, ds_policy: Policy | None = None, in_transit_feed: bool = False,
            with_ds: bool = True) -> Warm:  # fmt: skip
    world = build_world(cfg)
    led = Ledger(_initial_stock(cfg, world), world.hours, price=world.price,
                 cost=world.cost, open_mask=world.open_mask, score_from=world.handover)  # fmt: skip
    ds = DemandSense(world, ds_policy, in_transit_feed=in_transit_feed) if with_ds else None
    run(world, led, Incumbent(world, ds), 0, world.handover)
    led.groups = np.searchsorted(BAND_EDGES, daily_sales(led, world.handover).mean(axis=1), side="right")
    return Warm(world, led, ds)


def _initial_stock(cfg: SimConfig, world: World) -> np.ndarray:
    rng = np.random.default_rng([cfg.seed, 7])
    return rng.integers(np.ceil(0.8 * world.min0).astype(np.int64), world.max0 + 1)


def run_policy(warm: Warm, name: str, level: float, *, ds_policy: Policy | None = None) -> dict[str, float]:
    """Score policy ``name`` at service ``level`` from the handover to the end of the run."""
    w, h0 = warm.world, warm.world.handover
    led = copy.deepcopy(warm.ledger)
    z = z_of(level)
    mn, mx = static_min_max_levels(daily_sales(led, h0), w.lead_h, w.pack, z)
    extra: dict[str, float] = {}
    if name == "static min-max":
        pol: Any = StaticMinMax(mn, mx, w.pack)
    elif name == "daily batch":
        pol = DailyBatch(w, z)
    elif name == "demandsense":
        assert warm.ds is not None
        ds = copy.deepcopy(warm.ds)
        if ds_policy is not None:
            ds.policy = ds_policy
        ds.take_over(h0, led, level, mn, mx)
        pol = _DsStep(ds)
    else:
        raise ValueError(name)
    run(w, led, pol, h0, w.hours)
    if name == "demandsense":
        st = pol.ds.stats
        extra = {"triggers": st.triggers, "fallback_share": st.fallback / max(st.triggers, 1),
                 "review_share": st.review / max(st.triggers, 1)}  # fmt: skip
    return metrics(led.score) | extra


class _DsStep:
    def __init__(self, ds: DemandSense) -> None:
        self.ds = ds

    def step(self, h: int, led: Ledger, received: np.ndarray, shelf0: np.ndarray) -> np.ndarray:
        return self.ds.step(h, led, received, shelf0)


# -- what-if: variants of demandsense's replenishment, measured here -------------------------
@dataclass(frozen=True)
class WhatIf:
    """A variant of demandsense's replenishment, for measuring changes to ``operators/``.

    ``day_cv2``: every item's day-level CV² (:meth:`operators.item.ItemState.day_cv2`) fixed at this
    value instead of learned (0: no day-to-day variation in the lead-time variance).
    ``cycle_hours``: the ``ItemDefaults.cycle_hours`` setting.
    """

    day_cv2: float | None = None
    cycle_hours: float | None = None

    @classmethod
    def parse(cls, spec: str) -> WhatIf:
        kw: dict[str, Any] = {}
        for part in filter(None, (x.strip() for x in spec.split(","))):
            if part.startswith("day-cv2="):
                kw["day_cv2"] = float(part.split("=", 1)[1])
            elif part.startswith("cycle="):
                kw["cycle_hours"] = float(part.split("=", 1)[1])
            else:
                raise ValueError(f"unknown what-if {part!r}: day-cv2=CV2, cycle=HOURS")
        return cls(**kw)

    def label(self) -> str:
        parts = [f"day-to-day CV\u00b2 fixed at {self.day_cv2:g}"] if self.day_cv2 is not None else []
        parts += [f"cycle_hours {self.cycle_hours:g}"] if self.cycle_hours is not None else []
        return "; ".join(parts) or "as shipped"

    def policy(self) -> Policy:
        base = Policy()
        if self.cycle_hours is None:
            return base
        return replace(base, items=replace(base.items, cycle_hours=self.cycle_hours))

    @contextmanager
    def installed(self) -> Iterator[Policy]:
        """Monkeypatch ``ItemState.day_cv2`` (when the variant fixes it) for the duration."""
        original = ItemState.day_cv2
        if self.day_cv2 is not None:
            value = self.day_cv2
            ItemState.day_cv2 = lambda _self: value  # type: ignore[method-assign]
        try:
            yield self.policy()
        finally:
            ItemState.day_cv2 = original  # type: ignore[method-assign]


# -- the sweep, matching and report ------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    stores: int
    skus: int
    days: int
    seeds: tuple[int, ...]
    ds_levels: tuple[float, ...] = DS_LEVELS
    base_levels: tuple[float, ...] = BASE_LEVELS

    def config(self, seed: int) -> SimConfig:
        # scenarios start after the warm-up, so they fall in the scored weeks
        return SimConfig(stores=self.stores, skus=self.skus, days=self.days, seed=seed, warmup_days=WARMUP_DAYS)


FULL = Setup(3, 300, 56, (1, 2, 3))
QUICK = Setup(2, 150, 35, (1,), (0.9, 0.95, 0.99))

Curves = dict[str, dict[float, dict[str, float]]]  # policy -> level -> metrics (mean over seeds)


def sweep(setup: Setup, *, what_if: WhatIf | None = None, in_transit_feed: bool = False,
          policies: Sequence[str] = POLICIES, log: Callable[[str], None] = say) -> Curves:  # fmt: skip
    """Every policy at each of its service levels on every seed; metrics averaged over seeds."""
    what_if = what_if or WhatIf()

    def levels(p: str) -> tuple[float, ...]:
        return setup.ds_levels if p == "demandsense" else setup.base_levels

    per_seed = {p: {lv: [] for lv in levels(p)} for p in policies}
    with what_if.installed() as ds_policy:
        for seed in setup.seeds:
            t0 = time.perf_counter()
            warm = warm_up(setup.config(seed), ds_policy=ds_policy, in_transit_feed=in_transit_feed,
                           with_ds="demandsense" in policies)  # fmt: skip
            log(f"seed {seed}: {warm.world.n} items x {setup.days} days, {len(warm.world.lines['t']):,} sale "
                f"lines; warm-up {time.perf_counter() - t0:.1f} s")  # fmt: skip
            for p in policies:
                t1 = time.perf_counter()
                for lv in levels(p):
                    per_seed[p][lv].append(run_policy(warm, p, lv, ds_policy=ds_policy))
                log(f"  {p:<15} {len(levels(p))} service levels in {time.perf_counter() - t1:.1f} s")
    return {p: {lv: _mean(ms) for lv, ms in by.items()} for p, by in per_seed.items()}


def _mean(ms: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([m[k] for m in ms])) for k in ms[0]}


def at_inventory(curve: dict[float, dict[str, float]], value: float, key: str = "avg_inv_value") -> dict[str, float]:
    """Every metric of ``curve`` linearly interpolated at inventory ``value`` (NaN outside the curve)."""
    pts = sorted(curve.items(), key=lambda kv: kv[1][key])
    xs = np.array([m[key] for _, m in pts])
    if not xs[0] <= value <= xs[-1]:
        return {k: math.nan for k in pts[0][1]} | {"level": math.nan}
    out = {k: float(np.interp(value, xs, [m[k] for _, m in pts])) for k in pts[0][1]}
    out["level"] = float(np.interp(value, xs, [lv for lv, _ in pts]))
    return out


def compare(curves: Curves, level: float = REFERENCE_LEVEL, key: str = "avg_inv_value") -> dict[str, dict[str, float]]:
    """demandsense at ``level`` and each baseline interpolated to its average inventory."""
    ds = curves["demandsense"][level] | {"level": level}
    return {"demandsense": ds} | {p: at_inventory(curves[p], ds[key], key) for p in curves if p != "demandsense"}


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def table(rows: dict[str, dict[str, float]]) -> str:
    head = ["policy", "service level", "stockout item-hours (open)", "lost units", "lost value",
            "fill rate", "avg inventory units", "avg inventory value (cost)", "orders"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for p, m in rows.items():
        lv = m.get("level", math.nan)
        cells = [p, "n/a" if math.isnan(lv) else f"{lv:.3f}", f"{m['stockout_hours']:,.0f} ({m['stockout_pct']:.2f}%)",
                 f"{m['lost_units']:,.0f}", f"{m['lost_value']:,.0f}", f"{m['fill_rate']:.4f}",
                 f"{m['avg_inv_units']:,.0f}", f"{m['avg_inv_value']:,.0f}", f"{m['orders']:,.0f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(rows: dict[str, dict[str, float]]) -> tuple[bool, str]:
    ds, st, db = rows["demandsense"], rows["static min-max"], rows["daily batch"]
    r_st, r_db = ratio(ds["lost_units"], st["lost_units"]), ratio(ds["lost_units"], db["lost_units"])
    v_st, v_db = ratio(ds["lost_value"], st["lost_value"]), ratio(ds["lost_value"], db["lost_value"])
    met = r_st <= 0.6 and r_db <= 0.8
    text = (
        f"demandsense's lost units are {_vs(r_st)} static min-max's (goal: 40% fewer, 0.60x) and {_vs(r_db)} "
        f"the daily batch's (goal: 20% fewer, 0.80x); lost value {v_st:.2f}x and {v_db:.2f}x. "
        f"**Goal {'met' if met else 'not met'}.**"
    )
    return met, text


def _vs(r: float) -> str:
    if math.isnan(r):
        return "n/a (outside the baseline's curve)"
    return f"{r:.2f}x ({abs(1 - r):.0%} {'fewer than' if r < 1 else 'more than'})"


def curve_table(curves: Curves, key: str = "avg_inv_value") -> str:
    """Lost units of demandsense at each level against the baselines at the same inventory."""
    head = ["demandsense level", "avg inventory value", "lost units: demandsense", "static min-max", "daily batch",
            "ratio vs static", "ratio vs daily"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for lv, m in sorted(curves["demandsense"].items()):
        st = at_inventory(curves["static min-max"], m[key], key)["lost_units"]
        db = at_inventory(curves["daily batch"], m[key], key)["lost_units"]
        cells = [f"{lv:g}", f"{m[key]:,.0f}", f"{m['lost_units']:,.0f}", _f(st), _f(db),
                 _f(ratio(m["lost_units"], st), 2), _f(ratio(m["lost_units"], db), 2)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _f(x: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(x) else f"{x:,.{digits}f}"


def plot(panels: list[tuple[str, dict[str, Curves]]], path: Path, title: str) -> None:
    """Lost units and lost value against average inventory value: one row per panel, one line per policy.

    Each panel is (title, {line-style suffix: curves}); a non-empty suffix draws dashed lines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 2, figsize=(13, 4.6 * len(panels)), squeeze=False)
    style = {"demandsense": ("o", "C0"), "static min-max": ("s", "C1"), "daily batch": ("^", "C2")}
    for row, (panel_title, curves_by) in zip(axes, panels, strict=True):
        for ax, (ykey, ylabel) in zip(row, (("lost_units", "lost sales (units)"), ("lost_value", "lost sales (value)")),
                                      strict=True):  # fmt: skip
            for suffix, curves in curves_by.items():
                for p, curve in curves.items():
                    marker, color = style[p]
                    pts = sorted(curve.items())
                    xs, ys = [m["avg_inv_value"] for _, m in pts], [m[ykey] for _, m in pts]
                    ax.plot(xs, ys, marker=marker, color=color, ls="--" if suffix else "-", label=p + suffix, ms=4)
                    for lv, m in pts:
                        if p == "demandsense" or lv in (0.5, 0.8, 0.95, 0.99, 0.999):
                            ax.annotate(f"{lv:g}", (m["avg_inv_value"], m[ykey]), fontsize=6, xytext=(3, 3),
                                        textcoords="offset points", color=color)  # fmt: skip
            ax.set_title(panel_title, fontsize=9)
            ax.set_xlabel("average inventory value at cost (labels: service level)")
            ax.set_ylabel(ylabel)
            ax.set_yscale("log")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def machine_line() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M UTC} on {platform.machine()}, nproc {os.cpu_count()}, "
            f"{cpu}, Python {platform.python_version()} (load average at the end: {load}).")  # fmt: skip


HOW = """### What demandsense's triggers do

The replenishment maths in `operators/` (commands and history in `bench/README.md`, *Business value*):

1. **Lead-time demand variance includes day-to-day variation.** Each item learns the squared
   coefficient of variation of its day-level demand (weather, paydays, local events; here the
   simulator's daily gamma multiplier) from each day's units against the model's expectation,
   precision-weighted and shrunk towards a prior of 0.2 (`ItemState.day_cv2`). A lead time adds
   CV² x the sum over the calendar days it touches of their expected demand squared to the
   compound-Poisson variance (`ItemState.demand_moments`), so fast movers, where most units are
   sold, get the safety stock their daily swings need.
2. **Today's multiplier is sensed**: the rest of today is expected at the multiplier today's sales
   so far imply (a linear Bayes update, `ItemState.today`), with the variance that is left.
3. **Order-up-to = reorder point + the next cycle's demand** (`replenish.order_up_to`): the safety
   stock is held once, not bought again with the cycle stock.
4. **Orders cover the lead time plus a day** (`cycle_hours` 24): more, smaller orders than the static
   min-max's three-day cycle, fewer than the daily batch's.
"""


def report(setup: Setup, curves: Curves, label: str) -> tuple[bool, str]:
    """The matched comparison, verdict, where the lost sales are, and the trade-off curve, as markdown."""
    rows = compare(curves)
    met, text = verdict(rows)
    ds = curves["demandsense"][REFERENCE_LEVEL]
    body = "\n\n".join([
        f"**{label}.** {setup.stores} stores x {setup.skus} SKUs, {setup.days} days ({setup.days - WARMUP_DAYS} "
        f"scored after a {WARMUP_DAYS}-day warm-up), seeds {', '.join(map(str, setup.seeds))}; figures per run "
        f"(mean over seeds), summed over items. demandsense at service level {REFERENCE_LEVEL}; the baselines "
        "interpolated between their service levels to the same average inventory value (at cost).",
        table(rows),
        text,
        f"demandsense placed {ds.get('triggers', 0):,.0f} triggers per run, {ds.get('fallback_share', 0):.0%} of "
        f"them from the static min-max fallback (too little history), {ds.get('review_share', 0):.1%} NEEDS_REVIEW "
        "(ordered all the same).",
        "Where the lost units are (items banded by their warm-up sales), at the matched inventory:",
        band_table(rows),
        "Across the trade-off curve (each demandsense level against the baselines at its inventory):",
        curve_table(curves),
    ])  # fmt: skip
    return met, body


def band_table(rows: dict[str, dict[str, float]]) -> str:
    head = ["policy"] + [f"{b}: lost units / avg inventory value" for b in BAND_NAMES]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for p, m in rows.items():
        cells = [p] + [f"{_f(m.get(f'lost_{k}', math.nan))} / {_f(m.get(f'inv_{k}', math.nan))}"
                       for k in range(len(BAND_NAMES))]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.business", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="2 stores x 150 SKUs x 5 weeks, one seed, 3 demandsense levels (under a minute); prints only",
    )
    ap.add_argument(
        "--what-if",
        metavar="SPEC",
        help="measure a variant of demandsense's replenishment instead of the shipped one: comma-separated "
        "day-cv2=CV2 (fixed instead of learned), cycle=HOURS; prints only",
    )
    ap.add_argument("--seeds", help="comma-separated seeds (default 1,2,3; 1 in --quick)")
    ap.add_argument(
        "--in-transit-feed",
        action="store_true",
        help="report open orders as in_transit on RECEIPTs and SNAPSHOTs (an ERP-style feed)",
    )
    ap.add_argument("--no-write", action="store_true", help="print only; do not write bench/results")
    args = ap.parse_args(argv)  # fmt: skip
    setup = QUICK if args.quick else FULL
    if args.seeds:
        setup = replace(setup, seeds=tuple(int(x) for x in args.seeds.split(",")))
    what_if = WhatIf.parse(args.what_if) if args.what_if else WhatIf()
    write = not (args.quick or args.what_if or args.no_write or args.in_transit_feed)
    t0 = time.perf_counter()
    say(f"business value: {setup.stores} stores x {setup.skus} SKUs x {setup.days} days, seeds {setup.seeds}; "
        f"demandsense ({what_if.label()}) at {setup.ds_levels}, baselines at {len(setup.base_levels)} levels; "
        f"scored from day {WARMUP_DAYS}")  # fmt: skip
    label = "demandsense as shipped" if not args.what_if else f"What-if: {what_if.label()}"
    label += " (in_transit reported by the feed)" if args.in_transit_feed else ""
    curves = sweep(setup, what_if=what_if, in_transit_feed=args.in_transit_feed)
    met, body = report(setup, curves, label)
    print(body)
    panels = [(f"{label}: seeds {', '.join(map(str, setup.seeds))} (mean)", {"": curves})]
    if write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        text = "\n\n".join(["# Business value of the triggers", machine_line(), "## As shipped", body, HOW])
        (RESULTS / "business.md").write_text(text + "\n")
        plot(panels, RESULTS / "business.png", f"Lost sales vs average inventory ({setup.stores} stores x "
             f"{setup.skus} SKUs, {setup.days - WARMUP_DAYS} scored days, seeds {setup.seeds})")  # fmt: skip
        say(f"wrote {RESULTS / 'business.md'} and business.png")
    say(f"done in {time.perf_counter() - t0:.0f} s; goal {'met' if met else 'not met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
