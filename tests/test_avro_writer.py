"""The Avro writer writes every demandsense record byte for byte as fastavro does."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demandsense.avro_writer import RecordWriter
from demandsense.serde import RECORD_TYPES, _strip_logical, parsed_schema, schema_json
from tests.test_avro_reader import _records

WRITERS = {name: RecordWriter(_strip_logical(schema_json(name))) for name in RECORD_TYPES}


def _fastavro(name: str, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed_schema(name), record)
    return buf.getvalue()


@pytest.mark.parametrize("name", RECORD_TYPES)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_writes_what_fastavro_writes(name: str, data: st.DataObject) -> None:
    record = data.draw(_records(name))
    assert WRITERS[name].write(record, b"\x00head") == b"\x00head" + _fastavro(name, record)


def test_an_int_for_a_double_and_a_missing_optional_field_are_written_as_fastavro_writes_them() -> None:
    params = {"store_id": "S1", "sku": "A", "unit_price": 3, "pack_size": 6}  # the other optional fields are absent
    assert WRITERS["ItemParams"].write(params) == _fastavro("ItemParams", params)
    sale = {"event_id": "e", "event_time": 1, "store_id": "S1", "sku": "A", "channel": "STORE", "quantity": 2,
            "unit_price": 4}  # fmt: skip
    assert WRITERS["Sale"].write(sale) == _fastavro("Sale", sale), "promo_id absent: null"


def test_a_record_that_does_not_fit_the_schema_is_refused() -> None:
    sale = {"event_id": "e", "event_time": 1, "store_id": "S1", "sku": "A", "channel": "STORE", "quantity": 2,
            "unit_price": 4.0}  # fmt: skip
    with pytest.raises(ValueError, match="DRONE"):
        WRITERS["Sale"].write({**sale, "channel": "DRONE"})
    with pytest.raises(ValueError, match="quantity is missing"):
        WRITERS["Sale"].write({k: v for k, v in sale.items() if k != "quantity"})
    with pytest.raises(ValueError, match="fits no branch"):
        WRITERS["Sale"].write({**sale, "promo_id": 7})
    with pytest.raises(ValueError, match="reads and writes records"):
        RecordWriter({"type": "enum", "name": "E", "symbols": ["A"]})
