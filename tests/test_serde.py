"""Wire formats: Confluent-framed Avro for every record type, JSON times, schema docs."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from demandsense.embedded import free_port
from demandsense.errors import ConfigError, DecodeError, ServiceUnavailable
from demandsense.serde import (
    RECORD_TYPES,
    AvroCodec,
    JsonCodec,
    iso_from_ms,
    local_schema_id,
    make_codec,
    schema_dir,
    schema_json,
)

T = 1_772_438_456_073  # 2026-03-02T08:00:56.073Z

RECORDS: dict[str, dict[str, Any]] = {
    "Sale": {
        "event_id": "sale-1",
        "event_time": T,
        "store_id": "S001",
        "sku": "C03-000123",
        "channel": "ONLINE",
        "quantity": 3,
        "unit_price": 4.99,
        "promo_id": "P-7",
    },
    "InventoryEvent": {
        "event_id": "inv-1",
        "event_time": T,
        "store_id": "S001",
        "sku": "C03-000123",
        "event_type": "CYCLE_COUNT",
        "quantity": 0,
        "on_hand": 17,
        "in_transit": 24,
    },
    "ItemParams": {
        "store_id": "S001",
        "sku": "C03-000123",
        "unit_price": 4.99,
        "unit_cost": 2.5,
        "lead_time_hours": 36.0,
        "service_level": 0.97,
        "pack_size": 12,
        "min_qty": 6,
        "max_qty": 48,
        "category": "dairy",
    },
    "Alert": {
        "alert_id": "0123456789abcdef01234567",
        "alert_type": "STOCKOUT_RISK",
        "status": "UPDATE",
        "store_id": "S001",
        "sku": "C03-000123",
        "event_time": T,
        "detected_at": T + 1234,
        "priority": 87,
        "severity": "CRITICAL",
        "expected_rate": 4.5,
        "observed_rate": 12.75,
        "confidence": 0.93,
        "hours_to_stockout": 3.5,
        "revenue_at_risk": 412.2,
        "reason": "93% chance of running out within the 48 h lead time.",
        "model_version": "ds-poisson-cusum/1.0",
        "evidence": {"position": 7.0, "lead_time_demand": 31.2},
    },
    "ReplenishmentTrigger": {
        "trigger_id": "abcdef0123456789abcdef01",
        "store_id": "S001",
        "sku": "C03-000123",
        "event_time": T,
        "order_quantity": 48,
        "inventory_position": 7,
        "reorder_point": 31.5,
        "order_up_to": 55.0,
        "lead_time_hours": 48.0,
        "demand_rate_per_hour": 0.66,
        "approval": "NEEDS_REVIEW",
        "approval_reason": "order value 2600.00 is over the auto-approval limit of 2500.00",
        "policy": "order-up-to/v1",
        "model_version": "ds-poisson-cusum/1.0",
        "fallback": False,
    },
    "DeadLetter": {
        "source_topic": "retail.sales.v1",
        "partition": 3,
        "offset": 123456789012,
        "key": "S001:C03-000123",
        "raw": b"\x00\xff not a record \x80",
        "error": "Sale retail.sales.v1[3]@123456789012: required field 'sku' is missing",
        "stage": "validate",
        "reason": "missing_field",
        "failed_at": T,
    },
}


def test_every_record_type_has_a_sample() -> None:
    assert set(RECORDS) == set(RECORD_TYPES)
    for name, record in RECORDS.items():
        assert {f["name"] for f in schema_json(name)["fields"]} == set(record), name


@pytest.mark.parametrize("name", RECORD_TYPES)
def test_avro_round_trip(name: str) -> None:
    codec = AvroCodec(name)
    data = codec.encode(RECORDS[name])
    assert codec.decode(data) == RECORDS[name]


@pytest.mark.parametrize("name", ["Sale", "InventoryEvent", "ItemParams", "Alert"])
def test_avro_round_trip_with_nulls(name: str) -> None:
    nullable = {f["name"] for f in schema_json(name)["fields"] if isinstance(f["type"], list) and "null" in f["type"]}
    assert nullable
    record = {k: (None if k in nullable else v) for k, v in RECORDS[name].items()}
    codec = AvroCodec(name)
    assert codec.decode(codec.encode(record)) == record


@pytest.mark.parametrize("name", RECORD_TYPES)
def test_confluent_framing(name: str) -> None:
    data = AvroCodec(name).encode(RECORDS[name])
    assert data[0] == 0
    assert struct.unpack(">I", data[1:5])[0] == local_schema_id(name)
    assert 0 < local_schema_id(name) < 2**31
    registry = AvroCodec(name, schema_id=100_042)
    framed = registry.encode(RECORDS[name])
    assert framed[1:5] == struct.pack(">I", 100_042) and framed[5:] == data[5:]
    assert registry.decode(data) == RECORDS[name]  # the local id is still read
    assert registry.decode(framed) == RECORDS[name]


def test_local_schema_ids_are_stable_and_distinct() -> None:
    ids = [local_schema_id(n) for n in RECORD_TYPES]
    assert len(set(ids)) == len(ids)
    assert ids == [local_schema_id(n) for n in RECORD_TYPES]


def decode_error(codec: AvroCodec, data: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        codec.decode(data)
    assert str(info.value), "a DecodeError says what was wrong"
    return info.value


def test_wrong_magic_byte() -> None:
    codec = AvroCodec("Sale")
    data = codec.encode(RECORDS["Sale"])
    err = decode_error(codec, b"\x01" + data[1:])
    assert err.reason == "malformed" and "magic byte 1" in str(err)


def test_wrong_schema_id() -> None:
    codec = AvroCodec("Sale")
    other = AvroCodec("InventoryEvent").encode(RECORDS["InventoryEvent"])
    err = decode_error(codec, other)
    assert err.reason == "wrong_schema"
    assert str(local_schema_id("InventoryEvent")) in str(err) and "Sale" in str(err)


@pytest.mark.parametrize("name", ["Sale", "InventoryEvent", "ItemParams"])
def test_every_truncation_is_an_error(name: str) -> None:
    codec = AvroCodec(name)
    data = codec.encode(RECORDS[name])
    for n in range(len(data)):
        err = decode_error(codec, data[:n])
        assert err.reason == "malformed", (n, err)
    assert "too short" in str(decode_error(codec, data[:3]))


def test_trailing_bytes_are_an_error() -> None:
    codec = AvroCodec("Sale")
    data = codec.encode(RECORDS["Sale"])
    err = decode_error(codec, data + b"\x00\x00")
    assert err.reason == "malformed" and "2 trailing bytes" in str(err)


def test_json_writes_iso_8601_utc_times() -> None:
    codec = JsonCodec()
    alert = json.loads(codec.encode(RECORDS["Alert"]))
    assert alert["event_time"] == "2026-03-02T08:00:56.073Z"
    assert alert["detected_at"] == "2026-03-02T08:00:57.307Z"
    dead = json.loads(codec.encode(RECORDS["DeadLetter"]))
    assert dead["failed_at"] == "2026-03-02T08:00:56.073Z"
    assert isinstance(dead["raw"], str) and "not a record" in dead["raw"]
    assert dead["offset"] == 123456789012  # other numbers stay numbers
    assert codec.decode(codec.encode(RECORDS["Sale"]))["event_time"] == "2026-03-02T08:00:56.073Z"


@pytest.mark.parametrize(
    ("ms", "iso"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (946_684_800_000, "2000-01-01T00:00:00.000Z"),
        (T, "2026-03-02T08:00:56.073Z"),
        (1_772_438_456_999, "2026-03-02T08:00:56.999Z"),
        (1_772_438_456_001, "2026-03-02T08:00:56.001Z"),
    ],
)
def test_iso_from_ms(ms: int, iso: str) -> None:
    assert iso_from_ms(ms) == iso


def test_json_decode_errors() -> None:
    codec = JsonCodec()
    for bad in (b"", b"{", b"not json", b"\xff\xfe", b'{"a": NaN}'):
        with pytest.raises(DecodeError) as info:
            codec.decode(bad)
        assert info.value.reason == "malformed" and "not JSON" in str(info.value)
    for not_an_object in (b"[1, 2]", b"3", b'"text"', b"null"):
        with pytest.raises(DecodeError, match="expected a JSON object"):
            codec.decode(not_an_object)


def test_make_codec() -> None:
    assert isinstance(make_codec("json", "Sale"), JsonCodec)
    avro = make_codec("avro", "Sale")
    assert isinstance(avro, AvroCodec) and avro.schema_id == local_schema_id("Sale")
    with pytest.raises(ValueError, match="unknown format"):
        make_codec("protobuf", "Sale")


@pytest.mark.parametrize("path", sorted(schema_dir().glob("*.avsc")), ids=lambda p: p.stem)
def test_every_schema_field_has_a_doc(path: Any) -> None:
    schema = json.loads(path.read_text())
    assert schema["namespace"] == "demandsense.v1"
    assert schema.get("doc", "").strip()
    for f in schema["fields"]:
        assert isinstance(f.get("doc"), str) and f["doc"].strip(), f"{path.name}: field {f['name']} has no doc"


def test_every_record_type_has_a_schema_file() -> None:
    assert {p.stem for p in schema_dir().glob("*.avsc")} == set(RECORD_TYPES)


def test_an_unreachable_schema_registry_is_named_without_its_credentials() -> None:
    port = free_port()
    with pytest.raises(ServiceUnavailable) as err:
        make_codec("avro", "Sale", topic="retail.sales.v1", registry_url=f"http://me:secret@127.0.0.1:{port}")
    assert str(err.value).startswith(f"Schema Registry at http://127.0.0.1:{port} did not answer")
    assert "secret" not in str(err.value)


def test_a_malformed_schema_registry_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--schema-registry-url notaurl: "):
        make_codec("avro", "Sale", topic="retail.sales.v1", registry_url="notaurl")
