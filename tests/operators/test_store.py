"""Store state: arrival order, batching, duplicates, late events, recovery and state size."""

from __future__ import annotations

import json
import pickle
import random
from dataclasses import replace

import pytest

from demandsense.serde import JsonCodec
from demandsense.validate import read_event
from operators.events import HOUR_MS, DeadLetter, InventoryEvent, Origin, Sale
from operators.policy import Detection, Policy
from operators.store import StoreState

from . import DAY_MS, MINUTE_MS, T0, Run, Stream, batches, feed, flat, local_shuffle

SKUS = ("A", "B", "C", "D", "E")
POLICY = Policy()
LATENESS_MS = int(POLICY.detection.allowed_lateness_s * 1000)


def busy_stream(seed: int = 7) -> Stream:
    """Four days of a store where things happen: A spikes on day 3, B runs out, C stops selling."""
    spike = (T0 + 2 * DAY_MS + 12 * HOUR_MS, T0 + 2 * DAY_MS + 15 * HOUR_MS)
    stop = T0 + 2 * DAY_MS + 12 * HOUR_MS
    base = flat(10)

    def rate(sku: str, t: int) -> float:
        r = base(sku, t)
        if sku == "A" and spike[0] <= t < spike[1]:
            return 3 * r
        if sku == "C" and t >= stop:
            return 0.0
        return r

    s = Stream(seed=seed)
    for sku in SKUS:
        s.inventory(sku, T0 + 7 * HOUR_MS, "SNAPSHOT", on_hand=400 if sku == "B" else 5000)
    s.sales(SKUS, T0, T0 + 4 * DAY_MS, rate)
    s.inventory("D", T0 + DAY_MS + 9 * HOUR_MS, "RECEIPT", quantity=48)
    s.inventory("E", T0 + 2 * DAY_MS + 18 * HOUR_MS, "CYCLE_COUNT", on_hand=4500)
    return s


@pytest.fixture(scope="module")
def events() -> list[Sale | InventoryEvent]:
    return busy_stream().ordered()


@pytest.fixture(scope="module")
def reference(events: list[Sale | InventoryEvent]) -> Run:
    run, _ = feed(events, sizes=(500,))
    kinds = {a.alert_type for a in run.alerts}
    assert {"DEMAND_SPIKE", "STOCKOUT_RISK", "OUT_OF_STOCK", "PHANTOM_INVENTORY"} <= kinds  # a stream worth comparing
    assert run.triggers and not run.late
    return run


def same(a: Run, b: Run) -> None:
    assert a.alerts == b.alerts
    assert a.triggers == b.triggers
    assert a.late == b.late


# -- (g) arrival order and batching ------------------------------------------------------------
@pytest.mark.parametrize("sizes", [(1,), (7, 50, 333, 2), (5000,)])
def test_batch_boundaries_do_not_change_the_outputs(events: list, reference: Run, sizes: tuple[int, ...]) -> None:
    run, _ = feed(events, sizes=sizes)
    same(run, reference)


@pytest.mark.parametrize("seed", [1, 2])
def test_out_of_order_arrival_within_the_lateness_gives_the_same_outputs(
    events: list, reference: Run, seed: int
) -> None:
    shuffled = local_shuffle(events, 2 * MINUTE_MS, seed)
    assert shuffled != events  # really out of order
    moved = sum(1 for a, b in zip(shuffled, events, strict=True) if a is not b)
    assert moved > len(events) // 4
    run, _ = feed(shuffled, sizes=(1, 13, 200, 64, 3))
    assert run.counts == reference.counts  # nothing late, nothing lost
    same(run, reference)


def test_the_watermark_holds_events_back_until_the_lateness_has_passed() -> None:
    s = Stream()
    a = s.sale("A", T0 + 9 * HOUR_MS + 1, quantity=1)
    state = StoreState("S1")
    state.on_events([a], POLICY)
    assert "A" not in state.items  # buffered: a slower record may still come
    state.on_events([s.sale("B", a.event_time + LATENESS_MS - 1)], POLICY)
    assert "A" not in state.items
    state.on_events([s.sale("C", a.event_time + LATENESS_MS + 1)], POLICY)
    assert set(state.items) == {"A"}  # the watermark passed A, not B or C (release is strictly before it)
    state.flush(POLICY)
    assert set(state.items) == {"A", "B", "C"}


def test_a_record_at_exactly_the_watermark_is_applied_in_order() -> None:
    w = T0 + 10 * HOUR_MS
    count = InventoryEvent("c", w - HOUR_MS, "S1", "A", "SNAPSHOT", 0, 5, None, Origin("inventory", 0, 0))
    small = Sale("a", w, "S1", "A", "STORE", 1, 5.0, None, Origin("sales", 0, 1))
    big = Sale("b", w, "S1", "A", "STORE", 3, 5.0, None, Origin("sales", 0, 2))
    later = Sale("z", w + LATENESS_MS, "S1", "B", "STORE", 1, 5.0, None, Origin("sales", 0, 3))
    in_order, _ = feed([count, small, big, later])
    assert [(t.inventory_position, t.order_quantity) for t in in_order.triggers] == [(4, 20)]
    arrived, _ = feed([count, big, later, small], sizes=(3, 1))  # `small` arrives last, at the watermark
    assert arrived.late == [] and arrived.triggers == in_order.triggers


def test_a_record_from_a_stream_that_was_quiet_lands_behind_the_clock_but_is_not_lost() -> None:
    """An inventory feed quiet since 07:00 sends a receipt for 08:20 after the tills reached 09:00.

    By its own stream it is not late (the contract judges lateness per stream), so it is applied on
    arrival: decisions made before it arrived did not know it, but the stock it carries lands.
    """
    s = Stream(seed=0)
    s.inventory("A", T0 + 7 * HOUR_MS, "SNAPSHOT", on_hand=10)
    s.sales(["A"], T0 + 8 * HOUR_MS, T0 + 9 * HOUR_MS, flat(10))
    receipt = s.inventory("A", T0 + 8 * HOUR_MS + 20 * MINUTE_MS, "RECEIPT", quantity=100)
    ordered = s.ordered()
    _, in_order = feed(ordered)
    arrived, late_state = feed([e for e in ordered if e is not receipt] + [receipt], sizes=(1,))
    assert arrived.late == []
    assert late_state.items["A"].position() == in_order.items["A"].position()


def test_partition_progress_releases_a_sale_without_waiting_for_the_stores_sparse_stream() -> None:
    """Live, zero lateness: a sale waits for every active stream of its store to carry a later event.

    The store's inventory partition carries its events rarely; other stores' events show that the
    partition has moved on. Only with ``partition_progress`` does that release the sale.
    """
    det = Detection(allowed_lateness_s=0, stream_idle_s=60)
    w = T0 + 10 * HOUR_MS
    count = InventoryEvent("c", w, "S1", "A", "SNAPSHOT", 0, 1, None, Origin("inventory", 0, 0))
    sale = Sale("s", w + 5_000, "S1", "A", "STORE", 1, 5.0, None, Origin("sales", 0, 0))
    moved = {("inventory", 0): w + 6_000, ("sales", 0): w + 6_000}
    for flag, released in ((False, False), (True, True)):
        policy = Policy(detection=replace(det, partition_progress=flag))
        state = StoreState("S1")
        state.on_events([count], policy)
        out = state.on_events([sale], policy, moved)
        assert ("A" in state.items and state.items["A"].on_hand == 0) is released, flag
        assert any(a.alert_type == "OUT_OF_STOCK" for a in out.alerts) is released, flag
    stale = StoreState("S1")  # a partition that has not moved past the sale still holds it
    progress = Policy(detection=replace(det, partition_progress=True))
    stale.on_events([count], progress)
    stale.on_events([sale], progress, {("inventory", 0): w + 1_000, ("sales", 0): w + 6_000})
    assert stale.items["A"].on_hand == 1


# -- (h) duplicates ----------------------------------------------------------------------------
def test_duplicates_are_counted_and_change_nothing(events: list, reference: Run) -> None:
    rng = random.Random(3)
    arrived: list[Sale | InventoryEvent] = []
    dups = {"sales": 0, "inventory": 0}
    pending: list[tuple[int, Sale | InventoryEvent]] = []
    for i, ev in enumerate(events):
        arrived.append(ev)
        if rng.random() < 0.03:  # redelivered later, at a new offset
            assert ev.origin is not None
            pending.append((i + rng.randrange(0, 40), replace(ev, origin=Origin(ev.origin.source, 0, 10**6 + i))))
            dups[ev.origin.source] += 1
        while pending and pending[0][0] <= i:
            arrived.append(pending.pop(0)[1])
    arrived += [ev for _, ev in pending]
    run, _ = feed(arrived, sizes=(1, 50, 7))
    assert dups["sales"] > 50
    assert run.counts[("sales", "duplicate")] == dups["sales"]
    assert run.counts.get(("inventory", "duplicate"), 0) == dups["inventory"]
    assert run.counts[("sales", "ok")] == reference.counts[("sales", "ok")]
    same(run, reference)


def test_a_duplicate_in_the_same_batch_is_dropped() -> None:
    s = Stream()
    ev = s.sale("A", T0 + 9 * HOUR_MS)
    run, state = feed([ev, ev, replace(ev, quantity=5)])
    assert run.counts == {("sales", "ok"): 1, ("sales", "duplicate"): 2}
    assert state.items["A"].n_sales == 1 and state.items["A"].units == 1.0


def test_a_sale_and_an_inventory_event_with_the_same_id_are_both_applied() -> None:
    """The two inputs come from different systems, each numbering its own events."""
    s = Stream()
    sale = replace(s.sale("A", T0 + 9 * HOUR_MS), event_id="1")
    count = replace(s.inventory("A", T0 + 9 * HOUR_MS + 1, "CYCLE_COUNT", on_hand=30), event_id="1")
    run, state = feed([sale, count, replace(count, quantity=0)])
    assert run.counts == {("sales", "ok"): 1, ("inventory", "ok"): 1, ("inventory", "duplicate"): 1}
    assert state.items["A"].n_sales == 1 and state.items["A"].on_hand == 30


# -- (i) late events -----------------------------------------------------------------------------
def test_an_event_behind_the_watermark_is_a_late_dead_letter() -> None:
    s = Stream()
    s.sales(["A", "B"], T0 + 8 * HOUR_MS, T0 + 12 * HOUR_MS, flat(10))
    newest = max(e.event_time for e in s.events)
    state = StoreState("S1")
    first = state.on_events(s.ordered(), POLICY)
    assert first.late == []
    at_limit = s.sale("A", newest - LATENESS_MS)
    too_late = s.sale("A", newest - LATENESS_MS - 1, quantity=2)
    out = state.on_events([at_limit, too_late], POLICY)
    assert out.counts == {("sales", "ok"): 1, ("sales", "late"): 1}
    assert len(out.late) == 1
    dl = out.late[0]
    assert isinstance(dl, DeadLetter)
    assert (dl.source_topic, dl.partition, dl.offset, dl.key) == ("sales", 0, too_late.origin.offset, "S1:A")  # type: ignore[union-attr]
    assert (dl.stage, dl.reason) == ("late", "late")
    assert too_late.event_id in dl.error and "behind the watermark" in dl.error
    record = json.loads(dl.raw)
    assert record["event_id"] == too_late.event_id and record["event_time"] == too_late.event_time
    # the dead letter carries the record itself: it can be replayed through the same door
    replayed = read_event("Sale", dl.raw, JsonCodec(), Origin("dlq", 0, 0), now_ms=newest)
    assert replayed == too_late
    state.flush(POLICY)
    a_sales = sum(1 for e in s.events if e.sku == "A")
    assert state.items["A"].n_sales == a_sales - 1  # all but the late one


def test_one_record_a_day_ahead_does_not_make_its_stream_late(events: list, reference: Run) -> None:
    """A till with a wrong clock sends one sale 23 h ahead (valid: up to a day ahead of the wall clock).

    Its stream's clock does not follow it until another record confirms the leap, so the stream's
    next records are not late; the record itself is applied in event-time order.
    """
    at = len(events) // 2
    ahead = Sale("wrong-clock", events[at].event_time + 23 * HOUR_MS, "S1", "A", "STORE", 1, 5.0, None,
                 Origin("sales", 0, 10**6))  # fmt: skip
    run, state = feed([*events[:at], ahead, *events[at:]])
    assert run.late == []
    assert run.counts[("sales", "ok")] == reference.counts[("sales", "ok")] + 1
    before = [a for a in run.alerts if a.event_time < ahead.event_time]
    assert before == [a for a in reference.alerts if a.event_time < ahead.event_time]
    assert state.items["A"].n_sales == sum(1 for e in events if isinstance(e, Sale) and e.sku == "A") + 1


def test_a_leap_confirmed_by_a_second_record_moves_the_clock() -> None:
    s = Stream(seed=0)
    s.sales(["A"], T0 + 8 * HOUR_MS, T0 + 9 * HOUR_MS, flat(10))
    first, second = s.sale("A", T0 + 20 * HOUR_MS), s.sale("A", T0 + 20 * HOUR_MS + 1)
    state = StoreState("S1")
    state.on_events([e for e in s.ordered() if e not in (first, second)] + [first], POLICY)
    assert state.stream_max[("sales", 0)] < first.event_time  # one record alone is not believed
    state.on_events([second], POLICY)
    assert state.stream_max[("sales", 0)] == first.event_time
    late = state.on_events([s.sale("A", T0 + 9 * HOUR_MS)], POLICY)
    assert len(late.late) == 1  # the leap was real: eleven hours behind is late


def two_partitions(events: list, lag_ms: int) -> list:
    """B's and D's sales on partition 1, arriving ``lag_ms`` behind partition 0 (in order within each)."""
    moved = [
        replace(e, origin=Origin("sales", 1, e.origin.offset)) if isinstance(e, Sale) and e.sku in "BD" else e
        for e in events
    ]
    return sorted(moved, key=lambda e: e.event_time + (lag_ms if e.origin.partition == 1 else 0))


@pytest.mark.parametrize("lag_min", [2, 4])
def test_a_partition_behind_another_within_the_lateness_gives_the_same_outputs(
    events: list, reference: Run, lag_min: int
) -> None:
    run, _ = feed(two_partitions(events, lag_min * MINUTE_MS), sizes=(1,))
    assert run.late == []
    same(run, reference)


def test_a_partition_ten_minutes_behind_gives_the_same_outputs_when_idleness_allows(events: list) -> None:
    """``stream_idle_s`` trades latency for tolerance of a lagging partition: a partition that falls
    further behind than it counts as idle, and its records are applied as they come (none is lost).
    At an hour, ten minutes of lag changes nothing."""
    patient = Policy(detection=Detection(stream_idle_s=3600))
    reference, _ = feed(events, patient, sizes=(500,))
    run, _ = feed(two_partitions(events, 10 * MINUTE_MS), patient, sizes=(1,))
    assert run.late == []
    same(run, reference)


def test_a_partition_further_behind_than_the_idle_time_loses_nothing(events: list, reference: Run) -> None:
    run, state = feed(two_partitions(events, 10 * MINUTE_MS), sizes=(1,))
    _, in_order = feed(events)
    assert run.late == []
    assert {s: i.position() for s, i in state.items.items()} == {s: i.position() for s, i in in_order.items.items()}


# -- (j) recovery ---------------------------------------------------------------------------------
def test_a_pickled_state_continues_exactly_like_the_original(events: list, reference: Run) -> None:
    cut = len(events) * 3 // 5  # in the middle of day 3, with the spike alert open
    head, tail = events[:cut], events[cut:]
    before, original = feed(head, sizes=(64,), flush=False)
    assert any(e.open for i in original.items.values() for e in (i.episodes or {}).values())
    copy = pickle.loads(pickle.dumps(original))
    after_original, _ = feed(tail, sizes=(64,), state=original)
    after_copy, _ = feed(tail, sizes=(64,), state=copy)
    same(after_copy, after_original)
    resumed = Run()
    for part in (before, after_copy):
        resumed.alerts += part.alerts
        resumed.triggers += part.triggers
        resumed.late += part.late
    same(resumed, reference)


def test_snapshotting_after_every_batch_changes_nothing(events: list, reference: Run) -> None:
    state, run = StoreState("S1"), Run()
    for batch in batches(events, (400,)):
        run.add(state.on_events(batch, POLICY))  # type: ignore[arg-type]
        state = pickle.loads(pickle.dumps(state))
    run.add(state.flush(POLICY))
    same(run, reference)


def test_state_stays_small_per_item(record_property: pytest.RecordProperty) -> None:
    skus = [f"SKU{i:03d}" for i in range(200)]
    s = Stream(seed=3)
    for sku in skus:
        s.inventory(sku, T0 + 7 * HOUR_MS, "SNAPSHOT", on_hand=300)
    s.sales(skus, T0, T0 + 2 * DAY_MS, flat(2))
    _, state = feed(s.ordered(), sizes=(1000,), flush=False)
    assert len(state.items) == 200
    per_item = len(pickle.dumps(state)) / 200
    record_property("pickled_bytes_per_item", round(per_item))
    print(f"pickled StoreState: {per_item:.0f} bytes per item (200 items, 2 days)")
    assert per_item < 2048


def test_an_item_too_new_to_arm_gets_no_time_driven_look_until_it_has_the_sales() -> None:
    """With fewer sales than ``min_history_sales`` no quiet stretch can raise anything: the item waits for
    its next sale instead of being looked at each day; once armed, ticks look at it again."""
    det = Policy().detection
    s = Stream()
    s.sales(["busy"], T0, T0 + 4 * DAY_MS, flat(10))
    s.sale("new", T0 + 9 * HOUR_MS)
    _, state = feed(s.ordered(), flush=False)
    new = state.items["new"]
    assert new.t == T0 + 9 * HOUR_MS  # no tick advanced it over three quiet days
    assert all(sku != "new" for _, sku in state.due) and new.queued is None

    s.events = []  # the same stream goes on: fresh event ids
    last = T0 + 4 * DAY_MS + 9 * HOUR_MS
    for i in range(det.min_history_sales):
        s.sale("new", last + i * MINUTE_MS)
    s.sales(["busy"], last, last + 2 * DAY_MS, flat(10))
    feed(s.ordered(), state=state, flush=False)
    assert new.n_sales > det.min_history_sales
    assert new.t > last + DAY_MS  # armed: the ticks look at it again while it is quiet


def test_a_shelf_alert_waits_for_the_shelfs_next_event_not_for_every_tick() -> None:
    """An open PHANTOM_INVENTORY changes with a sale, a count or a receipt, not with time: the ticks
    leave the item alone (one look a day at most) and the count settles it."""
    stop = T0 + 2 * DAY_MS + 12 * HOUR_MS
    busy = flat(10)
    s = Stream()
    s.inventory("A", T0 + 7 * HOUR_MS, "SNAPSHOT", on_hand=5000)
    s.sales(["A", "busy"], T0, T0 + 4 * DAY_MS, lambda sku, t: busy(sku, t) if sku == "busy" or t < stop else 0.0)
    run, state = feed(s.ordered(), flush=False)
    [opened] = run.of("PHANTOM_INVENTORY", "A", "OPEN")
    a, tick_ms = state.items["A"], int(POLICY.detection.tick_minutes * MINUTE_MS)
    assert state.next_tick is not None and a.t < state.next_tick - 4 * tick_ms  # not advanced by the last ticks
    assert a.due == a.t + DAY_MS and a.queued == a.due  # the day's look is still queued

    s.events = []
    count = T0 + 4 * DAY_MS + 9 * HOUR_MS
    s.inventory("A", count, "CYCLE_COUNT", on_hand=0)
    s.sales(["busy"], count, count + HOUR_MS, busy)
    after, _ = feed(s.ordered(), state=state, flush=False)
    assert [x.event_time for x in after.of("PHANTOM_INVENTORY", "A", "RESOLVED")] == [count]
    assert [x.event_time for x in after.of("OUT_OF_STOCK", "A", "OPEN")] == [count]
