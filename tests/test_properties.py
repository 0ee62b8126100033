"""Properties of the one door into the flow: ``read_event`` never raises, and valid records pass unchanged.

Every input ends as an event or as a :class:`DeadLetter` with an error and a reason. Runs are
derandomised (a fixed seed per test) and keep no example database, so they are deterministic.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import orjson
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from demandsense.errors import ValidationError
from demandsense.serde import AvroCodec, JsonCodec, iso_from_ms, local_schema_id
from demandsense.validate import MAX_RAW, MIN_TIME_MS, VALIDATORS, read_event
from operators.events import CHANNELS, INVENTORY_TYPES, DeadLetter, InventoryEvent, ItemParams, Origin, Sale

NOW = 1_772_500_000_000
ORIGIN = Origin("retail.sales.v1", 1, 99)
KINDS = ("Sale", "InventoryEvent", "ItemParams")
TYPES = {"Sale": Sale, "InventoryEvent": InventoryEvent, "ItemParams": ItemParams}
CODECS: dict[str, dict[str, Any]] = {
    "avro": {k: AvroCodec(k) for k in KINDS},
    "json": {k: JsonCodec() for k in KINDS},
}

PROPS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check(kind: str, value: bytes | None, codec: Any, **kw: Any) -> Any:
    """``read_event`` must not raise and must return an event of ``kind`` or a complete dead letter."""
    out = read_event(kind, value, codec, ORIGIN, key=b"k", now_ms=NOW, **kw)
    event(f"{out.stage}:{out.reason}" if isinstance(out, DeadLetter) else "ok")
    if isinstance(out, DeadLetter):
        assert out.error.strip() and out.reason.strip()
        assert out.stage in ("decode", "validate")
        assert (out.source_topic, out.partition, out.offset) == ("retail.sales.v1", 1, 99)
        assert out.raw == (value or b"")[:MAX_RAW]
    else:
        assert isinstance(out, TYPES[kind]), out
        if not isinstance(out, ItemParams):
            assert out.origin == ORIGIN
            assert MIN_TIME_MS <= out.event_time <= NOW + 24 * 3_600_000
    return out


# -- valid records ---------------------------------------------------------------------------------
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)
times = st.integers(MIN_TIME_MS, NOW)
int32 = st.integers(-(2**31) + 1, 2**31 - 1)
prices = st.floats(0, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def sales(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "event_id": draw(text),
        "event_time": draw(times),
        "store_id": draw(text),
        "sku": draw(text),
        "channel": draw(st.sampled_from(CHANNELS)),
        "quantity": draw(st.integers(1, 2**31 - 1)),
        "unit_price": draw(prices),
        "promo_id": draw(st.none() | text),
    }


POSITIVE = ("RECEIPT", "TRANSFER_IN", "RETURN", "RESERVATION", "RESERVATION_RELEASE")


@st.composite
def inventory(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(INVENTORY_TYPES))
    if kind in ("SNAPSHOT", "CYCLE_COUNT", "SHELF_SCAN"):
        quantity, on_hand = 0, draw(st.integers(0, 2**31 - 1))
    else:
        lo = 0 if kind in POSITIVE else -(2**31) + 1
        hi = 0 if kind in ("SHRINK", "TRANSFER_OUT") else 2**31 - 1
        quantity, on_hand = draw(st.integers(lo, hi)), draw(st.none() | st.integers(0, 2**31 - 1))
    return {
        "event_id": draw(text),
        "event_time": draw(times),
        "store_id": draw(text),
        "sku": draw(text),
        "event_type": kind,
        "quantity": quantity,
        "on_hand": on_hand,
        "in_transit": draw(st.none() | st.integers(0, 2**31 - 1)),
    }


@st.composite
def item_params(draw: st.DrawFn) -> dict[str, Any]:
    maybe = st.none() | st.floats(0, 1e6, allow_nan=False)
    return {
        "store_id": draw(text),
        "sku": draw(text),
        "unit_price": draw(maybe),
        "unit_cost": draw(maybe),
        "lead_time_hours": draw(st.none() | st.floats(0.01, 24 * 366)),
        "service_level": draw(st.none() | st.floats(0.001, 0.999)),
        "pack_size": draw(st.none() | st.integers(1, 10_000)),
        "min_qty": draw(st.none() | st.integers(0, 10_000)),
        "max_qty": draw(st.none() | st.integers(0, 10_000)),
        "category": draw(st.none() | text),
    }


RECORDS = {"Sale": sales(), "InventoryEvent": inventory(), "ItemParams": item_params()}
records = st.sampled_from(KINDS).flatmap(lambda k: st.tuples(st.just(k), RECORDS[k]))


def as_event(kind: str, record: dict[str, Any]) -> Any:
    if kind == "ItemParams":
        return ItemParams(**record)
    return TYPES[kind](**record, origin=ORIGIN)


@PROPS
@given(records)
def test_a_valid_avro_record_survives_encode_decode_validate(kr: tuple[str, dict[str, Any]]) -> None:
    kind, record = kr
    codec = CODECS["avro"][kind]
    out = check(kind, codec.encode(record), codec)
    assert out == as_event(kind, record)


def json_record(record: dict[str, Any]) -> dict[str, Any]:
    # JSON may omit nullable fields
    return {k: v for k, v in record.items() if v is not None}


@PROPS
@given(records)
def test_a_valid_json_record_with_epoch_times_survives(kr: tuple[str, dict[str, Any]]) -> None:
    kind, record = kr
    out = check(kind, orjson.dumps(json_record(record)), CODECS["json"][kind])
    assert out == as_event(kind, record)


@PROPS
@given(records)
@example(("Sale", {**dict.fromkeys(("event_id", "store_id", "sku"), "x"), "event_time": 1_093_077_386_909,
                   "channel": "STORE", "quantity": 1, "unit_price": 1.0, "promo_id": None}))  # fmt: skip
def test_a_valid_json_record_survives_encode_decode_validate(kr: tuple[str, dict[str, Any]]) -> None:
    kind, record = kr
    codec = CODECS["json"][kind]
    data = codec.encode(json_record(record))
    if "event_time" in record:
        assert orjson.loads(data)["event_time"] == iso_from_ms(record["event_time"])
    assert check(kind, data, codec) == as_event(kind, record)


# -- anything at all ----------------------------------------------------------------------------------
@PROPS
@given(st.sampled_from(KINDS), st.sampled_from(("avro", "json")), st.binary(max_size=300))
def test_random_bytes_never_raise(kind: str, fmt: str, data: bytes) -> None:
    check(kind, data, CODECS[fmt][kind])


@PROPS
@given(st.sampled_from(KINDS), st.binary(max_size=60))
def test_random_bytes_behind_a_valid_avro_header_never_raise(kind: str, body: bytes) -> None:
    header = struct.pack(">bI", 0, local_schema_id(kind))
    check(kind, header + body, CODECS["avro"][kind])


@st.composite
def flipped(draw: st.DrawFn) -> tuple[str, bytes]:
    kind, record = draw(records)
    data = bytearray(CODECS["avro"][kind].encode(record))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    return kind, bytes(data)


@PROPS
@given(flipped())
def test_avro_with_changed_bytes_never_raises(kd: tuple[str, bytes]) -> None:
    kind, data = kd
    check(kind, data, CODECS["avro"][kind])


@PROPS
@given(records, st.sampled_from(("avro", "json")), st.data())
def test_truncated_or_extended_records_never_raise(
    kr: tuple[str, dict[str, Any]], fmt: str, data: st.DataObject
) -> None:
    kind, record = kr
    codec = CODECS[fmt][kind]
    raw = codec.encode(record)
    cut = data.draw(st.integers(0, len(raw)))
    check(kind, raw[:cut], codec)
    check(kind, raw + data.draw(st.binary(min_size=1, max_size=8)), codec)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["", "UNKNOWN_ENUM", "store", "2026-03-02T08:00:00Z", "2026-03-02T08:00:00"])
    | st.integers(250, 5000).map(lambda n: "x" * n),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
odd_times = st.sampled_from(
    [
        -(2**62), -1, 0, 946_684_799_999, 2**62, 1e300, -1e300, math.nan, math.inf,
        "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-14:00", "2026-02-30T00:00:00Z",
        "2026-03-02T08:00:00.0000001Z", "2026-03-02", "T08:00Z", "",
    ]
)  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    kind, record = draw(records)
    record = dict(record)
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(sorted(record)))
        action = draw(st.sampled_from(("drop", "value", "time", "huge", "number", "enum")))
        if action == "drop":
            record.pop(name, None)
        elif action == "value":
            record[name] = draw(json_values)
        elif action == "time":
            record["event_time"] = draw(odd_times)
        elif action == "huge":
            record[name] = "ü" * draw(st.integers(200, 20_000))
        elif action == "number":
            record[name] = draw(
                st.sampled_from([math.nan, math.inf, -math.inf, 2**31, -(2**31), 2**63, 3e9, -0.0, 1e-320])
            )
        else:
            record[draw(st.sampled_from(("channel", "event_type")))] = draw(st.text(max_size=12))
    if draw(st.booleans()):
        record[draw(st.text(max_size=8))] = draw(json_values)  # an unknown field
    return kind, record


def to_json(record: dict[str, Any]) -> bytes:
    """JSON as a producer would send it; NaN and infinities as the non-standard tokens some send."""
    try:
        return orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(record, default=str).encode()


@PROPS
@given(mutated())
def test_mutated_json_records_never_raise(kr: tuple[str, dict[str, Any]]) -> None:
    kind, record = kr
    check(kind, to_json(record), CODECS["json"][kind])
    check(kind, to_json(record), CODECS["json"][kind], max_quantity=1000, max_bytes=5000)


@PROPS
@given(mutated())
def test_mutated_records_never_raise_the_validators_directly(kr: tuple[str, dict[str, Any]]) -> None:
    """Avro can carry NaN prices and far times too: validation alone must cope with any dict."""
    kind, record = kr
    try:
        out = VALIDATORS[kind](record, NOW, None, ORIGIN)
    except ValidationError as exc:
        assert exc.reason and str(exc)
    else:
        assert isinstance(out, TYPES[kind])
