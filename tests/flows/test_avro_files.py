"""Avro object container files as replay input: each record becomes the JSON a line would hold."""

from __future__ import annotations

import math
from pathlib import Path

import fastavro
import orjson
import pytest

from demandsense.errors import ValidationError
from demandsense.serde import schema_json
from demandsense.validate import to_sale
from flows.sources import merged_records

SALE = {"event_id": "e1", "event_time": 1772438400000, "store_id": "S1", "sku": "A", "channel": "STORE",
        "quantity": 2, "unit_price": 3.5, "promo_id": None}  # fmt: skip
NOW = 1772438400000 + 3_600_000


@pytest.mark.parametrize("price", [math.nan, math.inf])
def test_a_double_json_cannot_hold_is_refused_not_read_as_missing(price: float, tmp_path: Path) -> None:
    path = tmp_path / "sales.avro"
    with path.open("wb") as f:
        fastavro.writer(f, fastavro.parse_schema(schema_json("Sale")), [SALE, SALE | {"unit_price": price}])
    good, bad = (orjson.loads(r[5]) for r in merged_records({"Sale": path}))
    assert to_sale(good, now_ms=NOW).unit_price == 3.5
    with pytest.raises(ValidationError, match="unit_price") as refused:
        to_sale(bad, now_ms=NOW)
    assert refused.value.reason != "missing_field"  # orjson alone writes null: the price would read as missing
