"""SenseLogic, the glue around a store: views at the pace of :class:`flows.demand.ViewsPace`, snapshots."""

from __future__ import annotations

import logging
import time

import pytest

from demandsense.serde import JsonCodec
from demandsense.validate import MAX_RAW
from flows.demand import (
    CATCHING_UP_LAG_S,
    KINDS,
    DeadLetterLog,
    Decoder,
    Delivery,
    Router,
    SenseLogic,
    ViewsPace,
    _builder_for,
)
from flows.sources import OFFSET, VALUE, RawRecord
from operators.events import DeadLetter, Event
from operators.policy import Detection, Policy
from operators.store import StoreState
from tests.operators import T0, Stream, flat

HOUR_MS = 3_600_000
JSON = Decoder({k: JsonCodec() for k in KINDS}, Policy())


def _records(events: list[Event]) -> list[RawRecord]:
    """The events as Kafka would carry them: JSON values keyed store_id:sku."""
    return [
        (type(e).__name__, "sales", 0, i, f"{e.store_id}:{e.sku}".encode(),
         JsonCodec().encode({f: getattr(e, f) for f in type(e).__slots__ if f != "origin"}), 0)
        for i, e in enumerate(events)
    ]  # fmt: skip


def _replace(r: RawRecord, **changes: object) -> RawRecord:
    """``r`` with the fields named in ``changes`` replaced."""
    fields = ("kind", "source", "partition", "offset", "key", "value", "timestamp")
    return tuple(changes.get(f, v) for f, v in zip(fields, r, strict=True))  # type: ignore[return-value]


def _delivery(events: list[Event], store: str = "S1") -> Delivery:
    return store, _records(events), 0, None


def test_live_and_catching_up_intervals() -> None:
    pace, now = ViewsPace(live_s=1.0, catching_up_s=10.0), time.time()
    assert pace.interval(None, now) == 1.0
    assert pace.interval(int((now - 60) * 1000), now) == 1.0
    assert pace.interval(int((now - CATCHING_UP_LAG_S - 1) * 1000), now) == 10.0


def test_changed_items_are_viewed_once_per_interval_and_all_at_the_end() -> None:
    s = Stream(seed=1)
    s.sales(["A", "B"], T0 + 8 * HOUR_MS, T0 + 10 * HOUR_MS, flat(10))
    s.sales(["C"], T0 + 10 * HOUR_MS, T0 + 11 * HOUR_MS, flat(10))
    events = s.ordered()
    first = [e for e in events if e.sku != "C"]
    logic = SenseLogic(StoreState(""), Policy(), JSON, ViewsPace(live_s=3600, catching_up_s=3600))
    (out,), _ = logic.on_item(_delivery(first))
    assert {v.sku for v in out.views} == {"A", "B"}  # the first batch goes out at once
    (out,), _ = logic.on_item(_delivery([e for e in events if e.sku == "C"]))
    assert out.views == []  # within the interval: held back
    (out,), _ = logic.on_eof()  # the end of input applies what the watermark held and flushes every change
    skus = [v.sku for v in out.views]
    assert sorted(skus) == ["A", "B", "C"]  # each changed item once, as it is now
    assert all(v.store_id == "S1" for v in out.views)


def test_no_views_without_redis() -> None:
    s = Stream(seed=1)
    s.sales(["A"], T0 + 8 * HOUR_MS, T0 + 9 * HOUR_MS, flat(10))
    (out,), _ = SenseLogic(StoreState(""), Policy(), JSON, None).on_item(_delivery(s.ordered()))
    assert out.views == []


def test_snapshots_are_free_without_recovery_and_resume_with_it() -> None:
    s = Stream(seed=1)
    s.sales(["A"], T0 + 8 * HOUR_MS, T0 + 9 * HOUR_MS, flat(10))
    without = SenseLogic(StoreState(""), Policy(), JSON, None, recovery=False)
    without.on_item(_delivery(s.ordered()))
    assert without.snapshot() == b""  # Bytewax asks for it every epoch even without recovery
    kept = SenseLogic(StoreState(""), Policy(), JSON, None)
    kept.on_item(_delivery(s.ordered()))
    resumed = _builder_for(Policy(), JSON, None, True)(kept.snapshot())
    assert resumed.state.items["A"].n_sales == kept.state.items["A"].n_sales > 0


def test_each_store_decodes_its_records_and_one_keyed_to_another_store_is_a_dead_letter() -> None:
    s = Stream(seed=1)
    s.sales(["A", "B"], T0 + 8 * HOUR_MS, T0 + 9 * HOUR_MS, flat(10))
    records = _records(s.ordered())
    garbage = _replace(records[1], value=b"{not json")
    s1 = SenseLogic(StoreState(""), Policy(), JSON, None)
    (out,), _ = s1.on_item(("S1", [records[0], garbage, *records[2:]], 0, None))
    assert [(d.reason, d.key) for d in out.dead] == [("malformed", "S1:B")]
    assert len(s1.state.seen) == len(records) - 1  # every other record became an event of the store
    wrong = _replace(records[0], key=b"S2:A")  # a producer keyed a record of S1 to S2: the router sends it there
    (out,), _ = SenseLogic(StoreState(""), Policy(), JSON, None).on_item(("S2", [wrong], 0, None))
    assert [(d.reason, d.key, d.stage) for d in out.dead] == [("key_mismatch", "S2:A", "validate")]
    assert "does not name its item 'S1:A'" in out.dead[0].error


def test_the_router_splits_by_key_and_decodes_only_records_without_one() -> None:
    s = Stream(seed=1)
    s.sales(["A"], T0 + 8 * HOUR_MS, T0 + 9 * HOUR_MS, flat(10))
    keyed = _records(s.ordered())[:3]
    keyless = _replace(keyed[0], key=None, offset=10)
    unreadable = _replace(keyed[0], key=None, value=b"\xff", offset=11)
    odd_key = _replace(keyed[1], key=b"S2:A")  # routed by its key; its store finds out
    routed = dict(Router(JSON, Policy(), [])([*keyed, keyless, unreadable, odd_key]))
    assert set(routed) == {"S1", "S2", ""}
    assert [r[OFFSET] for r in routed["S1"][1]] == [0, 1, 2, 10]  # in read order, the keyless one by its value
    assert routed[""][1] == [unreadable] and routed["S2"][1] == [odd_key]


def test_the_router_keeps_each_stores_records_in_read_order_with_their_newest_timestamp() -> None:
    s = Stream(seed=1)
    s.sales(["A"], T0 + 8 * HOUR_MS, T0 + 9 * HOUR_MS, flat(10))
    first, second, third, fourth = _records(s.ordered())[:4]
    batch = [
        _replace(first, key=b"S2:A", timestamp=5),
        _replace(second, timestamp=9),
        _replace(third, key=b"S2:B", timestamp=7),
        _replace(fourth, timestamp=-1),  # no Kafka timestamp
    ]
    routed = Router(JSON, Policy(), [])(batch)
    assert [(store, [r[OFFSET] for r in d[1]], d[2]) for store, d in routed] == [("S2", [0, 2], 7), ("S1", [1, 3], 9)]
    alone = Router(JSON, Policy(), [])([_replace(fourth, timestamp=-1)])
    assert alone[0][1][2] == 0
    not_utf8 = [_replace(first, key=b"\xff:A"), _replace(second, key=b"\xfe:A"), _replace(third, key=b"\xff:B")]
    ((store, delivery),) = Router(JSON, Policy(), [])(not_utf8)  # two prefixes, one store name once decoded
    assert store == "\ufffd" and [r[OFFSET] for r in delivery[1]] == [0, 1, 2]


def test_the_router_tracks_each_partitions_progress_over_every_store() -> None:
    now_ms = int(time.time() * 1000)

    def sale(store: str, t: int, partition: int, offset: int) -> RawRecord:
        body = {"event_id": f"e{offset}", "event_time": t, "store_id": store, "sku": "A", "channel": "STORE",
                "quantity": 1, "unit_price": 2.0}  # fmt: skip
        return ("Sale", "sales", partition, offset, f"{store}:A".encode(), JsonCodec().encode(body), t)

    batch = [sale("S1", now_ms - 5_000, 0, 1), sale("S2", now_ms - 1_000, 0, 2), sale("S1", now_ms - 3_000, 1, 3)]
    assert all(d[3] is None for _, d in Router(JSON, Policy(), [])(batch))  # off by default
    router = Router(JSON, Policy(detection=Detection(partition_progress=True)), [])
    first = router(batch)
    progress = {("sales", 0): now_ms - 1_000, ("sales", 1): now_ms - 3_000}  # any store's newest
    assert [d[3] for _, d in first] == [progress, progress]
    ((_, ahead),) = router([sale("S3", now_ms + 3_600_000, 1, 4)])  # a till clock an hour ahead
    assert ahead[3] is not None and now_ms - 3_000 < ahead[3]["sales", 1] <= int(time.time() * 1000)
    assert first[0][1][3] == progress  # a copy, kept as sent


MALFORMED = DeadLetter("sales", 0, 1, None, b"x", "Sale sales[0]@1: not JSON", "decode", "malformed")
LATE = DeadLetter("sales", 0, 2, None, b"{}", "Sale sales[0]@2: 400 s behind the watermark", "late", "late")


def test_dead_letters_are_logged_at_once_then_once_per_interval_each(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    dead_log = DeadLetterLog(every_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="demandsense.flow"):
        for d in (MALFORMED, MALFORMED, LATE, MALFORMED):
            dead_log.count(d)
        now[0] += 9.9  # within the interval: counted, not logged
        dead_log.count(MALFORMED)
        now[0] += 0.1  # the interval passed: the next malformed one is logged with the count of the others
        dead_log.count(MALFORMED)
    assert [r.getMessage() for r in caplog.records] == [
        "dead letter (decode, malformed): Sale sales[0]@1: not JSON",
        "dead letter (late, late): Sale sales[0]@2: 400 s behind the watermark",
        "dead letter (decode, malformed) (3 more since the last line): Sale sales[0]@1: not JSON",
    ]


def test_flush_logs_the_dead_letters_not_logged_yet_and_starts_afresh(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    dead_log = DeadLetterLog(every_s=10.0, clock=lambda: now[0])
    other = DeadLetter("sales", 0, 3, None, b"y", "Sale sales[0]@3: not JSON either", "decode", "malformed")
    with caplog.at_level(logging.WARNING, logger="demandsense.flow"):
        for d in (MALFORMED, MALFORMED, other, LATE):  # a burst, then quiet
            dead_log.count(d)
        caplog.clear()
        dead_log.flush()
        assert [r.getMessage() for r in caplog.records] == [  # the late one was logged: nothing pending for it
            "dead letter (decode, malformed) (2 more since the last line, the last): Sale sales[0]@3: not JSON either"
        ]
        caplog.clear()
        dead_log.flush()  # nothing pending
        dead_log.count(MALFORMED)  # within the interval, but after a flush: logged at once
    assert [r.getMessage() for r in caplog.records] == ["dead letter (decode, malformed): Sale sales[0]@1: not JSON"]


def test_a_late_record_over_max_raw_keeps_its_first_bytes_and_says_so() -> None:
    s = Stream(seed=1)
    s.sales(["A"], T0 + 8 * HOUR_MS, T0 + 10 * HOUR_MS, flat(10))
    records = _records(s.ordered())
    body = JsonCodec().decode(records[0][VALUE]) | {"event_id": "late-1", "padding": "x" * MAX_RAW}
    late = _replace(records[0], offset=len(records), value=JsonCodec().encode(body))  # 8:00, read after 10:00
    (out,), _ = SenseLogic(StoreState(""), Policy(), JSON, None).on_item(("S1", [*records, late], 0, None))
    (d,) = out.dead
    assert (d.stage, d.reason, d.offset, d.key) == ("late", "late", len(records), "S1:A")
    assert d.raw == late[VALUE][:MAX_RAW] and len(late[VALUE]) > MAX_RAW
    assert "behind the watermark" in d.error
    assert d.error.endswith(f" (raw keeps the first {MAX_RAW:,} of its {len(late[VALUE]):,} bytes)")


def test_a_key_without_a_colon_names_no_item_the_value_finds_the_store() -> None:
    s = Stream(seed=1)
    s.sales(["A"], T0 + 8 * HOUR_MS, T0 + 9 * HOUR_MS, flat(10))
    records = [_replace(r, key=b"order-123") for r in _records(s.ordered())]
    delivery = ("S1", records, 0, None)
    assert Router(JSON, Policy(), [])(records) == [("S1", delivery)]
    logic = SenseLogic(StoreState(""), Policy(), JSON, None)
    (out,), _ = logic.on_item(delivery)
    assert out.dead == [] and len(logic.state.seen) == len(records)
