"""Validation: every reason a record is refused, times, and the one door ``read_event``."""

from __future__ import annotations

import math
from typing import Any

import pytest

from demandsense.errors import ValidationError
from demandsense.serde import AvroCodec, JsonCodec
from demandsense.validate import (
    MAX_ERROR,
    MAX_KEY,
    MAX_RAW,
    MAX_TEXT,
    dead_letter,
    parse_time,
    read_event,
    read_records,
    to_inventory,
    to_item_params,
    to_sale,
)
from operators.events import DeadLetter, InventoryEvent, ItemParams, Origin, Sale

NOW = 1_772_500_000_000  # the wall clock of these tests
T = 1_772_438_456_073  # 2026-03-02T08:00:56.073Z
ORIGIN = Origin("retail.sales.v1", 2, 41)

SALE = {
    "event_id": "sale-1",
    "event_time": T,
    "store_id": "S001",
    "sku": "C03-000123",
    "channel": "STORE",
    "quantity": 2,
    "unit_price": 3.5,
    "promo_id": None,
}
INV = {
    "event_id": "inv-1",
    "event_time": T,
    "store_id": "S001",
    "sku": "C03-000123",
    "event_type": "RECEIPT",
    "quantity": 12,
    "on_hand": None,
    "in_transit": None,
}


def refused(fn: Any, record: dict[str, Any], **kw: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        fn(record, NOW, **kw)
    message = str(info.value)
    assert 10 < len(message) < 300 and message[0].isalnum(), message  # a sentence for a person
    return info.value


def sale(**changes: Any) -> dict[str, Any]:
    return {k: v for k, v in (SALE | changes).items() if v is not ...}


def inv(**changes: Any) -> dict[str, Any]:
    return {k: v for k, v in (INV | changes).items() if v is not ...}


# -- good records -------------------------------------------------------------------------------
def test_a_valid_sale() -> None:
    ev = to_sale(sale(promo_id="P-7"), NOW, None, ORIGIN)
    assert ev == Sale("sale-1", T, "S001", "C03-000123", "STORE", 2, 3.5, "P-7")
    assert ev.origin == ORIGIN


def test_nullable_fields_may_be_omitted() -> None:
    assert to_sale(sale(promo_id=...), NOW).promo_id is None
    count = to_inventory(inv(event_type="SNAPSHOT", quantity=..., on_hand=5, in_transit=...), NOW)
    assert (count.quantity, count.on_hand, count.in_transit) == (0, 5, None)


def test_valid_inventory_events() -> None:
    assert to_inventory(inv(), NOW) == InventoryEvent("inv-1", T, "S001", "C03-000123", "RECEIPT", 12)
    assert to_inventory(inv(event_type="SHRINK", quantity=-3), NOW).quantity == -3
    assert to_inventory(inv(event_type="ADJUSTMENT", quantity=-3), NOW).quantity == -3
    assert to_inventory(inv(event_type="ADJUSTMENT", quantity=3), NOW).quantity == 3
    assert to_inventory(inv(event_type="RESERVATION", quantity=0), NOW).quantity == 0


def test_item_params() -> None:
    p = to_item_params({"store_id": "S1", "sku": "A", "pack_size": 6, "service_level": 0.9}, NOW)
    assert p == ItemParams("S1", "A", service_level=0.9, pack_size=6)
    assert refused(to_item_params, {"store_id": "S1", "sku": "A", "service_level": 1.0}).reason == "out_of_range"
    assert refused(to_item_params, {"store_id": "S1", "sku": "A", "pack_size": 0}).reason == "out_of_range"
    assert refused(to_item_params, {"store_id": "S1", "sku": "A", "unit_cost": -1.0}).reason == "negative_quantity"
    assert refused(to_item_params, {"store_id": "S1"}).reason == "missing_field"


@pytest.mark.parametrize("lead", [0.0, -1.0, 24 * 366 + 1, 1e308])
def test_item_params_lead_time_is_above_zero_and_at_most_a_year(lead: float) -> None:
    """The order-up-to level divides by the lead time and looks ahead day by day over it."""
    err = refused(to_item_params, {"store_id": "S1", "sku": "A", "lead_time_hours": lead})
    assert err.reason in {"out_of_range", "negative_quantity"} and "lead_time_hours" in str(err)
    assert to_item_params({"store_id": "S1", "sku": "A", "lead_time_hours": 24 * 366}, NOW).lead_time_hours == 8784


@pytest.mark.parametrize("field", ["event_id", "event_time"])
def test_an_event_on_the_item_params_input_is_refused(field: str) -> None:
    """A sale has store_id, sku and unit_price: read as item params it would reset the others to defaults."""
    err = refused(to_item_params, {"store_id": "S1", "sku": "A", "unit_price": 2.0, field: "x"})
    assert err.reason == "wrong_schema" and field in str(err)


# -- each reason ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["event_id", "store_id", "sku", "channel", "quantity", "unit_price"])
def test_missing_field(name: str) -> None:
    err = refused(to_sale, sale(**{name: ...}))
    assert err.reason == "missing_field" and name in str(err)


def test_empty_required_text_is_missing() -> None:
    err = refused(to_sale, sale(sku=""))
    assert err.reason == "missing_field" and "sku is empty" in str(err)


def test_a_count_without_on_hand_is_missing_a_field() -> None:
    err = refused(to_inventory, inv(event_type="CYCLE_COUNT", quantity=..., on_hand=None))
    assert err.reason == "missing_field" and "on_hand" in str(err)


@pytest.mark.parametrize(
    ("field", "value"),
    [("quantity", "2"), ("quantity", 2.5), ("quantity", True), ("unit_price", "3.50"), ("unit_price", [3.5]),
     ("sku", 123), ("store_id", {"id": 1}), ("promo_id", 7)],
)  # fmt: skip
def test_wrong_type(field: str, value: Any) -> None:
    err = refused(to_sale, sale(**{field: value}))
    assert err.reason == "wrong_type" and field in str(err)


def test_an_integral_float_is_a_whole_number() -> None:
    assert to_sale(sale(quantity=2.0), NOW).quantity == 2


def test_unknown_enum() -> None:
    err = refused(to_sale, sale(channel="KIOSK"))
    assert err.reason == "unknown_enum" and "KIOSK" in str(err) and "STORE" in str(err)
    err = refused(to_inventory, inv(event_type="LOST"))
    assert err.reason == "unknown_enum" and "LOST" in str(err) and "RECEIPT" in str(err)


@pytest.mark.parametrize("q", [0, -1])
def test_negative_quantity_of_a_sale(q: int) -> None:
    err = refused(to_sale, sale(quantity=q))
    assert err.reason == "negative_quantity" and str(q) in str(err)


def test_negative_counts() -> None:
    err = refused(to_inventory, inv(event_type="SNAPSHOT", quantity=0, on_hand=-4))
    assert err.reason == "negative_quantity" and "on_hand" in str(err)
    err = refused(to_inventory, inv(in_transit=-1))
    assert err.reason == "negative_quantity" and "in_transit" in str(err)


@pytest.mark.parametrize(
    ("kind", "q"), [("RECEIPT", -5), ("TRANSFER_IN", -1), ("RETURN", -2), ("SHRINK", 5), ("TRANSFER_OUT", 1)]
)
def test_bad_sign(kind: str, q: int) -> None:
    err = refused(to_inventory, inv(event_type=kind, quantity=q))
    assert err.reason == "bad_sign" and kind in str(err)


def test_negative_price() -> None:
    assert refused(to_sale, sale(unit_price=-0.01)).reason == "negative_price"
    assert to_sale(sale(unit_price=0), NOW).unit_price == 0.0  # free is allowed


@pytest.mark.parametrize("price", [math.nan, math.inf, -math.inf])
def test_bad_value_for_a_non_finite_price(price: float) -> None:
    err = refused(to_sale, sale(unit_price=price))
    assert err.reason == "bad_value" and "unit_price" in str(err)


@pytest.mark.parametrize("value", ["yesterday", "2026-03-02 08:00", "2026-13-02T08:00:00Z", True, None, [T], math.nan])
def test_bad_time(value: Any) -> None:
    err = refused(to_sale, sale(event_time=value))
    assert err.reason == "bad_time" and "event_time" in str(err)


def test_a_time_without_a_zone_is_refused() -> None:
    err = refused(to_sale, sale(event_time="2026-03-02T08:00:56"))
    assert err.reason == "bad_time" and "time zone" in str(err)


@pytest.mark.parametrize(
    "value", [0, -1, 946_684_799_999, "1999-12-31T23:59:59.999Z", NOW + 24 * 3_600_000 + 1, "2099-01-01T00:00:00Z"]
)
def test_implausible_time(value: Any) -> None:
    err = refused(to_sale, sale(event_time=value))
    assert err.reason == "implausible_time"


def test_history_is_not_late_against_the_wall_clock() -> None:
    """Replay is for history: years-old records are valid; only the stream's watermark judges lateness."""
    assert to_sale(sale(event_time="2003-06-01T12:00:00Z"), NOW).event_time == 1_054_468_800_000
    assert to_sale(sale(event_time=NOW + 24 * 3_600_000), NOW).event_time == NOW + 24 * 3_600_000


@pytest.mark.parametrize("name", ["event_id", "store_id", "sku", "promo_id"])
def test_too_long(name: str) -> None:
    assert to_sale(sale(**{name: "x" * MAX_TEXT}), NOW)
    err = refused(to_sale, sale(**{name: "x" * (MAX_TEXT + 1)}))
    assert err.reason == "too_long" and str(MAX_TEXT) in str(err) and name in str(err)


def test_too_large_with_max_quantity() -> None:
    assert to_sale(sale(quantity=100), NOW, 100).quantity == 100
    err = refused(to_sale, sale(quantity=101), max_quantity=100)
    assert err.reason == "too_large" and "100" in str(err)
    assert refused(to_inventory, inv(quantity=101), max_quantity=100).reason == "too_large"
    assert refused(to_inventory, inv(event_type="ADJUSTMENT", quantity=-101), max_quantity=100).reason == "too_large"
    assert refused(to_inventory, inv(event_type="SNAPSHOT", on_hand=101), max_quantity=100).reason == "too_large"
    assert to_sale(sale(quantity=10**6), NOW).quantity == 10**6  # no bound unless the policy sets one


def test_out_of_range_integers() -> None:
    err = refused(to_sale, sale(quantity=2**31))
    assert err.reason == "out_of_range" and "32-bit" in str(err)


@pytest.mark.parametrize("q", [3e9, 1.8446744073709552e19])
def test_an_integral_float_is_range_checked_too(q: float) -> None:
    assert refused(to_sale, sale(quantity=q)).reason == "out_of_range"


# -- times ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        T,
        float(T),
        "2026-03-02T08:00:56.073Z",
        "2026-03-02T08:00:56.073+00:00",
        "2026-03-02T09:00:56.073+01:00",
        "2026-03-02T03:00:56.073-05:00",
    ],
)
def test_iso_and_epoch_ms_times(value: Any) -> None:
    assert parse_time(value, NOW) == T


def test_iso_times_without_milliseconds() -> None:
    assert parse_time("2026-03-02T08:00:56Z", NOW) == T - 73
    assert parse_time("2026-03-02T08:00:56.073999Z", NOW) == T  # sub-millisecond digits are dropped


@pytest.mark.parametrize(
    ("iso", "ms"),
    [("2004-08-21T08:36:26.909Z", 1_093_077_386_909), ("2004-05-02T13:19:39.814Z", 1_083_503_979_814)],
)
def test_iso_times_are_exact_to_the_millisecond(iso: str, ms: int) -> None:
    assert parse_time(iso, NOW) == ms


# -- read_event -----------------------------------------------------------------------------------
def test_read_event_returns_an_event_with_its_origin() -> None:
    codec = AvroCodec("Sale")
    ev = read_event("Sale", codec.encode(SALE), codec, ORIGIN, key=b"S001:C03-000123", now_ms=NOW)
    assert isinstance(ev, Sale) and ev.origin == ORIGIN
    assert ev == to_sale(SALE, NOW)
    raw = JsonCodec().encode(INV | {"event_time": "2026-03-02T08:00:56.073Z"})
    ev = read_event("InventoryEvent", raw, JsonCodec(), ORIGIN, now_ms=NOW)
    assert isinstance(ev, InventoryEvent) and ev.origin == ORIGIN and ev.event_time == T
    params = read_event("ItemParams", b'{"store_id": "S1", "sku": "A", "min_qty": 3}', JsonCodec(), ORIGIN, now_ms=NOW)
    assert params == ItemParams("S1", "A", min_qty=3)


def dead(value: bytes | None, kind: str = "Sale", codec: Any = None, **kw: Any) -> DeadLetter:
    out = read_event(kind, value, codec or JsonCodec(), ORIGIN, key=b"S001:C03-000123", now_ms=NOW, **kw)
    assert isinstance(out, DeadLetter), out
    assert (out.source_topic, out.partition, out.offset, out.key) == ("retail.sales.v1", 2, 41, "S001:C03-000123")
    assert out.raw == (value or b"")[:MAX_RAW]  # the bytes as they came
    assert out.error.startswith(f"{kind} retail.sales.v1[2]@41: ") and len(out.error) > 30
    assert out.reason
    return out


def test_read_event_dead_letters_bad_bytes() -> None:
    d = dead(b"\x00\x01garbage")
    assert (d.stage, d.reason) == ("decode", "malformed")
    d = dead(b"\x07\x00\x00\x00\x01rest", codec=AvroCodec("Sale"))
    assert (d.stage, d.reason) == ("decode", "malformed")
    d = dead(AvroCodec("InventoryEvent").encode(INV), codec=AvroCodec("Sale"))
    assert (d.stage, d.reason) == ("decode", "wrong_schema")


def test_read_event_dead_letters_invalid_records() -> None:
    d = dead(JsonCodec().encode(sale(quantity=0)))
    assert (d.stage, d.reason) == ("validate", "negative_quantity")
    d = dead(JsonCodec().encode(sale(channel="FAX")))
    assert (d.stage, d.reason) == ("validate", "unknown_enum")
    d = dead(AvroCodec("Sale").encode(sale(unit_price=math.nan)), codec=AvroCodec("Sale"))
    assert (d.stage, d.reason) == ("validate", "bad_value")
    d = dead(JsonCodec().encode(sale(quantity=50)), max_quantity=10)
    assert (d.stage, d.reason) == ("validate", "too_large")


def test_read_event_dead_letters_tombstones_and_oversized_messages() -> None:
    d = dead(None)
    assert (d.stage, d.reason, d.raw) == ("decode", "empty", b"")
    big = JsonCodec().encode(sale(sku="x" * 2000))
    d = dead(big, max_bytes=1000)
    assert (d.stage, d.reason) == ("decode", "too_large") and str(len(big)) in d.error
    assert d.raw == big


@pytest.mark.parametrize(("value", "max_bytes"), [(b"\xff" * 400_000, 1_000_000), (b"x" * 1_500_000, 1_000_000)])
def test_a_dead_letter_keeps_the_first_bytes_of_a_large_record(value: bytes, max_bytes: int) -> None:
    """So that it fits a Kafka message even as JSON, where a byte may take 5 characters."""
    d = dead(value, max_bytes=max_bytes)
    assert len(d.raw) == MAX_RAW and f"raw keeps the first {MAX_RAW:,} of its {len(value):,} bytes" in d.error
    record = {"source_topic": d.source_topic, "raw": d.raw, "error": d.error, "failed_at": NOW}
    assert len(JsonCodec().encode(record)) < 1_000_000  # message.max.bytes by default


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("quantity", b'"' + b"9" * 900_000 + b'"', "wrong_type"),
        ("unit_price", b"[" + b",".join([b'"' + b"9" * 1000 + b'"'] * 1000) + b"]", "wrong_type"),
        ("quantity", b"[" * 1000 + b"]" * 1000, "wrong_type"),  # deeper than repr() goes
        ("event_time", b'"2026-' + b"1" * 900_000 + b'"', "bad_time"),
        ("channel", b'"' + b"X" * MAX_TEXT + b'"', "unknown_enum"),
    ],
)
def test_an_error_quotes_a_huge_bad_value_briefly(field: str, value: bytes, reason: str) -> None:
    """The raw bytes keep the value (the JSON text of ``field``); the error and the log line only name it."""
    raw = JsonCodec().encode(sale(**{field: "?"})).replace(b'"?"', value)
    d = dead(raw, max_bytes=2_000_000)
    assert (d.stage, d.reason) == ("validate", reason)
    assert len(d.error) < 300, d.error
    record = {"source_topic": d.source_topic, "key": d.key, "raw": d.raw, "error": d.error, "failed_at": NOW}
    assert len(JsonCodec().encode(record)) < 600_000  # well inside message.max.bytes (1 MB by default)


def test_a_dead_letter_keeps_the_first_characters_of_a_long_error() -> None:
    d = dead_letter(ORIGIN, b"S1:A", b"x" * (MAX_RAW + 1), "e" * 1_000_000, "late", "late")
    note = f" (raw keeps the first {MAX_RAW:,} of its {MAX_RAW + 1:,} bytes)"
    assert d.error == "e" * (MAX_ERROR - 3) + "..." + note and d.raw == b"x" * MAX_RAW
    assert (d.source_topic, d.partition, d.offset, d.key, d.stage, d.reason) == (
        "retail.sales.v1", 2, 41, "S1:A", "late", "late"
    )  # fmt: skip
    # a huge key: the dead letter carries it twice (field and Kafka key), so it keeps its first MAX_KEY bytes
    out = read_event("Sale", b"{", JsonCodec(), ORIGIN, key=b"k" * 900_000, now_ms=NOW)
    assert isinstance(out, DeadLetter) and out.key == "k" * MAX_KEY
    assert out.error.endswith(f" (key keeps the first {MAX_KEY:,} of its 900,000 bytes)")


def test_an_item_params_tombstone_drops_the_items_parameters() -> None:
    """On the compacted item-params topic a tombstone deletes the item's master data: the defaults apply again."""
    out = read_event("ItemParams", None, JsonCodec(), ORIGIN, key=b"S001:C03-000123", now_ms=NOW)
    assert out == ItemParams("S001", "C03-000123")
    for key in (None, b"no-colon", b":sku"):
        d = read_event("ItemParams", None, JsonCodec(), ORIGIN, key=key, now_ms=NOW)
        assert isinstance(d, DeadLetter) and (d.stage, d.reason) == ("decode", "empty")


def test_read_event_keeps_an_undecodable_key_readable() -> None:
    out = read_event("Sale", b"{}", JsonCodec(), ORIGIN, key=b"\xffS1", now_ms=NOW)
    assert isinstance(out, DeadLetter) and out.key == "\ufffdS1"
    out = read_event("Sale", b"{}", JsonCodec(), ORIGIN, now_ms=NOW)
    assert isinstance(out, DeadLetter) and out.key is None and out.reason == "missing_field"


def test_read_records_reads_a_stores_batch_and_turns_the_rest_into_dead_letters() -> None:
    json = JsonCodec()
    codecs = {"Sale": json, "ItemParams": json}
    other = {**SALE, "event_id": "sale-2", "store_id": "S002"}
    records = [
        (
            "ItemParams",
            "retail.item-params.v1",
            0,
            7,
            b"S001:A",
            json.encode({"store_id": "S001", "sku": "A"}),
            T,
        ),
        ("Sale", "retail.sales.v1", 2, 41, b"S001:C03-000123", json.encode(SALE), T),
        ("Sale", "retail.sales.v1", 2, 42, b"S001:C03-000123", b"{not json", T),
        ("Sale", "retail.sales.v1", 3, 9, b"S001:C03-000123", json.encode(other), T),
        ("Sale", "retail.sales.v1", 3, 10, b"S001:C03-999", json.encode({**SALE, "event_id": "sale-3"}), T),
    ]
    events, dead, params = read_records(records, codecs, "S001", NOW)  # type: ignore[arg-type]
    assert [type(e) for e in events] == [ItemParams, Sale]
    assert events[1].origin == ORIGIN and events[1] == read_event("Sale", records[1][5], json, ORIGIN, now_ms=NOW)
    assert [(d.offset, d.stage, d.reason) for d in dead] == [
        (42, "decode", "malformed"),
        (9, "validate", "key_mismatch"),
        (10, "validate", "key_mismatch"),
    ]
    assert "does not name its item 'S002:C03-000123'" in dead[1].error and dead[1].key == "S001:C03-000123"
    assert "the key 'S001:C03-999' does not name its item 'S001:C03-000123'" in dead[2].error
    assert params == {"retail.item-params.v1": 1}


@pytest.mark.parametrize(
    ("key", "store", "accepted"),
    [
        (None, "S1", True),
        (b"order-123", "S1", True),  # no colon: names no item, the value decides (as the router does)
        (b"S1:X", "S1", True),
        (b"S2:X", "S2", False),  # routed to S2 by its key
        (b"S2:X", "S1", False),
        (b"S1:Y", "S1", False),
        (b"S1:X:1", "S1", False),
    ],
)
def test_a_key_store_id_sku_must_name_the_records_item(key: bytes | None, store: str, accepted: bool) -> None:
    json = JsonCodec()
    records = [("Sale", "retail.sales.v1", 2, 41, key, json.encode(SALE | {"store_id": "S1", "sku": "X"}), T)]
    events, dead, _ = read_records(records, {"Sale": json}, store, NOW)  # type: ignore[arg-type]
    if accepted:
        assert len(events) == 1 and dead == []
    else:
        assert events == [] and [(d.stage, d.reason) for d in dead] == [("validate", "key_mismatch")]
        assert "does not name its item 'S1:X'" in dead[0].error


def test_a_key_mismatch_quotes_a_huge_key_briefly() -> None:
    json = JsonCodec()
    key = b"S001:" + b"k" * 900_000
    records = [("Sale", "retail.sales.v1", 2, 41, key, json.encode(SALE), T)]
    _, (d,), _ = read_records(records, {"Sale": json}, "S001", NOW)  # type: ignore[arg-type]
    assert d.reason == "key_mismatch" and len(d.error) < 300, d.error
