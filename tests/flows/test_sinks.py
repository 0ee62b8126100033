"""Output records on the wire: every field of the record, the wall clock stamped at the edge."""

from __future__ import annotations

from dataclasses import asdict

from demandsense.serde import AvroCodec
from flows.sinks import KINDS, to_record
from operators.events import Alert, DeadLetter, Trigger

NOW = 1_764_000_000_000
ALERT = Alert(
    "a-1", "DEMAND_SPIKE", "OPEN", "S1", "K1", NOW - 60_000, 2, "HIGH", 1.5, 6.0, 0.97, None, 42.0,
    "4x the expected rate", "m-1", {"z": 4.2},
)  # fmt: skip
TRIGGER = Trigger(
    "t-1", "S1", "K1", NOW, 12, 3, 8.0, 20.0, 24.0, 0.5, "AUTO_APPROVED", "within policy", "p", "m-1", False
)
DEAD = DeadLetter(
    "retail.sales.v1", 0, 7, "S1:K1", b"\x00junk", "Sale retail.sales.v1[0]@7: bad", "decode", "malformed"
)


def test_records_carry_every_field_and_stamp_the_wall_clock() -> None:
    assert to_record(ALERT, NOW) == {**asdict(ALERT), "detected_at": NOW}
    assert to_record(TRIGGER, NOW) == asdict(TRIGGER)
    assert to_record(DEAD, NOW) == {**asdict(DEAD), "failed_at": NOW}


def test_records_round_trip_through_their_avro_schemas() -> None:
    for item in (ALERT, TRIGGER, DEAD):
        codec = AvroCodec(KINDS[type(item)])
        record = to_record(item, NOW)
        assert codec.decode(codec.encode(record)) == record
