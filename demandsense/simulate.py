"""Synthetic retail streams with ground truth: sale lines, inventory events, item parameters, labels.

N stores x M SKUs over D days, deterministic for a seed. Demand per item and day is negative
binomial (a gamma day multiplier on a Poisson count of sale lines) around a long-tailed (lognormal)
mean, spread over the day by an intraday profile that follows the store's opening hours; each line
carries a basket quantity, a channel and the price (or promotion price) of the day. Each item's
shelf stock is walked through its own min-max replenishment, so a sale needs stock on the shelf.
Injected scenarios (demand spike and drop, stockout, phantom inventory) come out as labels, and
duplicates, disorder and late arrivals as noise. The model is described in ``docs/simulator.md``.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, overload

import numpy as np

from demandsense import __version__
from demandsense.errors import ConfigError, ServiceUnavailable
from demandsense.serde import JsonCodec, iso_from_ms, make_codec
from operators.events import CHANNELS, HOUR_MS, key_on

DAY_MS = 24 * HOUR_MS
SALE_FIELDS = ("event_id", "event_time", "store_id", "sku", "channel", "quantity", "unit_price", "promo_id")
INVENTORY_FIELDS = ("event_id", "event_time", "store_id", "sku", "event_type", "quantity", "on_hand", "in_transit")
DEFAULT_TOPICS = {"sales": "retail.sales.v1", "inventory": "retail.inventory.v1", "items": "retail.item-params.v1"}

# Demand shape. Weekday factors (Mon..Sun) average 1; hourly weights are relative.
WEEKLY = np.array([0.92, 0.88, 0.90, 0.96, 1.08, 1.32, 0.94])
WEEKDAY_HOURS = np.array(
    [0.3] * 7 + [0.5, 0.8, 1.0, 1.2, 1.5, 2.0, 1.8, 1.3, 1.3, 1.6, 2.2, 2.4, 1.9, 1.3, 0.8, 0.5, 0.3]
)
WEEKEND_HOURS = np.array(
    [0.3] * 7 + [0.4, 0.7, 1.1, 1.6, 1.9, 2.0, 1.9, 1.8, 1.7, 1.6, 1.5, 1.3, 1.0, 0.8, 0.5, 0.4, 0.3]
)
REMOTE_HOURS = np.array(
    [0.35, 0.2, 0.12, 0.1, 0.1, 0.15, 0.3, 0.6, 0.8, 0.9, 1.0, 1.0]
    + [1.2, 1.1, 1.0, 1.0, 1.0, 1.1, 1.3, 1.6, 1.8, 1.7, 1.2, 0.7]
)
REMOTE_SPLIT = (0.55, 0.30, 0.15)  # ONLINE, PICKUP, MARKETPLACE shares of orders not made in the store
STORE_HOURS = ((8, 22), (7, 23))  # regular and extended opening hours (UTC)
LEAD_TIMES_H = (24, 36, 48, 72, 96)
LEAD_TIME_P = (0.3, 0.15, 0.3, 0.15, 0.1)
PACKS = (2, 4, 6, 12)
PACK_P = (0.2, 0.3, 0.3, 0.2)

# The simulator's own replenishment: min covers the lead time at a peak day's rate plus Z sigmas.
PEAK_FACTOR = 1.3
SAFETY_Z = 4.0
REVIEW_DAYS = 1.5  # max - min, in days of demand (at least one pack)
PRESENTATION_MIN = 6  # no reorder point below one full basket line
SHRINK_PER_UNIT = 0.002  # recorded SHRINK events per unit sold, on top of the per-day rate
RETURN_DELAY_MS = 36 * HOUR_MS

# Scenarios, in the order items are assigned, with the least open-hour rate (units/hour) that
# makes each detectable.
SCENARIOS = ("STOCKOUT", "DEMAND_SPIKE", "DEMAND_DROP", "PHANTOM_INVENTORY")
MIN_RATE = {"DEMAND_SPIKE": 1.0, "DEMAND_DROP": 0.4, "PHANTOM_INVENTORY": 0.3, "STOCKOUT": 0.15}
EXPECTED_ALERTS = {
    "DEMAND_SPIKE": ["DEMAND_SPIKE"],
    "DEMAND_DROP": ["DEMAND_DROP"],
    "PHANTOM_INVENTORY": ["PHANTOM_INVENTORY"],
    "STOCKOUT": ["STOCKOUT_RISK", "OUT_OF_STOCK"],
}
SPIKE_HOURS = (3, 6)
LATE_DELAY_MS = (11 * 60_000, 90 * 60_000)
DISORDER_DELAY_MS = (3_000, 300_000)
DUPLICATE_DELAY_MS = (1_000, 60_000)

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())


@dataclass(frozen=True)
class Category:
    """A merchandise category: demand weight, price level and basket shape."""

    code: str
    name: str
    popularity: float
    price: float
    multi_share: float  # share of lines with 2-6 units
    multi_extra: float  # Poisson mean of units beyond 2 on such lines (capped at 4)


CATEGORIES = (
    Category("C01", "Fresh produce", 1.6, 2.2, 0.30, 1.0),
    Category("C02", "Dairy and eggs", 1.5, 2.0, 0.25, 0.8),
    Category("C03", "Bakery", 1.3, 2.6, 0.20, 0.6),
    Category("C04", "Meat and fish", 0.9, 7.5, 0.12, 0.4),
    Category("C05", "Beverages", 1.2, 1.8, 0.35, 1.6),
    Category("C06", "Snacks and sweets", 1.0, 1.9, 0.25, 1.0),
    Category("C07", "Frozen", 0.8, 4.0, 0.15, 0.6),
    Category("C08", "Pantry", 1.0, 2.4, 0.20, 0.8),
    Category("C09", "Household", 0.6, 4.5, 0.15, 0.8),
    Category("C10", "Health and beauty", 0.5, 6.0, 0.08, 0.3),
    Category("C11", "Pet care", 0.45, 8.0, 0.15, 1.2),
    Category("C12", "Baby", 0.4, 9.0, 0.10, 0.5),
)


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. Rates are fractions (0.005 is 0.5%)."""

    stores: int = 5
    skus: int = 200
    days: float = 7
    seed: int = 42
    start: datetime = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
    duplicate_rate: float = 0.005
    disorder_rate: float = 0.005
    late_rate: float = 0.001
    scenario_rate: float = 0.02  # fraction of items per scenario type
    categories: int = 10
    median_units_per_day: float = 0.4  # median item (store x SKU) demand
    rate_sigma: float = 1.9  # lognormal sigma of SKU popularity (the long tail)
    dispersion: float = 4.0  # gamma shape of the daily demand multiplier; lower is burstier
    online_share: float = 0.12  # share of demand ordered outside the store (ONLINE, PICKUP, MARKETPLACE)
    extended_hours_share: float = 0.3  # stores open 07-23 instead of 08-22
    promo_rate: float = 0.05  # fraction of SKUs with one chain-wide promotion
    snapshot_fraction: float = 1.0  # items with a daily SNAPSHOT at opening
    spike_factor: float = 3.0
    drop_factor: float = 0.25
    warmup_days: float = 2.0  # no scenario starts before this (a third of the run when days < 3)
    return_rate: float = 0.01  # fraction of sale lines returned later
    shrink_per_day: float = 0.01  # recorded SHRINK events per item and day
    adjust_per_day: float = 0.005  # recorded ADJUSTMENT events per item and day
    service_level: float = 0.95  # published in ItemParams


class Records(Sequence[dict[str, Any]]):
    """Records in arrival order, kept as tuples; each is built as a contract dict when read.

    ``rows`` holds ``(arrival_ms, n, event_time, store_id, sku, f5, f6, f7, f8)``, where ``n`` numbers
    the event (a duplicate repeats it) and ``f5..f8`` are the last four ``fields``.
    """

    def __init__(self, fields: tuple[str, ...], rows: list[tuple[Any, ...]], id_prefix: str) -> None:
        self.fields = fields
        self.rows = rows
        self.id_prefix = id_prefix

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return [self._dict(r) for r in self.rows[i]]
        return self._dict(self.rows[i])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return map(self._dict, self.rows)

    def _dict(self, r: tuple[Any, ...]) -> dict[str, Any]:
        f = self.fields
        return {
            f[0]: f"{self.id_prefix}{r[1]:09d}",
            f[1]: r[2],
            f[2]: r[3],
            f[3]: r[4],
            f[4]: r[5],
            f[5]: r[6],
            f[6]: r[7],
            f[7]: r[8],
        }


@dataclass(frozen=True)
class Simulation:
    """One simulated run: streams in arrival order, item master data, ground truth, manifest."""

    config: SimConfig
    sales: Records
    inventory: Records
    items: list[dict[str, Any]]
    labels: list[dict[str, Any]]
    manifest: dict[str, Any]


@dataclass(frozen=True)
class _Store:
    store_id: str
    open_ms: int
    close_ms: int
    rate: np.ndarray  # (7, 24) share of a day's lines per hour; row dow sums to WEEKLY[dow]
    cum: np.ndarray  # (7, 24) cumulative hour distribution
    in_store: np.ndarray  # (7, 24) share of an hour's lines made in the store (0 when closed)


@dataclass(frozen=True)
class _Scenario:
    kind: str
    at_ms: int
    until_ms: int | None = None
    factor: float | None = None


@dataclass(frozen=True, slots=True)
class _Item:
    store_id: str
    sku: str
    price: float
    promo_price: float
    promo_id: str | None
    lead_ms: int
    pack: int
    min_qty: int
    max_qty: int
    promo_min: int
    promo_max: int
    prep_from: int  # promotion stock levels apply in [prep_from, prep_to)
    prep_to: int
    open_ms: int
    close_ms: int
    on_hand: int
    snapshot: bool


@dataclass(slots=True)
class _Walk:
    sales: list[tuple[Any, ...]]
    inventory: list[tuple[Any, ...]]
    zero_at: int | None  # scenario items: when the shelf emptied for good
    withheld_at: int | None  # stockout items: the first order not placed
    lost: int  # units of demand the empty shelf could not serve
    first_out: int | None  # when the shelf first ran empty


def _check(cfg: SimConfig) -> None:
    if cfg.stores < 1 or cfg.skus < 1:
        raise ConfigError(f"stores and skus must be 1 or more (got {cfg.stores}, {cfg.skus})")
    if not cfg.days > 0:
        raise ConfigError(f"days must be above 0 (got {cfg.days})")
    if cfg.start.tzinfo is None:
        raise ConfigError("start must be timezone-aware (UTC)")
    if not 1 <= cfg.categories <= len(CATEGORIES):
        raise ConfigError(f"categories must be 1 to {len(CATEGORIES)} (got {cfg.categories})")
    for name in ("duplicate_rate", "disorder_rate", "late_rate", "scenario_rate", "promo_rate", "snapshot_fraction"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise ConfigError(f"{name} must be between 0 and 1 (got {getattr(cfg, name)})")
    if cfg.late_rate + cfg.disorder_rate > 1:
        raise ConfigError("late_rate + disorder_rate must not exceed 1")


def _basket_moments(cat: Category) -> tuple[float, float]:
    """Mean and second moment of a line's quantity: 1, or 2 + min(4, Poisson) with ``multi_share``."""
    lam, pmf, p = cat.multi_extra, np.exp(-cat.multi_extra), []
    for j in range(4):
        p.append(pmf)
        pmf *= lam / (j + 1)
    probs = np.array(p + [max(0.0, 1 - sum(p))])
    q = 2 + np.arange(5)
    m = cat.multi_share
    return 1 - m + m * float(probs @ q), 1 - m + m * float(probs @ q**2)


def _store(store_id: str, hours: tuple[int, int], online_share: float) -> _Store:
    open_h, close_h = hours
    rate, in_store = np.empty((7, 24)), np.empty((7, 24))
    remote = online_share * REMOTE_HOURS / REMOTE_HOURS.sum()
    for dow in range(7):
        shape = (WEEKEND_HOURS if dow >= 5 else WEEKDAY_HOURS).copy()
        shape[:open_h] = 0
        shape[close_h:] = 0
        local = (1 - online_share) * shape / shape.sum()
        rate[dow] = WEEKLY[dow] * (local + remote)
        in_store[dow] = local / (local + remote)
    cum = np.cumsum(rate, axis=1)
    return _Store(store_id, open_h * HOUR_MS, close_h * HOUR_MS, rate, cum / cum[:, -1:], in_store)


def _open_slots(store: _Store, day0: int, n_days: int, lo: int, hi: int, hours: int) -> list[int]:
    """Hour-aligned starts of ``hours``-long windows inside opening hours and inside [lo, hi]."""
    first, last = store.open_ms // HOUR_MS, store.close_ms // HOUR_MS - hours
    return [
        t
        for d in range(n_days)
        for h in range(first, last + 1)
        if lo <= (t := day0 + d * DAY_MS + h * HOUR_MS) and t + hours * HOUR_MS <= hi
    ]


def _put_away(t: int, open_ms: int, close_ms: int) -> int:
    """When a delivery or return arriving at ``t`` is on the shelf: at once, or at the next opening."""
    day, h = t - t % DAY_MS, t % DAY_MS
    if h < open_ms:
        return day + open_ms + t % HOUR_MS
    if h >= close_ms:
        return day + DAY_MS + open_ms + t % HOUR_MS
    return t


def _put_away_all(t: np.ndarray, open_ms: int, close_ms: int) -> np.ndarray:
    """:func:`_put_away` for an array of times."""
    day, h = t - t % DAY_MS, t % DAY_MS
    next_open = np.where(h < open_ms, day, day + DAY_MS) + open_ms + t % HOUR_MS
    return np.where((h < open_ms) | (h >= close_ms), next_open, t)


def _demand(
    rng: np.random.Generator,
    store: _Store,
    lines_day: np.ndarray,
    day_mult: np.ndarray,
    hour_mods: dict[tuple[int, int], np.ndarray],
    cat: np.ndarray,
    multi: tuple[np.ndarray, np.ndarray],
    promo_days: tuple[np.ndarray, np.ndarray],
    dows: np.ndarray,
    span: tuple[int, int, int],
    cfg: SimConfig,
) -> dict[str, np.ndarray]:
    """One store's sale-line demand for every SKU, as arrays sorted by (item, time).

    Counts per item and day are Poisson around mean x gamma (negative binomial), drawn for the whole
    store at once, so sparse items cost no more than one draw per day. ``hour_mods`` rescales the
    hours of single item-days (spikes, the first day of a drop).
    """
    day0, start, end = span
    mean = lines_day[:, None] * WEEKLY[dows][None, :] * day_mult
    for (k, d), mod in hour_mods.items():
        mean[k, d] = lines_day[k] * float(store.rate[dows[d]] @ mod) * day_mult[k, d]
    gamma = rng.gamma(cfg.dispersion, 1 / cfg.dispersion, mean.shape)
    counts = rng.poisson(mean * gamma)
    ii, dd = np.nonzero(counts)
    c = counts[ii, dd]
    item, day = np.repeat(ii, c), np.repeat(dd, c)
    n = len(item)
    u = rng.random(n)
    hour = np.empty(n, np.int64)
    dow = dows[day]
    for w in range(7):
        m = dow == w
        hour[m] = np.searchsorted(store.cum[w], u[m], side="right")
    offsets = np.concatenate(([0], np.cumsum(c)))
    for (k, d), mod in hour_mods.items():
        for p in np.flatnonzero((ii == k) & (dd == d)):
            cum = np.cumsum(store.rate[dows[d]] * mod)
            a, b = offsets[p], offsets[p + 1]
            hour[a:b] = np.searchsorted(cum / cum[-1], u[a:b], side="right")
    hour = np.minimum(hour, 23)
    t = day0 + day * DAY_MS + hour * HOUR_MS + (rng.random(n) * HOUR_MS).astype(np.int64)
    remote = rng.choice(np.arange(1, 4), size=n, p=REMOTE_SPLIT)
    channel = np.where(rng.random(n) < store.in_store[dow, hour], 0, remote)
    share, extra = multi[0][cat[item]], multi[1][cat[item]]
    qty = np.where(rng.random(n) < share, 2 + np.minimum(4, rng.poisson(extra)), 1)
    promo = (day >= promo_days[0][item]) & (day < promo_days[1][item])
    returned = rng.random(n) < cfg.return_rate
    back = _put_away_all(t + rng.exponential(RETURN_DELAY_MS, n).astype(np.int64), store.open_ms, store.close_ms)
    back = np.where(returned & (back < end), back, -1)
    order = np.lexsort((t, item))
    order = order[(t[order] >= start) & (t[order] < end)]
    cols = {"item": item, "t": t, "qty": qty, "channel": channel, "promo": promo, "back": back}
    return {name: col[order] for name, col in cols.items()}


def _stock_noise(
    rng: np.random.Generator,
    store: _Store,
    units_day: np.ndarray,
    n_days: int,
    span: tuple[int, int, int],
    cfg: SimConfig,
) -> dict[str, np.ndarray]:
    """Recorded SHRINK (kind 0) and ADJUSTMENT (kind 1) events in opening hours, sorted by (item, time)."""
    day0, start, end = span
    days = (end - start) / DAY_MS
    k = np.arange(len(units_day))
    n_shrink = rng.poisson(days * (cfg.shrink_per_day + SHRINK_PER_UNIT * units_day))
    n_adjust = rng.poisson(days * cfg.adjust_per_day, len(units_day))
    item = np.concatenate((np.repeat(k, n_shrink), np.repeat(k, n_adjust)))
    kind = np.concatenate((np.zeros(n_shrink.sum(), np.int64), np.ones(n_adjust.sum(), np.int64)))
    n = len(item)
    open_span = store.close_ms - store.open_ms
    t = day0 + rng.integers(0, n_days, n) * DAY_MS + store.open_ms + (rng.random(n) * open_span).astype(np.int64)
    size = 1 + (rng.random(n) < 0.25)
    qty = np.where(kind == 0, -size, np.where(rng.random(n) < 0.5, -size, size))
    order = np.lexsort((t, item))
    order = order[(t[order] >= start) & (t[order] < end)]
    return {"item": item[order], "t": t[order], "kind": kind[order], "qty": qty[order]}


def _walk(
    it: _Item,
    dem: tuple[list[int], ...],
    noise: tuple[list[int], ...],
    openings: list[int],
    start_ms: int,
    end_ms: int,
    *,
    phantom_at: int | None = None,
    withhold_after: int | None = None,
) -> _Walk:
    """Walk one item's shelf through its demand, stock events and replenishment, in time order.

    ``phantom_at`` empties the shelf unrecorded (the books keep their stock, receipts still reach
    the books only); ``withhold_after`` stops the orders from the first reorder at or after it.
    Both freeze returns and recorded stock noise from then on.
    """
    d_t, d_qty, d_ch, d_promo, d_back = dem
    n_t, n_kind, n_qty = noise
    ticks = [(t, 1, j) for j, t in enumerate(d_t)]
    ticks += [(t, 0, 0) for t in openings]
    ticks += [(t, 2, j) for j, t in enumerate(n_t)]
    ticks.append((start_ms, 0, 1))  # the opening snapshot of the run
    if phantom_at is not None:
        ticks.append((phantom_at, 3, 0))
    ticks.sort()
    sid, sku, pack = it.store_id, it.sku, it.pack
    book = shelf = it.on_hand
    transit = inbound = lost = 0
    pending: list[tuple[int, int, int]] = []  # (time, units, 0 receipt | 1 return)
    sales: list[tuple[Any, ...]] = []
    inv: list[tuple[Any, ...]] = []
    frozen = phantom = False
    zero_at: int | None = None
    withheld_at: int | None = None
    first_out: int | None = None
    for t, kind, j in ticks:
        while pending and pending[0][0] <= t:
            pt, pq, returned = heapq.heappop(pending)
            if returned:
                if not frozen:
                    book += pq
                    shelf += pq
                    inv.append((pt, sid, sku, "RETURN", pq, None, None))
                continue
            transit -= pq
            inbound -= 1
            book += pq
            if not phantom:
                shelf += pq
            inv.append((pt, sid, sku, "RECEIPT", pq, None, transit))
        if kind == 1:
            q = d_qty[j]
            if q > shelf:
                lost += q - shelf
                q = shelf
                if q == 0:
                    continue
            shelf -= q
            book -= q
            paid, promo_id = (it.promo_price, it.promo_id) if d_promo[j] else (it.price, None)
            sales.append((t, sid, sku, CHANNELS[d_ch[j]], q, paid, promo_id))
            if d_back[j] >= 0 and not frozen:
                heapq.heappush(pending, (d_back[j], min(q, 1 + q // 4), 1))
        elif kind == 2:
            q = max(n_qty[j], -shelf)
            if frozen or q == 0:
                continue
            book += q
            shelf += q
            inv.append((t, sid, sku, "SHRINK" if n_kind[j] == 0 else "ADJUSTMENT", q, None, None))
        elif kind == 3:
            shelf, phantom, frozen, zero_at = 0, True, True, t
            continue
        if shelf == 0 and kind != 0:
            first_out = t if first_out is None else first_out
            if withheld_at is not None and inbound == 0 and zero_at is None:
                zero_at = t
        if withheld_at is None:
            promo_stock = it.prep_from <= t < it.prep_to
            position = book + transit
            if position <= (it.promo_min if promo_stock else it.min_qty):
                if withhold_after is not None and t >= withhold_after:
                    withheld_at, frozen = t, True
                else:
                    q = -(-((it.promo_max if promo_stock else it.max_qty) - position) // pack) * pack
                    transit += q
                    arrive = _put_away(t + it.lead_ms, it.open_ms, it.close_ms)
                    if arrive < end_ms:
                        heapq.heappush(pending, (arrive, q, 0))
                        inbound += 1
        if kind == 0 and (j == 1 or it.snapshot):
            inv.append((t, sid, sku, "SNAPSHOT", 0, book, transit))
    return _Walk(sales, inv, zero_at, withheld_at, lost, first_out)


def _arrange(
    rng: np.random.Generator, rows: list[tuple[Any, ...]], cfg: SimConfig, duplicates: bool
) -> tuple[list[tuple[Any, ...]], dict[str, int]]:
    """Number the rows, delay a few (disorder, late), repeat a few (duplicates), sort by arrival."""
    n = len(rows)
    event_time = np.fromiter(map(itemgetter(0), rows), np.int64, n)
    u = rng.random(n)
    late = u < cfg.late_rate
    disorder = ~late & (u < cfg.late_rate + cfg.disorder_rate)
    delay = np.zeros(n, np.int64)
    delay[late] = rng.integers(*LATE_DELAY_MS, late.sum())
    lo, hi = np.log(DISORDER_DELAY_MS)
    delay[disorder] = np.exp(rng.uniform(lo, hi, disorder.sum())).astype(np.int64)
    arrival = (event_time + delay).tolist()
    out = [(a, i, *r) for i, (a, r) in enumerate(zip(arrival, rows, strict=True))]
    dup = np.flatnonzero(rng.random(n) < cfg.duplicate_rate) if duplicates else np.empty(0, np.int64)
    gaps = rng.integers(*DUPLICATE_DELAY_MS, len(dup)).tolist()
    out += [(arrival[i] + g, i, *rows[i]) for i, g in zip(dup.tolist(), gaps, strict=True)]
    out.sort(key=itemgetter(0))
    return out, {"duplicates": len(dup), "disordered": int(disorder.sum()), "late": int(late.sum())}


def _item_rates(rng: np.random.Generator, cfg: SimConfig, cats: Sequence[Category], cat: np.ndarray) -> np.ndarray:
    """Units per day per (store, SKU): SKU popularity x category x store size x store-SKU noise."""
    popularity = np.exp(rng.normal(0, cfg.rate_sigma, cfg.skus))
    weight = np.array([c.popularity for c in cats])
    weight = weight / np.exp(np.log(weight).mean())
    size = np.exp(rng.normal(0, 0.35, cfg.stores))
    local = np.exp(rng.normal(0, 0.5, (cfg.stores, cfg.skus)))
    return cfg.median_units_per_day * size[:, None] * (popularity * weight[cat])[None, :] * local


def _plan_promos(
    rng: np.random.Generator, cfg: SimConfig, n_days: int, excluded: set[int]
) -> dict[int, tuple[int, int, float, float, str]]:
    """Chain-wide promotions: SKU -> (first day, end day, lift, price factor, promo_id)."""
    pool = [k for k in range(cfg.skus) if k not in excluded]
    count = min(len(pool), round(cfg.promo_rate * cfg.skus))
    if n_days < 2 or count == 0:
        return {}
    chosen = sorted(rng.choice(pool, count, replace=False).tolist())
    promos = {}
    for i, k in enumerate(chosen):
        first = int(rng.integers(1, n_days))
        lift = float(rng.uniform(1.5, 3.0))
        cut = 0.1 + 0.15 * (lift - 1.5) / 1.5 + float(rng.uniform(0, 0.05))
        promos[k] = (first, min(n_days, first + int(rng.integers(3, 8))), lift, 1 - cut, f"P{i + 1:04d}")
    return promos


def _warm_end(cfg: SimConfig, start: int, end: int) -> int:
    """No scenario starts before this: ``warmup_days`` in, or a third of runs under 3 days."""
    return start + int(cfg.warmup_days * DAY_MS if cfg.days >= 3 else (end - start) / 3)


def _plan_scenarios(
    rng: np.random.Generator,
    cfg: SimConfig,
    stores: list[_Store],
    rate_open: np.ndarray,
    cover_h: np.ndarray,
    span: tuple[int, int, int],
    n_days: int,
) -> dict[tuple[int, int], _Scenario]:
    """Scenario items (disjoint, by rate) and times (opening hours, after the warm-up).

    A STOCKOUT's time is the target for its empty shelf; the walk finds when to withhold orders.
    """
    day0, start, end = span
    warm_end = _warm_end(cfg, start, end)
    late_start = max(warm_end + (end - warm_end) // 2, end - DAY_MS, warm_end + HOUR_MS)
    n_items = rate_open.size
    want = max(1, round(cfg.scenario_rate * n_items)) if cfg.scenario_rate > 0 else 0
    order = rng.permutation(n_items)
    used: set[int] = set()
    plan: dict[tuple[int, int], _Scenario] = {}
    for kind in SCENARIOS:
        ok = rate_open.ravel() >= MIN_RATE[kind]
        if kind == "STOCKOUT":
            ok &= cover_h.ravel() <= 0.8 * (end - start) / HOUR_MS
        picked = [int(i) for i in order if ok[i] and i not in used][:want]
        if not picked and want:
            rest = [i for i in range(n_items) if i not in used and rate_open.flat[i] > 0]
            score = cover_h.ravel() if kind == "STOCKOUT" else -rate_open.ravel()
            picked = [min(rest, key=lambda i: score[i])] if rest else []
        for i in picked:
            s, k = divmod(i, cfg.skus)
            scenario = _scenario_at(rng, cfg, kind, stores[s], (day0, warm_end, end, late_start), n_days)
            if scenario is not None:
                plan[(s, k)] = scenario
                used.add(i)
    return plan


def _scenario_at(
    rng: np.random.Generator, cfg: SimConfig, kind: str, store: _Store, times: tuple[int, int, int, int], n_days: int
) -> _Scenario | None:
    day0, warm_end, end, late_start = times
    hours = int(rng.integers(SPIKE_HOURS[0], SPIKE_HOURS[1] + 1)) if kind == "DEMAND_SPIKE" else 1
    slots = _open_slots(store, day0, n_days, warm_end, end if kind == "DEMAND_SPIKE" else late_start, hours)
    if not slots:
        return None
    at = int(rng.choice(slots))
    if kind == "DEMAND_SPIKE":
        return _Scenario(kind, at, at + hours * HOUR_MS, cfg.spike_factor)
    if kind == "DEMAND_DROP":
        return _Scenario(kind, at, None, cfg.drop_factor)
    return _Scenario(kind, at + int(rng.integers(0, HOUR_MS)))


def _walk_stockout(
    it: _Item,
    args: tuple[Any, ...],
    target: int,
    drain_h: float,
    bounds: tuple[int, int, int],
) -> _Walk:
    """Withhold the item's orders early enough for its shelf to empty near ``target``.

    The first reorder after ``withhold_after`` is not placed; the stock then drains in about
    ``drain_h`` hours. Up to four walks shift the withholding until the shelf empties between
    the warm-up and three hours before the end; ``zero_at`` stays None when none does.
    """
    start, warm_end, end = bounds
    step = max(int(drain_h * HOUR_MS) // 2, HOUR_MS)
    withhold = max(start, target - int(drain_h * HOUR_MS))
    for _ in range(4):
        walk = _walk(it, *args, withhold_after=withhold)
        if walk.zero_at is not None and walk.zero_at < warm_end:
            withhold += step
        elif walk.zero_at is None or walk.zero_at > end - 3 * HOUR_MS:
            withhold = max(start, withhold - step)
        else:
            return walk
    walk.zero_at = None
    return walk


def _demand_mods(
    plan: dict[tuple[int, int], _Scenario], s: int, k_count: int, day0: int, n_days: int, promos: dict[int, Any]
) -> tuple[np.ndarray, dict[tuple[int, int], np.ndarray]]:
    """Day multipliers (promotion lifts, days after a drop) and hour multipliers of one store."""
    day_mult = np.ones((k_count, n_days))
    for k, (first, last, lift, _, _) in promos.items():
        day_mult[k, first:last] = lift
    hour_mods: dict[tuple[int, int], np.ndarray] = {}
    for (ps, k), sc in plan.items():
        if ps != s or sc.factor is None:
            continue
        d, h = divmod((sc.at_ms - day0) // HOUR_MS, 24)
        mod = np.ones(24)
        if sc.until_ms is None:
            mod[h:] = sc.factor
            day_mult[k, d + 1 :] *= sc.factor
        else:
            mod[h : h + (sc.until_ms - sc.at_ms) // HOUR_MS] = sc.factor
        hour_mods[(k, d)] = mod
    return day_mult, hour_mods


def _expected_rate(store: _Store, units_day: float, lines_day: float, at_ms: int, until_ms: int | None) -> float:
    """Mean units/hour of an item (no scenario, no daily noise) over [at, until) or at ``at``'s hour."""
    hours = range(at_ms // HOUR_MS, (until_ms or at_ms + HOUR_MS) // HOUR_MS)
    lines = [lines_day * store.rate[(h // 24 + 3) % 7, h % 24] for h in hours]  # epoch day 0 was a Thursday
    return round(float(np.mean(lines)) * units_day / lines_day, 4) if lines_day > 0 else 0.0


def _id_prefix(cfg: SimConfig) -> str:
    digest = hashlib.sha1(repr(asdict(cfg)).encode()).hexdigest()[:6]
    return f"sim{cfg.seed}-{digest}-"


@dataclass(frozen=True)
class _Chain:
    """The catalogue, the stores and the plan: everything decided before the walks."""

    span: tuple[int, int, int]  # (first midnight, start, end) in epoch ms
    n_days: int
    dows: np.ndarray
    cats: tuple[Category, ...]
    cat: np.ndarray  # (K,) category index per SKU
    sku_ids: list[str]
    price: np.ndarray
    cost: np.ndarray
    pack: np.ndarray
    units: np.ndarray  # (S, K) mean units per day
    lines: np.ndarray  # (S, K) mean sale lines per day
    lead_h: np.ndarray
    min_qty: np.ndarray
    max_qty: np.ndarray
    on_hand: np.ndarray
    snapshot: np.ndarray
    stores: list[_Store]
    promos: dict[int, tuple[int, int, float, float, str]]
    plan: dict[tuple[int, int], _Scenario]
    cover_h: np.ndarray  # (S, K) hours a half-full shelf lasts


def _chain(cfg: SimConfig, rng: np.random.Generator) -> _Chain:
    start = int(cfg.start.timestamp() * 1000)
    end = start + int(cfg.days * DAY_MS)
    day0 = start - start % DAY_MS
    n_days = -(-(end - day0) // DAY_MS)
    span = (day0, start, end)
    cats = CATEGORIES[: cfg.categories]
    moments = np.array([_basket_moments(c) for c in cats])
    cat = rng.integers(0, len(cats), cfg.skus)
    price = np.round(np.array([cats[c].price for c in cat]) * np.exp(rng.normal(0, 0.45, cfg.skus)), 1)
    price = np.round(np.maximum(price - 0.01, 0.29), 2)
    cost = np.round(price * rng.uniform(0.55, 0.70, cfg.skus), 2)
    units = _item_rates(rng, cfg, cats, cat)
    lines = units / moments[cat, 0][None, :]
    pack = np.where(units.mean(axis=0) >= 1, rng.choice(PACKS, cfg.skus, p=PACK_P), 1)
    lead_h = rng.choice(LEAD_TIMES_H, (cfg.stores, cfg.skus), p=LEAD_TIME_P)
    lead_days = lead_h / 24
    var_day = lines * moments[cat, 1][None, :] + units**2 / cfg.dispersion
    min_qty = np.ceil(lead_days * units * PEAK_FACTOR + SAFETY_Z * np.sqrt(lead_days * var_day)).astype(int) + 1
    min_qty = np.maximum(min_qty, PRESENTATION_MIN)
    max_qty = min_qty + np.maximum(pack[None, :], np.ceil(units * REVIEW_DAYS).astype(int))
    hours = [STORE_HOURS[int(x)] for x in rng.random(cfg.stores) < cfg.extended_hours_share]
    stores = [_store(f"S{s + 1:03d}", hours[s], cfg.online_share) for s in range(cfg.stores)]
    open_hours = np.array([(st.close_ms - st.open_ms) / HOUR_MS for st in stores])
    cover_h = (min_qty + max_qty) / 2 / np.maximum(units / 24, 1e-9)
    plan = _plan_scenarios(rng, cfg, stores, units / open_hours[:, None], cover_h, span, n_days)
    return _Chain(
        span=span,
        n_days=n_days,
        dows=(day0 // DAY_MS + 3 + np.arange(n_days)) % 7,  # epoch day 0 was a Thursday
        cats=cats,
        cat=cat,
        sku_ids=[f"{cats[c].code}-{k + 1:06d}" for k, c in enumerate(cat.tolist())],
        price=price,
        cost=cost,
        pack=pack,
        units=units,
        lines=lines,
        lead_h=lead_h,
        min_qty=min_qty,
        max_qty=max_qty,
        on_hand=rng.integers(np.ceil(0.8 * min_qty).astype(int), max_qty + 1),
        snapshot=rng.random((cfg.stores, cfg.skus)) < cfg.snapshot_fraction,
        stores=stores,
        promos=_plan_promos(rng, cfg, n_days, {k for _, k in plan}),
        plan=plan,
        cover_h=cover_h,
    )


def _item(ch: _Chain, s: int, k: int) -> _Item:
    store, promo = ch.stores[s], ch.promos.get(k)
    day0, lead_ms, price = ch.span[0], int(ch.lead_h[s, k]) * HOUR_MS, float(ch.price[k])
    lift = promo[2] if promo else 1.0
    return _Item(
        store_id=store.store_id,
        sku=ch.sku_ids[k],
        price=price,
        promo_price=round(price * promo[3], 2) if promo else price,
        promo_id=promo[4] if promo else None,
        lead_ms=lead_ms,
        pack=int(ch.pack[k]),
        min_qty=int(ch.min_qty[s, k]),
        max_qty=int(ch.max_qty[s, k]),
        promo_min=int(np.ceil(ch.min_qty[s, k] * lift)),
        promo_max=int(np.ceil(ch.max_qty[s, k] * lift)),
        prep_from=day0 + promo[0] * DAY_MS - lead_ms - DAY_MS if promo else 0,
        prep_to=day0 + promo[1] * DAY_MS if promo else 0,
        open_ms=store.open_ms,
        close_ms=store.close_ms,
        on_hand=int(ch.on_hand[s, k]),
        snapshot=bool(ch.snapshot[s, k]),
    )


@dataclass
class _Output:
    sales: list[tuple[Any, ...]]
    inventory: list[tuple[Any, ...]]
    items: list[dict[str, Any]]
    labels: list[dict[str, Any]]
    unrealised: list[dict[str, Any]]
    natural_stockouts: list[dict[str, Any]]
    lost: int = 0


def _run_store(cfg: SimConfig, ch: _Chain, s: int, rng: np.random.Generator, out: _Output) -> None:
    """Demand and stock noise for one store, then each item's walk; appends to ``out``."""
    store, (day0, start, end), skus = ch.stores[s], ch.span, cfg.skus
    day_mult, hour_mods = _demand_mods(ch.plan, s, skus, day0, ch.n_days, ch.promos)
    promo_days = (np.full(skus, ch.n_days), np.full(skus, ch.n_days))
    for k, (first, last, *_) in ch.promos.items():
        promo_days[0][k], promo_days[1][k] = first, last
    multi = (np.array([c.multi_share for c in ch.cats]), np.array([c.multi_extra for c in ch.cats]))
    dem = _demand(rng, store, ch.lines[s], day_mult, hour_mods, ch.cat, multi, promo_days, ch.dows, ch.span, cfg)
    noise = _stock_noise(rng, store, ch.units[s], ch.n_days, ch.span, cfg)
    d_cols = [dem[c].tolist() for c in ("t", "qty", "channel", "promo", "back")]
    n_cols = [noise[c].tolist() for c in ("t", "kind", "qty")]
    d_bounds = np.searchsorted(dem["item"], np.arange(skus + 1)).tolist()
    n_bounds = np.searchsorted(noise["item"], np.arange(skus + 1)).tolist()
    openings = [t for d in range(ch.n_days) if start < (t := day0 + d * DAY_MS + store.open_ms) < end]
    bounds = (start, _warm_end(cfg, start, end), end)
    for k in range(skus):
        it, sc = _item(ch, s, k), ch.plan.get((s, k))
        args = (
            tuple(col[d_bounds[k] : d_bounds[k + 1]] for col in d_cols),
            tuple(col[n_bounds[k] : n_bounds[k + 1]] for col in n_cols),
            openings,
            start,
            end,
        )
        if sc is not None and sc.kind == "STOCKOUT":
            walk = _walk_stockout(it, args, sc.at_ms, float(ch.cover_h[s, k]), bounds)
        else:
            walk = _walk(it, *args, phantom_at=sc.at_ms if sc and sc.kind == "PHANTOM_INVENTORY" else None)
        out.sales += walk.sales
        out.inventory += walk.inventory
        out.lost += walk.lost
        out.items.append(_item_params(it, float(ch.cost[k]), float(ch.lead_h[s, k]), ch.cats[ch.cat[k]].code, cfg))
        where = {"store_id": store.store_id, "sku": it.sku}
        if (sc is None or sc.factor is not None) and walk.first_out is not None:
            out.natural_stockouts.append(where | {"at": iso_from_ms(walk.first_out)})
        if sc is not None:
            label = _label(sc, walk, store, float(ch.units[s, k]), float(ch.lines[s, k]))
            if label is None:
                out.unrealised.append({"scenario": sc.kind} | where)
            else:
                out.labels.append(_ordered_label(label | where))


def generate(cfg: SimConfig) -> Simulation:
    """Simulate ``cfg``: the same config gives the same records, items and labels."""
    _check(cfg)
    seeds = np.random.SeedSequence(cfg.seed).spawn(2 + cfg.stores)
    ch = _chain(cfg, np.random.default_rng(seeds[0]))
    out = _Output([], [], [], [], [], [])
    for s in range(cfg.stores):
        _run_store(cfg, ch, s, np.random.default_rng(seeds[2 + s]), out)
    out.labels.sort(key=lambda x: (x["start"], x["store_id"], x["sku"]))
    noise_rng = np.random.default_rng(seeds[1])
    sales, sales_noise = _arrange(noise_rng, out.sales, cfg, duplicates=True)
    inventory, inv_noise = _arrange(noise_rng, out.inventory, cfg, duplicates=False)
    prefix = _id_prefix(cfg)
    manifest = {
        "generator": f"demandsense.simulate {__version__}",
        "seed": cfg.seed,
        "parameters": {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(cfg).items()},
        "start": iso_from_ms(ch.span[1]),
        "end": iso_from_ms(ch.span[2]),
        "event_id_prefix": prefix,
        "counts": {
            "items": len(out.items),
            "sales": len(sales),
            "sales_units": sum(r[4] for r in out.sales),
            "inventory": len(inventory),
            "inventory_by_type": dict(sorted(Counter(r[3] for r in out.inventory).items())),
            "labels": dict(sorted(Counter(x["scenario"] for x in out.labels).items())),
            "promotions": len(ch.promos),
            "lost_units": out.lost,
            "sales_noise": sales_noise,
            "inventory_noise": inv_noise,
        },
        "promotions": [
            {"sku": ch.sku_ids[k], "promo_id": p[4], "start": iso_from_ms(ch.span[0] + p[0] * DAY_MS)}
            | {"end": iso_from_ms(ch.span[0] + p[1] * DAY_MS), "lift": round(p[2], 3), "price_factor": round(p[3], 3)}
            for k, p in sorted(ch.promos.items())
        ],
        "natural_stockouts": out.natural_stockouts,
        "unrealised_scenarios": out.unrealised,
    }
    return Simulation(
        cfg,
        Records(SALE_FIELDS, sales, prefix + "s"),
        Records(INVENTORY_FIELDS, inventory, prefix + "i"),
        out.items,
        out.labels,
        manifest,
    )


@dataclass(frozen=True)
class DemandPaths:
    """The uncensored demand of every item: the sale lines :func:`generate` draws before any shelf.

    Item ``i`` is store ``i // skus``, SKU ``i % skus``, in the order of :attr:`items` (the same
    ItemParams dicts as ``Simulation.items``). Lines are sorted by (item, time) and carry promotion
    lifts and the demand scenarios (spikes, drops); the shelf scenarios (stockout, phantom) are about
    stock, not demand, and are not applied. Returns, shrink and adjustments are not included.
    """

    config: SimConfig
    start_ms: int
    end_ms: int
    items: list[dict[str, Any]]
    stores: list[dict[str, Any]]  # store_id, open_hour, close_hour (UTC)
    item: np.ndarray  # (n,) item index of each line
    t: np.ndarray  # (n,) event time, epoch ms
    qty: np.ndarray  # (n,) units asked for
    channel: np.ndarray  # (n,) index into CHANNELS
    promo: np.ndarray  # (n,) bool: the line falls in its SKU's promotion
    promo_price: np.ndarray  # (items,) price during the item's promotion (its price when it has none)
    promo_id: list[str | None]  # (items,)
    promotions: list[dict[str, Any]]  # sku, promo_id, start_ms, end_ms, lift, price_factor
    scenarios: list[dict[str, Any]]  # scenario, store_id, sku, item, start_ms, end_ms (None: open), factor

    @property
    def hours(self) -> int:
        """Whole hours from ``start_ms`` covering the run."""
        return -(-(self.end_ms - self.start_ms) // HOUR_MS)

    def hourly(self) -> np.ndarray:
        """Units demanded per item and hour from ``start_ms``: an (items, hours) int array."""
        out = np.zeros((len(self.items), self.hours), np.int64)
        np.add.at(out, (self.item, (self.t - self.start_ms) // HOUR_MS), self.qty)
        return out


def demand_paths(cfg: SimConfig) -> DemandPaths:
    """The demand :func:`generate` draws for ``cfg``, before the shelf censors it (same seed, same lines).

    For closed-loop replenishment studies: a policy under test decides the stock, so the lines it
    cannot serve are its lost sales. An item that never runs out in ``generate(cfg)`` sells exactly
    these lines there.
    """
    _check(cfg)
    seeds = np.random.SeedSequence(cfg.seed).spawn(2 + cfg.stores)
    ch = _chain(cfg, np.random.default_rng(seeds[0]))
    day0, start, end = ch.span
    multi = (np.array([c.multi_share for c in ch.cats]), np.array([c.multi_extra for c in ch.cats]))
    cols: dict[str, list[np.ndarray]] = {"item": [], "t": [], "qty": [], "channel": [], "promo": []}
    items, promo_price, promo_id = [], [], []
    for s in range(cfg.stores):
        rng = np.random.default_rng(seeds[2 + s])
        day_mult, hour_mods = _demand_mods(ch.plan, s, cfg.skus, day0, ch.n_days, ch.promos)
        promo_days = (np.full(cfg.skus, ch.n_days), np.full(cfg.skus, ch.n_days))
        for k, (first, last, *_) in ch.promos.items():
            promo_days[0][k], promo_days[1][k] = first, last
        dem = _demand(
            rng, ch.stores[s], ch.lines[s], day_mult, hour_mods, ch.cat, multi, promo_days, ch.dows, ch.span, cfg
        )
        for name in ("t", "qty", "channel", "promo"):
            cols[name].append(dem[name])
        cols["item"].append(dem["item"] + s * cfg.skus)
        for k in range(cfg.skus):
            it = _item(ch, s, k)
            items.append(_item_params(it, float(ch.cost[k]), float(ch.lead_h[s, k]), ch.cats[ch.cat[k]].code, cfg))
            promo_price.append(it.promo_price)
            promo_id.append(it.promo_id)
    scenarios = [
        {
            "scenario": sc.kind,
            "store_id": ch.stores[s].store_id,
            "sku": ch.sku_ids[k],
            "item": s * cfg.skus + k,
            "start_ms": sc.at_ms,
            "end_ms": sc.until_ms,
            "factor": sc.factor,
        }
        for (s, k), sc in sorted(ch.plan.items())
        if sc.factor is not None
    ]
    promotions = [
        {"sku": ch.sku_ids[k], "promo_id": p[4], "start_ms": day0 + p[0] * DAY_MS, "end_ms": day0 + p[1] * DAY_MS}
        | {"lift": p[2], "price_factor": p[3]}
        for k, p in sorted(ch.promos.items())
    ]
    return DemandPaths(
        config=cfg,
        start_ms=start,
        end_ms=end,
        items=items,
        stores=[
            {"store_id": st.store_id, "open_hour": st.open_ms // HOUR_MS, "close_hour": st.close_ms // HOUR_MS}
            for st in ch.stores
        ],
        item=np.concatenate(cols["item"]).astype(np.int64),
        t=np.concatenate(cols["t"]).astype(np.int64),
        qty=np.concatenate(cols["qty"]).astype(np.int64),
        channel=np.concatenate(cols["channel"]).astype(np.int64),
        promo=np.concatenate(cols["promo"]).astype(bool),
        promo_price=np.array(promo_price, float),
        promo_id=promo_id,
        promotions=promotions,
        scenarios=scenarios,
    )


def _item_params(it: _Item, cost: float, lead_h: float, category: str, cfg: SimConfig) -> dict[str, Any]:
    return {
        "store_id": it.store_id,
        "sku": it.sku,
        "unit_price": it.price,
        "unit_cost": cost,
        "lead_time_hours": lead_h,
        "service_level": cfg.service_level,
        "pack_size": it.pack,
        "min_qty": it.min_qty,
        "max_qty": it.max_qty,
        "category": category,
    }


def _label(sc: _Scenario, walk: _Walk, store: _Store, units_day: float, lines_day: float) -> dict[str, Any] | None:
    """The ground truth of one scenario, or None when it did not happen (a stock that never emptied)."""
    start = sc.at_ms if sc.kind in ("DEMAND_SPIKE", "DEMAND_DROP") else walk.zero_at
    if start is None:
        return None
    label = {
        "scenario": sc.kind,
        "start": iso_from_ms(start),
        "end": iso_from_ms(sc.until_ms) if sc.until_ms else None,
        "factor": sc.factor,
        "expected_alert": EXPECTED_ALERTS[sc.kind],
        "baseline_rate_per_hour": _expected_rate(store, units_day, lines_day, start, sc.until_ms),
    }
    if walk.withheld_at is not None:
        label["risk_from"] = iso_from_ms(walk.withheld_at)
    return label


def _ordered_label(label: dict[str, Any]) -> dict[str, Any]:
    keys = ("scenario", "store_id", "sku", "start", "end", "factor", "expected_alert", "baseline_rate_per_hour")
    return {k: label[k] for k in keys} | {k: v for k, v in label.items() if k not in keys}


class _Iso:
    """``iso_from_ms`` with the text up to the minute cached: the same text, faster."""

    def __init__(self) -> None:
        self._minutes: dict[int, str] = {}
        self._last: tuple[int, str] = (-1, "")

    def __call__(self, ms: int) -> str:
        if ms == self._last[0]:  # snapshots of a store share their time
            return self._last[1]
        minute, rest = divmod(ms, 60_000)
        head = self._minutes.get(minute)
        if head is None:
            head = self._minutes[minute] = iso_from_ms(minute * 60_000)[:17]
        text = f"{head}{rest // 1000:02d}.{rest % 1000:03d}Z"
        self._last = (ms, text)
        return text


class _Progress:
    """A self-updating stderr line: events done, of how many, and events/s."""

    def __init__(self, total: int, enabled: bool | None, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total, self.done, self.t0, self.shown = total, 0, time.perf_counter(), 0.0

    def add(self, n: int, label: str) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - self.shown > 0.2 or self.done >= self.total):
            self.shown = now
            frac = self.done / max(self.total, 1)
            bar = "#" * int(frac * 24)
            rate = self.done / max(now - self.t0, 1e-9)
            self.stream.write(f"\r{label:<10} [{bar:<24}] {self.done:,}/{self.total:,} events  {rate:,.0f}/s ")
            self.stream.flush()

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        """End the line, also when an error follows it."""
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _write_jsonl(path: Path, records: Iterator[dict[str, Any]], bar: _Progress, label: str) -> None:
    """One JSON object per line, event times as ISO-8601 UTC strings, written in chunks."""
    codec, iso = JsonCodec(), _Iso()
    with path.open("wb") as f:
        chunk: list[bytes] = []
        for rec in records:
            if "event_time" in rec:
                rec["event_time"] = iso(rec["event_time"])
            chunk.append(codec.encode(rec))
            if len(chunk) == 2_000:  # small chunks: many live orjson buffers make malloc slow
                f.write(b"\n".join(chunk) + b"\n")
                bar.add(len(chunk), label)
                chunk = []
        if chunk:
            f.write(b"\n".join(chunk) + b"\n")
        bar.add(len(chunk), label)


def write_files(sim: Simulation, out_dir: Path, *, progress: bool | None = None) -> dict[str, Path]:
    """Write ``sales.jsonl``, ``inventory.jsonl``, ``items.jsonl``, ``labels.jsonl`` and ``manifest.json``.

    Times are ISO-8601 UTC strings. ``progress`` None shows a progress line when stderr is a TTY.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    streams = {"sales": sim.sales, "inventory": sim.inventory, "items": sim.items, "labels": sim.labels}
    paths = {name: out_dir / f"{name}.jsonl" for name in streams}
    with _Progress(sum(map(len, streams.values())), progress) as bar:
        for name, records in streams.items():
            _write_jsonl(paths[name], iter(records), bar, name)
    paths["manifest"] = out_dir / "manifest.json"
    paths["manifest"].write_text(json.dumps(sim.manifest, indent=2) + "\n")
    return paths


def _producer(bootstrap_servers: str, on_delivery: Any) -> Any:
    """A throughput-tuned producer, with lz4 when this librdkafka build has it; a message not acknowledged
    within 60 s fails (librdkafka's default is 5 min: too long for someone waiting on a simulation)."""
    from confluent_kafka import KafkaException, Producer

    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "compression.type": "lz4",
        "message.timeout.ms": 60_000,
        "on_delivery": on_delivery,
        "logger": log,
    }
    try:
        return Producer(conf)
    except KafkaException:
        return Producer(conf | {"compression.type": "none"})


def produce(
    sim: Simulation,
    bootstrap_servers: str,
    *,
    fmt: str = "avro",
    topics: dict[str, str] | None = None,
    progress: bool = False,
) -> dict[str, int]:
    """Produce items, then sales and inventory (arrival order) to Kafka; messages per topic.

    Keys are ``store_id:sku``; values Confluent Avro (``fmt="avro"``) or JSON. ``topics`` overrides
    :data:`DEFAULT_TOPICS` by stream name (``sales``, ``inventory``, ``items``). A progress line is
    shown when ``progress`` or stderr is a TTY. Raises :class:`ServiceUnavailable` when the broker
    does not answer, or stops acknowledging (a message undelivered within 60 s ends the run).
    """
    from confluent_kafka import KafkaException

    failures: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(f"{msg.topic()}: {err.str()}")

    def undelivered(remaining: int = 0) -> ServiceUnavailable:
        first = "; ".join(dict.fromkeys(failures[:100]))
        return ServiceUnavailable(
            f"Kafka at {bootstrap_servers} did not take every message: {len(failures)} failed"
            f"{f' and {remaining} were still queued' if remaining else ''} ({first or 'flush timed out'})"
        )

    names = DEFAULT_TOPICS | (topics or {})
    producer = _producer(bootstrap_servers, delivered)
    try:
        producer.list_topics(timeout=5)
    except KafkaException as exc:
        why = exc.args[0].str()
        raise ServiceUnavailable(f"Kafka at {bootstrap_servers} did not answer within 5 s ({why})") from exc

    streams = (
        ("items", "ItemParams", sim.items),
        ("sales", "Sale", sim.sales),
        ("inventory", "InventoryEvent", sim.inventory),
    )
    counts: dict[str, int] = {}
    with _Progress(sum(len(r) for _, _, r in streams), progress or None) as bar:
        for stream, schema, records in streams:
            topic, codec, n = names[stream], make_codec(fmt, schema, topic=names[stream]), 0
            for rec in records:
                key, value = key_on(rec["store_id"], rec["sku"]).encode(), codec.encode(rec)
                when = rec.get("event_time", 0)  # CreateTime = event time, so consumers can align topics
                while True:
                    try:
                        producer.produce(topic, value, key, timestamp=when)
                        break
                    except BufferError:  # the queue is full: wait for acknowledgements
                        producer.poll(0.05)
                        if failures:
                            raise undelivered() from None
                n += 1
                if n % 10_000 == 0:
                    producer.poll(0)
                    bar.add(10_000, stream)
            bar.add(n % 10_000, stream)
            counts[topic] = n
        remaining = producer.flush(60)
    if failures or remaining:
        raise undelivered(remaining)
    return counts
