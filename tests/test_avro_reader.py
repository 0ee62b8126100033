"""The Avro reader reads every demandsense record exactly as fastavro does, and refuses bad bytes."""

from __future__ import annotations

import io
import struct
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demandsense.avro_reader import RecordReader
from demandsense.errors import DecodeError
from demandsense.serde import RECORD_TYPES, _strip_logical, parsed_schema, schema_json


def _values(schema: Any) -> st.SearchStrategy[Any]:
    """Values of one field type, as fastavro writes them."""
    if isinstance(schema, list):
        return st.one_of(*[_values(s) for s in schema])
    t = schema["type"] if isinstance(schema, dict) else schema
    simple: dict[str, st.SearchStrategy[Any]] = {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": st.integers(-(2**31), 2**31 - 1),
        "long": st.integers(-(2**63), 2**63 - 1),
        "double": st.floats(allow_nan=False),
        "string": st.text(max_size=40),
        "bytes": st.binary(max_size=40),
    }
    if t in simple:
        return simple[t]
    if t == "enum":
        return st.sampled_from(schema["symbols"])
    assert t == "map", t
    return st.dictionaries(st.text(max_size=10), _values(schema["values"]), max_size=5)


def _records(name: str) -> st.SearchStrategy[dict[str, Any]]:
    fields = _strip_logical(schema_json(name))["fields"]
    return st.fixed_dictionaries({f["name"]: _values(f["type"]) for f in fields})


def _fastavro(name: str, body: bytes) -> Any:
    buf = io.BytesIO(body)
    record = fastavro.schemaless_reader(buf, parsed_schema(name), None)
    return record, buf.tell()


def _write(name: str, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed_schema(name), record)
    return buf.getvalue()


READERS = {name: RecordReader(_strip_logical(schema_json(name))) for name in RECORD_TYPES}


@pytest.mark.parametrize("name", RECORD_TYPES)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_reads_what_fastavro_writes_as_fastavro_reads_it(name: str, data: st.DataObject) -> None:
    body = _write(name, data.draw(_records(name)))
    got = READERS[name].read(b"\x00head" + body, 5)  # a body after a 5-byte frame header, as on the wire
    want, _ = _fastavro(name, body)
    assert got == want
    assert list(got) == list(want)  # the same fields in the same order


@pytest.mark.parametrize("name", RECORD_TYPES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_truncated_record_is_a_decode_error(name: str, data: st.DataObject) -> None:
    body = _write(name, data.draw(_records(name)))
    cut = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises(DecodeError) as exc:
        READERS[name].read(body[:cut], 0)
    assert exc.value.reason == "malformed"


@pytest.mark.parametrize("name", RECORD_TYPES)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_corrupted_record_fails_or_reads_as_fastavro_reads_it(name: str, data: st.DataObject) -> None:
    body = bytearray(_write(name, data.draw(_records(name))))
    for _ in range(data.draw(st.integers(1, 3))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    try:
        got = READERS[name].read(bytes(body), 0)
    except DecodeError as exc:
        assert exc.reason == "malformed"
        return
    want, end = _fastavro(name, bytes(body))
    assert (repr(got), len(body)) == (repr(want), end)  # repr: a NaN double equals itself


def test_trailing_bytes_and_bad_values_are_named() -> None:
    sale = RECORD_TYPES[0]
    body = _write(sale, {"event_id": "e", "event_time": 1, "store_id": "S", "sku": "K", "channel": "STORE",
                         "quantity": 1, "unit_price": 1.0, "promo_id": None})  # fmt: skip
    with pytest.raises(DecodeError, match="2 trailing bytes after the Sale record"):
        READERS[sale].read(body + b"\x00\x00", 0)
    enum_at = body.index(b"\x02K") + 2  # the channel follows the sku "K"
    bad_enum = body[:enum_at] + b"\x08" + body[enum_at + 1 :]  # symbol 4 of 4
    with pytest.raises(DecodeError, match="at channel: enum index 4 of 4 symbols"):
        READERS[sale].read(bad_enum, 0)
    not_utf8 = body.replace(b"\x02e", b"\x02\xff", 1)
    with pytest.raises(DecodeError, match="Sale.event_id is not UTF-8"):
        READERS[sale].read(not_utf8, 0)
    with pytest.raises(DecodeError, match="longer than 10 bytes"):
        READERS[sale].read(b"\x02e" + b"\xff" * 11 + b"\x01", 0)


def test_reads_a_map_written_in_sized_blocks() -> None:
    """Avro lets a writer give a block's size in bytes (a negative count); fastavro never writes one."""
    schema = {"type": "record", "name": "M", "fields": [{"name": "m", "type": {"type": "map", "values": "double"}}]}
    entry = b"\x02a" + struct.pack("<d", 1.5)
    body = b"\x01" + bytes([len(entry) * 2]) + entry + b"\x02\x02b" + struct.pack("<d", 2.0) + b"\x00"
    want = {"m": {"a": 1.5, "b": 2.0}}
    assert RecordReader(schema).read(body, 0) == want
    assert fastavro.schemaless_reader(io.BytesIO(body), fastavro.parse_schema(schema), None) == want


@pytest.mark.parametrize(
    "field_type",
    [{"type": "array", "items": "int"}, {"type": "fixed", "name": "F", "size": 4}, "float", "demandsense.v1.Other"],
)
def test_refuses_a_schema_with_types_it_does_not_read(field_type: Any) -> None:
    schema = {"type": "record", "name": "X", "fields": [{"name": "x", "type": field_type}]}
    with pytest.raises(ValueError, match="does not read"):
        RecordReader(schema)


@pytest.mark.parametrize("varint", [b"\xff" * 9 + b"\x7f", b"\xfe" * 9 + b"\x7f", b"\x80" * 9 + b"\x01"])
def test_a_ten_byte_number_reads_as_fastavro_reads_it(varint: bytes) -> None:
    """Bits past the 64th are dropped, as in fastavro's C reader."""
    schema = {"type": "record", "name": "L", "fields": [{"name": "n", "type": "long"}]}
    want = fastavro.schemaless_reader(io.BytesIO(varint), fastavro.parse_schema(schema), None)
    assert RecordReader(schema).read(varint, 0) == want
