"""The state of one store: event-time ordering, deduplication, items, alerts and triggers.

A store is the unit of keyed state: its items share one seasonal profile and one watermark.
Events are buffered until the watermark (newest event time seen minus the allowed lateness)
passes them, then applied in event-time order, ties broken by kind and id, so any arrival order
within the lateness gives the same alerts. Time-driven checks (drops, phantom inventory,
stockouts) run on a fixed event-time grid. The store's clock follows the slowest input stream
still active. An event more than the allowed lateness behind the newest event of its own input
(topic partition or file) is a LATE dead letter: lateness is a property of each stream, not of
how streams interleave. An event from a stream that was quiet for ``stream_idle_s`` and resumes
behind the store's clock is not late by that rule; it is applied on arrival, so nothing valid is
lost, though decisions taken meanwhile did not know it. One record far ahead of its stream (a
wrong till clock) does not move the stream's clock until a second record confirms the leap.
Repeated ``event_id``s are dropped and counted.

With ``Detection.partition_progress``, each batch also brings the newest event time read from
each input partition, of any store (its records' Kafka timestamps, which producers set to the
event time): for live feeds whose partitions are in event-time order, a
partition that carried an event of the store then no longer holds its clock back until it carries
a later one *of the same store* (a store's sparse inventory feed), only until it has moved on.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from operators.alerting import Condition, priority, severity, step
from operators.alerting import alert_id as make_alert_id
from operators.events import HOUR_MS, Alert, DeadLetter, Event, InventoryEvent, ItemParams, Sale, Trigger, key_on
from operators.item import NEVER, ItemState, Look, item_param
from operators.policy import MODEL_VERSION, Detection, Policy
from operators.profile import StoreProfile
from operators.replenish import govern, order_up_to, reorder_point, static_min_max

TOTAL: Final = "\x00total"  # the key of all sale lines in StoreState.category_sales
DAY_MS: Final = 24 * HOUR_MS
EVICT_AFTER_MS: Final = 30 * DAY_MS
RATE_TYPES: Final = ("DEMAND_SPIKE", "DEMAND_DROP")
INVENTORY_ID: Final = "\x00inv:"  # before an inventory event id in StoreState.seen: sales and inventory ids may repeat


@dataclass(slots=True)
class StoreOut:
    """What one batch of a store produced."""

    alerts: list[Alert] = field(default_factory=list)
    triggers: list[Trigger] = field(default_factory=list)
    late: list[DeadLetter] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (source, outcome) -> records
    evicted: int = 0

    def count(self, source: str, outcome: str) -> None:
        """One more input record of ``source`` ended as ``outcome`` (ok, duplicate, late)."""
        self.counts[source, outcome] = self.counts.get((source, outcome), 0) + 1


_STORE_FIELDS: Final = (
    "store_id", "profile", "items", "params", "category_items", "category_sales", "buffer", "first_seen",
    "max_seen", "stream_max", "released", "next_tick", "due", "seen", "seen_pruned", "leaps", "progress",
)  # fmt: skip


class StoreState:
    """Keyed state of one store (see the module docstring for the rules)."""

    __slots__ = _STORE_FIELDS

    def __init__(self, store_id: str = "") -> None:
        self.store_id = store_id
        self.profile = StoreProfile()
        self.items: dict[str, ItemState] = {}
        self.params: dict[str, ItemParams] = {}
        self.category_items: dict[str, int] = {}  # items with master data, by category
        self.category_sales: dict[str | None, int] = {}  # sale lines by category (None: unknown; TOTAL: all)
        self.buffer: list[tuple[int, int, str, Sale | InventoryEvent]] = []
        self.first_seen: int | None = None
        self.max_seen: int | None = None
        self.stream_max: dict[tuple[str, int], int] = {}  # newest event time per input stream
        self.released: int | None = None  # events before this time are applied
        self.next_tick: int | None = None
        self.due: list[tuple[int, str]] = []  # (time, sku): when quiet items need a look (ItemState.queued)
        self.seen: dict[str, int] = {}  # event_id (an inventory event's after INVENTORY_ID) -> event time, for dedup
        self.seen_pruned = 0
        self.leaps: dict[tuple[str, int], int] = {}  # per stream: a leap ahead of its clock, not yet confirmed
        self.progress: dict[tuple[str, int], int] = {}  # per stream: newest event time read, of any store

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, s) for s in _STORE_FIELDS)

    def __setstate__(self, state: tuple) -> None:
        self.leaps, self.progress = {}, {}  # absent from snapshots made before they existed
        for name, value in zip(_STORE_FIELDS, state, strict=False):
            setattr(self, name, value)

    def on_events(
        self, events: list[Event], policy: Policy, progress: dict[tuple[str, int], int] | None = None
    ) -> StoreOut:
        """Take a batch in arrival order; apply whatever the watermark now releases.

        ``progress``: the newest event time read from each input stream so far, of any store (used
        with ``Detection.partition_progress``).
        """
        out = StoreOut()
        if progress is not None:
            self.progress = progress
        lateness = int(policy.detection.allowed_lateness_s * 1000)
        leap = max(lateness, HOUR_MS)
        counts = out.counts  # the "ok" count is inlined: a call per record costs more than the count
        for ev in events:
            if isinstance(ev, ItemParams):
                self._set_params(ev)
                out.count("items", "ok")
                continue
            stream = (ev.origin.source, ev.origin.partition) if ev.origin else ("", -1)
            source = stream[0]
            inventory = isinstance(ev, InventoryEvent)
            seen_id = INVENTORY_ID + ev.event_id if inventory else ev.event_id  # the two inputs number apart
            if seen_id in self.seen:
                out.count(source, "duplicate")
                continue
            newest = self.stream_max.get(stream)
            if newest is not None and ev.event_time < newest - lateness:
                out.late.append(_late(ev, newest - lateness))
                out.count(source, "late")
                continue
            if newest is None or ev.event_time > newest:
                self._advance(stream, newest, ev.event_time, leap)
            counts[source, "ok"] = counts.get((source, "ok"), 0) + 1
            self.seen[seen_id] = ev.event_time
            rank = 0 if inventory else 1
            self.buffer.append((ev.event_time, rank, ev.event_id, ev))
        if self.max_seen is not None:
            self._release(self.watermark(policy), policy, out)
            det = policy.detection
            self._prune_seen(self.max_seen - int(det.dedup_horizon_s * 1000), det.max_event_ids_per_store)
        return out

    def _advance(self, stream: tuple[str, int], newest: int | None, t: int, leap: int) -> None:
        """Move ``stream``'s clock to ``t``; a leap of more than ``leap`` ahead waits for a second record.

        One record far ahead of its stream (a till with a wrong clock: up to a day ahead is valid)
        would otherwise make the stream's next records look late. Such a record is applied in
        event-time order like any other, but moves the clock only once another record confirms the
        leap, and then to the nearer of the two. A stream's first record is judged against the
        store's clock.
        """
        base = newest if newest is not None else self.max_seen
        if base is not None and t > base + leap:
            pending = self.leaps.pop(stream, None)
            if pending is None:
                self.leaps[stream] = t
                return
            t = min(t, pending)
        elif stream in self.leaps and t >= self.leaps[stream]:
            del self.leaps[stream]
        self.stream_max[stream] = t
        if self.max_seen is None or t > self.max_seen:
            self.max_seen = t

    def watermark(self, policy: Policy) -> int:
        """Event time up to which the store's inputs are complete.

        The slowest of the streams still active (an event within ``stream_idle_s`` of the newest),
        less the allowed lateness: a sales feed a few minutes behind the inventory feed holds the
        store's clock back, so its sales are not missed by the time-driven checks; a stream that
        went quiet (a closed store's tills, a nightly count feed) does not.
        """
        assert self.max_seen is not None
        det = policy.detection
        active_since = self.max_seen - int(det.stream_idle_s * 1000)
        times = self.stream_max
        if det.partition_progress and self.progress:
            moved = self.progress
            times = {s: max(t, moved.get(s, t)) for s, t in times.items()}
        slowest = min(t for t in times.values() if t >= active_since)
        return slowest - int(det.allowed_lateness_s * 1000)

    def flush(self, policy: Policy) -> StoreOut:
        """Apply everything still buffered (end of input)."""
        out = StoreOut()
        if self.buffer:
            self._release(max(t for t, *_ in self.buffer) + 1, policy, out)
        return out

    # -- internals ------------------------------------------------------------------------------
    def _release(self, upto: int, policy: Policy, out: StoreOut) -> None:
        """Apply, in event-time order, every buffered event before ``upto``; the clock moves to it."""
        if self.released is not None and upto <= self.released:
            return
        tick_ms = int(policy.detection.tick_minutes * 60_000)
        buffer = self.buffer
        buffer.sort()  # appended as read, in runs that are nearly in order: fewer comparisons than a heap
        n = bisect.bisect_left(buffer, (upto,))  # the first event at or after upto
        due = buffer[:n]
        del buffer[:n]
        for t, _, _, ev in due:
            if self.next_tick is None:
                self.first_seen, self.next_tick = t, (t // tick_ms + 1) * tick_ms
            if self.next_tick <= t:  # a tick at t looks before the events at t
                self._ticks(t + 1, tick_ms, policy, out)
            self._apply(ev, policy, out, tick_ms)
        self._ticks(upto, tick_ms, policy, out)
        self.released = upto

    def _ticks(self, before: int, tick_ms: int, policy: Policy, out: StoreOut) -> None:
        """Time-driven checks on the grid before ``before``; each looks only at due items (a heap).

        An item has one live entry in the heap, at :attr:`ItemState.queued`, never later than its
        due time: an entry found early is pushed again at the due time, so the heap does not fill
        up with a stale entry for each event that moves an item's look later.
        """
        while self.next_tick is not None and self.next_tick < before:
            t = self.next_tick
            self.profile.advance(t)
            warm = self._warm(t, policy)
            while self.due and self.due[0][0] <= t:
                queued, sku = heapq.heappop(self.due)
                item = self.items.get(sku)
                if item is None or item.queued != queued:
                    continue  # superseded by an earlier entry, or the item is gone
                item.queued = None
                if item.due != queued:  # the look moved later since: queue it again then (if ever)
                    if item.due < NEVER:
                        item.queued = item.due
                        heapq.heappush(self.due, (item.due, sku))
                    continue
                prior = self.prior(sku)
                item.advance(t, self.profile, prior, policy.detection, warm)
                look = self._look(sku, item, t, prior, policy, warm)
                self._decide(sku, look, policy, out, tick_ms, stock_changed=False)
            if t % DAY_MS == 0:
                self._sweep(t, policy, out)
            self.next_tick = t + tick_ms

    def _sweep(self, t: int, policy: Policy, out: StoreOut) -> None:
        """Once a day: idle items shed their hourly detail; long-idle empty ones are dropped."""
        idle_ms = int(policy.detection.idle_hours * HOUR_MS)
        for sku, item in list(self.items.items()):
            if t - item.last_event > EVICT_AFTER_MS and not _open(item) and not item.on_hand:
                del self.items[sku]
                out.evicted += 1
            elif t - item.last_event > idle_ms and item.hourly is not None:
                item.shed_detail()

    def _apply(self, ev: Sale | InventoryEvent, policy: Policy, out: StoreOut, tick_ms: int) -> None:
        item = self.items.get(ev.sku)
        if item is None:
            if len(self.items) >= policy.detection.max_items_per_store:
                out.evicted += self._evict(len(self.items) // 100 + 1)
            item = self.items[ev.sku] = ItemState(ev.event_time)
        category = self._category(ev.sku)
        prior, warm = self._prior(category), self._warm(ev.event_time, policy)
        if isinstance(ev, Sale):
            self.profile.record_sale(ev.event_time)
            self.category_sales[category] = self.category_sales.get(category, 0) + 1
            self.category_sales[TOTAL] = self.category_sales.get(TOTAL, 0) + 1
            item.on_sale(ev, self.profile, prior, policy.detection, warm)
        else:
            item.on_inventory(ev, self.profile, prior, policy.detection, warm)
        out.changed.add(ev.sku)
        look = self._look(ev.sku, item, ev.event_time, prior, policy, warm)
        self._decide(ev.sku, look, policy, out, tick_ms)
        self._replenish(ev.sku, look, policy, out)

    def _look(self, sku: str, item: ItemState, t: int, prior: float, policy: Policy, warm: bool) -> Look:
        return Look(item, t, self.profile, prior, self.params.get(sku), policy.items, policy.detection, warm)

    def _set_params(self, params: ItemParams) -> None:
        old = self._category(params.sku)
        if old is not None:
            self.category_items[old] -= 1
        self.params[params.sku] = params
        if params.category is not None:
            self.category_items[params.category] = self.category_items.get(params.category, 0) + 1

    def _warm(self, t: int, policy: Policy) -> bool:
        return self.first_seen is not None and t - self.first_seen >= policy.detection.warmup_hours * HOUR_MS

    def view(self, sku: str, policy: Policy) -> dict[str, Any]:
        """What analysts see of one item now: rates, stock, risk and open alerts."""
        item = self.items[sku]
        t = item.t
        prior, det = self.prior(sku), policy.detection
        open_types: tuple[str, ...] = ()
        risk, last = 0.0, None
        if item.episodes:  # most items never had an alert
            episodes = item.episodes
            open_types = tuple(sorted(k for k, e in episodes.items() if e.open))
            risk = float(max((e.priority for e in episodes.values() if e.open), default=0))
            last = max(episodes.items(), key=lambda kv: kv[1].emitted_at)
        avail = (item.on_hand or 0) - item.reserved
        return {
            "expected_rate": round(item.base_rate(prior, det) * self.profile.intensity(t) * item.basket(), 4),
            "observed_rate": item.recent_units(t),
            "on_hand": item.on_hand,
            "position": item.position(),
            "hours_to_stockout": self._hours_to_stockout(item, avail, t, prior, det),
            "risk": risk,
            "open_alerts": open_types,
            "last_alert_type": last[0] if last else None,
            "last_alert_time": last[1].emitted_at if last else None,
            "hourly_units": tuple(item.hourly or ()),
        }

    def _hours_to_stockout(self, item: ItemState, avail: int, t: int, prior: float, det: Detection) -> float | None:
        """Exact (hour by hour through the profile) for items at risk; at the next day's mean rate otherwise."""
        if not item.on_hand or avail <= 0:
            return None if item.on_hand is None else 0.0
        if item.p_out >= 0.05:
            return item.hours_until(avail, t, self.profile, prior, det)
        rate = item.expected_units(t, 24, self.profile, prior, det) / 24
        return round(avail / rate, 1) if rate > 0 else None

    def prior(self, sku: str) -> float:
        """Transactions per hour of an average item of the store and category: what a new item borrows.

        The store's rate, times the category's share of the store's sales, spread over the
        category's items; items without a known category borrow from the whole store.
        """
        return self._prior(self._category(sku))

    def _prior(self, category: str | None) -> float:
        """:meth:`prior` of an item of ``category``."""
        total = self.category_sales.get(TOTAL, 0)
        if category is None or not total:
            return self.profile.mean_rate() / max(1, len(self.items))
        share = self.category_sales.get(category, 0) / total
        return self.profile.mean_rate() * share / max(1, self.category_items.get(category, 1))

    def _category(self, sku: str) -> str | None:
        params = self.params.get(sku)
        return params.category if params is not None else None

    def _decide(
        self, sku: str, look: Look, policy: Policy, out: StoreOut, tick_ms: int, *, stock_changed: bool = True
    ) -> None:
        item, t = look.item, look.t
        conds = item.conditions(look, stock_changed=stock_changed)
        for cond in conds:
            episodes = item.episodes or {}
            old = episodes.get(cond.alert_type)
            if old is None and not cond.active:
                continue
            prio = priority(cond, look.lead, policy.alerts)
            episode, status = step(old, cond, prio, t, policy.alerts)
            if episode is not None and episode is not old:
                if item.episodes is None:
                    item.episodes = {}
                item.episodes[cond.alert_type] = episode
            if status is None or episode is None:
                continue
            key = key_on(self.store_id, sku)
            evidence = dict(cond.evidence)
            evidence["episode_start_ms"] = float(episode.start)
            out.alerts.append(
                Alert(
                    alert_id=make_alert_id(key, cond.alert_type, episode.start, status, episode.seq),
                    alert_type=cond.alert_type,
                    status=status,
                    store_id=self.store_id,
                    sku=sku,
                    event_time=t,
                    priority=prio if status != "RESOLVED" else episode.priority,
                    severity=severity(prio if status != "RESOLVED" else episode.priority),
                    expected_rate=round(cond.expected_rate, 4),
                    observed_rate=round(cond.observed_rate, 4),
                    confidence=round(cond.confidence, 4),
                    hours_to_stockout=None if cond.hours_to_stockout is None else round(cond.hours_to_stockout, 2),
                    revenue_at_risk=None if cond.revenue_at_risk is None else round(cond.revenue_at_risk, 2),
                    reason=cond.reason if status != "RESOLVED" else f"Resolved: {_resolved(cond.alert_type, item)}",
                    model_version=MODEL_VERSION,
                    evidence=evidence,
                )
            )
            out.changed.add(sku)
        # the next look is at a tick: the first one at which time alone could change what the item's alerts say
        next_tick = (t // tick_ms + 1) * tick_ms
        wait = _wait(item, look, policy)
        item.due = NEVER if wait is None else max(-(-(t + wait) // tick_ms) * tick_ms, next_tick)
        # one live heap entry per item, never later than its due time (see _ticks); none while it needs no look
        if item.due < NEVER and (item.queued is None or item.due < item.queued):
            item.queued = item.due
            heapq.heappush(self.due, (item.due, sku))

    def _replenish(self, sku: str, look: Look, policy: Policy, out: StoreOut) -> None:
        """Order when the position falls to the reorder point (the cheap tests that say no come first)."""
        item, t = look.item, look.t
        pos = item.position()
        if pos is None:
            return
        params, d, gov = look.params, policy.items, policy.governance
        if item.ordered_at is not None and t - item.ordered_at > 2 * look.lead * HOUR_MS:
            item.on_order, item.ordered_at = 0, None  # never arrived: stop counting on it
        # our own orders may already be in the feed's in_transit: count each unit once
        position = pos + max(0, item.on_order - item.in_transit)
        stale = item.counted_at is None or t - item.counted_at > gov.stale_hours * HOUR_MS
        fallback = item.n_sales < gov.min_history_sales or stale
        if fallback:
            min_qty = int(item_param(params, "min_qty", d.min_qty))
            if position > min_qty:  # above the static minimum: nothing to order
                return
            plan = static_min_max(
                position,
                min_qty=min_qty,
                max_qty=int(item_param(params, "max_qty", d.max_qty)),
                pack_size=int(item_param(params, "pack_size", d.pack_size)),
            )
        else:
            pack = int(item_param(params, "pack_size", d.pack_size))
            if position > look.ceiling + pack:  # no plausible lead-time demand brings it to the reorder point
                return
            mean_l, var_l = look.moments
            service_level = item_param(params, "service_level", d.service_level)
            if position > reorder_point(mean_l, var_l, service_level):  # no order: skip the cycle's demand
                return
            cycle_from = t + int(look.lead * HOUR_MS)
            plan = order_up_to(
                position,
                lead_mean=mean_l,
                lead_variance=var_l,
                cycle_mean=item.expected_units(cycle_from, d.cycle_hours, self.profile, look.prior, look.det),
                service_level=service_level,
                pack_size=pack,
            )
        if plan is None:
            return
        approval, why = govern(plan, item_param(params, "unit_cost", d.unit_cost), gov)
        if plan.fallback:
            why += "; static min-max used: " + ("inventory count is stale" if stale else "too little sales history")
        key, lead = key_on(self.store_id, sku), look.lead
        tid = hashlib.blake2b(f"{key}|{t}|{position}|{plan.order_quantity}".encode(), digest_size=12).hexdigest()
        out.triggers.append(
            Trigger(
                trigger_id=tid,
                store_id=self.store_id,
                sku=sku,
                event_time=t,
                order_quantity=plan.order_quantity,
                inventory_position=position,
                reorder_point=plan.reorder_point,
                order_up_to=plan.order_up_to,
                lead_time_hours=lead,
                demand_rate_per_hour=round(look.moments[0] / lead, 4),
                approval=approval,
                approval_reason=why,
                policy=plan.policy,
                model_version=MODEL_VERSION,
                fallback=plan.fallback,
            )
        )
        item.on_order += plan.order_quantity
        item.ordered_at = t
        out.changed.add(sku)

    def _evict(self, n: int) -> int:
        """Drop the ``n`` longest-idle items without an open alert (a hostile or runaway catalogue)."""
        idle = sorted((item.last_event, sku) for sku, item in self.items.items() if not _open(item))
        for _, sku in idle[:n]:
            del self.items[sku]
        return min(n, len(idle))

    def _prune_seen(self, floor: int, cap: int) -> None:
        """Forget event ids older than ``floor``, and the oldest beyond ``cap`` ids (bounded memory)."""
        if len(self.seen) < 2 * self.seen_pruned + 1024 and len(self.seen) <= cap:
            return
        kept = {k: t for k, t in self.seen.items() if t >= floor}
        if len(kept) > cap:
            kept = dict(sorted(kept.items(), key=lambda kv: kv[1])[len(kept) - cap // 2 :])
        self.seen = kept
        self.seen_pruned = len(self.seen)


def _open(item: ItemState) -> bool:
    """The item has an open alert (a loop: cheaper than ``any`` over a generator, called per look)."""
    if item.episodes is not None:
        for e in item.episodes.values():
            if e.open:
                return True
    return False


def _wait(item: ItemState, look: Look, policy: Policy) -> int | None:
    """Milliseconds until time alone could change one of the item's alerts; None when only an event can.

    An open STOCKOUT_RISK is looked at on every tick (the lead-time window slides with the clock), and so
    is an open rate alert whose priority could still escalate (:func:`_may_escalate`); the rest wait
    for :meth:`Look.next_look`. Shelf alerts (OUT_OF_STOCK, PHANTOM_INVENTORY) change with the shelf's
    events: a sale, a count, a receipt.
    """
    if item.episodes is None:
        return look.next_look(())
    opened = []
    for kind, e in item.episodes.items():
        if e.open:
            if kind == "STOCKOUT_RISK" or (kind in RATE_TYPES and _may_escalate(kind, e.priority, look, policy)):
                return 0
            opened.append(kind)
    return look.next_look(opened)


def _may_escalate(kind: str, prio: int, look: Look, policy: Policy) -> bool:
    """Whether a rate alert at ``prio`` could reach an UPDATE while the item stays quiet: its priority at
    full confidence and the most revenue at risk it can claim (:meth:`Look.revenue_ceiling`)."""
    rules = policy.alerts
    ceiling = Condition(kind, True, 1.0, revenue_at_risk=look.revenue_ceiling(kind))
    return priority(ceiling, look.lead, rules) - prio >= rules.update_delta


def _resolved(alert_type: str, item: ItemState) -> str:
    if alert_type == "STOCKOUT_RISK" and item.out_of_stock():
        return "the shelf is empty now (see OUT_OF_STOCK)."
    return {
        "DEMAND_SPIKE": "sales are back within the expected range.",
        "DEMAND_DROP": "sales are back within the expected range.",
        "STOCKOUT_RISK": "the inventory position covers the lead time again.",
        "OUT_OF_STOCK": "stock is available again.",
        "PHANTOM_INVENTORY": "the item sells again or the shelf was counted.",
    }[alert_type]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _late(ev: Sale | InventoryEvent, watermark: int) -> DeadLetter:
    o = ev.origin
    record = {k: v for k, v in asdict(ev).items() if k != "origin"}
    behind_s = (watermark - ev.event_time) / 1000
    where = f"{type(ev).__name__} {o.where()}: " if o else ""
    return DeadLetter(
        source_topic=o.source if o else "",
        partition=o.partition if o else -1,
        offset=o.offset if o else -1,
        key=key_on(ev.store_id, ev.sku),
        raw=json.dumps(record).encode(),
        error=f"{where}event {ev.event_id} at {_iso(ev.event_time)} arrived {behind_s:.0f} s behind the watermark "
        "(later than the allowed lateness)",
        stage="late",
        reason="late",
    )
