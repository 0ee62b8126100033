"""SenseLogic, the glue around a store: views at the pace of :class:`flows.demand.ViewsPace`, snapshots."""

from __future__ import annotations

import time

from flows.demand import CATCHING_UP_LAG_S, SenseLogic, ViewsPace, _builder_for
from operators.policy import Policy
from operators.store import StoreState
from tests.operators import T0, Stream, flat

HOUR_MS = 3_600_000


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
    logic = SenseLogic(StoreState(""), Policy(), ViewsPace(live_s=3600, catching_up_s=3600))
    (out,), _ = logic.on_item((first, 0, None))
    assert {v.sku for v in out.views} == {"A", "B"}  # the first batch goes out at once
    (out,), _ = logic.on_item(([e for e in events if e.sku == "C"], 0, None))
    assert out.views == []  # within the interval: held back
    (out,), _ = logic.on_eof()  # the end of input applies what the watermark held and flushes every change
    skus = [v.sku for v in out.views]
    assert sorted(skus) == ["A", "B", "C"]  # each changed item once, as it is now
    assert all(v.store_id == "S1" for v in out.views)


def test_no_views_without_redis() -> None:
    s = Stream(seed=1)
    s.sales(["A"], T0 + 8 * HOUR_MS, T0 + 9 * HOUR_MS, flat(10))
    (out,), _ = SenseLogic(StoreState(""), Policy(), None).on_item((s.ordered(), 0, None))
    assert out.views == []


def test_snapshots_are_free_without_recovery_and_resume_with_it() -> None:
    s = Stream(seed=1)
    s.sales(["A"], T0 + 8 * HOUR_MS, T0 + 9 * HOUR_MS, flat(10))
    without = SenseLogic(StoreState(""), Policy(), None, recovery=False)
    without.on_item((s.ordered(), 0, None))
    assert without.snapshot() == b""  # Bytewax asks for it every epoch even without recovery
    kept = SenseLogic(StoreState(""), Policy(), None)
    kept.on_item((s.ordered(), 0, None))
    resumed = _builder_for(Policy(), None, True)(kept.snapshot())
    assert resumed.state.items["A"].n_sales == kept.state.items["A"].n_sales > 0


def test_the_decoder_tracks_each_partitions_progress_over_every_store() -> None:
    from demandsense.serde import JsonCodec
    from flows.demand import Decoder
    from flows.sources import RawRecord
    from operators.policy import Detection

    now_ms = int(time.time() * 1000)

    def sale(store: str, t: int, partition: int, offset: int) -> RawRecord:
        body = {"event_id": f"e{offset}", "event_time": t, "store_id": store, "sku": "A", "channel": "STORE",
                "quantity": 1, "unit_price": 2.0}  # fmt: skip
        return RawRecord("Sale", "sales", partition, offset, None, JsonCodec().encode(body), t)

    codecs = {"Sale": JsonCodec()}
    batch = [sale("S1", now_ms - 5_000, 0, 1), sale("S2", now_ms - 1_000, 0, 2), sale("S1", now_ms - 3_000, 1, 3)]
    assert Decoder(codecs, Policy()).__call__(batch).progress is None  # off by default
    decoder = Decoder(codecs, Policy(detection=Detection(partition_progress=True)))
    first = decoder(batch)
    assert first.progress == {("sales", 0): now_ms - 1_000, ("sales", 1): now_ms - 3_000}  # any store's newest
    ahead = decoder([sale("S3", now_ms + 3_600_000, 1, 4)])  # a till clock an hour ahead
    assert ahead.progress is not None and now_ms - 3_000 < ahead.progress["sales", 1] <= int(time.time() * 1000)
    assert first.progress == {("sales", 0): now_ms - 1_000, ("sales", 1): now_ms - 3_000}  # a copy, kept as sent
