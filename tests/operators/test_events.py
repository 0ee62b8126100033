"""Events and output records pickle by their fields (cluster exchange, snapshots), and snapshots of the old form
still load."""

from __future__ import annotations

import copyreg
import io
import pickle
from dataclasses import fields

import pytest

from operators.events import Alert, DeadLetter, InventoryEvent, ItemParams, Origin, Sale, Trigger

EVENTS = [
    Sale("s1", 1_772_438_400_000, "S1", "A", "STORE", 2, 3.5, "P1", Origin("retail.sales.v1", 3, 42)),
    InventoryEvent("i1", 1_772_438_400_001, "S1", "A", "SNAPSHOT", 0, 12, 4, Origin("retail.inventory.v1", 0, 7)),
    ItemParams("S1", "A", 3.5, 2.0, 48.0, 0.95, 6, 1, 24, "dairy"),
]

OUTPUTS = [
    Alert("a1", "DEMAND_SPIKE", "OPEN", "S1", "A", 1_772_438_400_000, 42, "HIGH", 1.5, 6.0, 0.97, None, 42.0,
          "4x the expected rate", "m-1", {"z": 4.2}),
    Trigger("t1", "S1", "A", 1_772_438_400_000, 12, 3, 8.0, 20.0, 24.0, 0.5, "AUTO_APPROVED", "within policy",
            "order-up-to/v1", "m-1", False),
    DeadLetter("retail.sales.v1", 3, 17, "S1:A", b"\x00\x01", "bad magic byte", "decode", "malformed"),
]  # fmt: skip


def _fields(ev: object) -> tuple:
    return tuple(getattr(ev, f.name) for f in fields(ev))  # type: ignore[arg-type]


@pytest.mark.parametrize("event", EVENTS + OUTPUTS, ids=lambda e: type(e).__name__)
def test_an_event_pickles_to_its_fields_and_back(event: object) -> None:
    copy = pickle.loads(pickle.dumps(event, protocol=pickle.HIGHEST_PROTOCOL))
    assert type(copy) is type(event)
    assert _fields(copy) == _fields(event)  # origin too, which equality leaves out
    assert type(event).__reduce__(event) == (type(event), _fields(event))


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_an_event_pickled_the_dataclass_way_still_loads(event: object) -> None:
    class DataclassDefault(pickle.Pickler):  # what snapshots held before: the class, then each field's state
        def reducer_override(self, obj: object):
            if type(obj) in (Sale, InventoryEvent, ItemParams, Origin):
                return copyreg.__newobj__, (type(obj),), obj.__getstate__()  # type: ignore[attr-defined]
            return NotImplemented

    buf = io.BytesIO()
    DataclassDefault(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(event)
    copy = pickle.loads(buf.getvalue())
    assert _fields(copy) == _fields(event)
