"""Schemaless Avro encoding of demandsense's records, compiled by mypyc (setup.py): the reader's mirror.

fastavro interprets the schema for every field of every record it writes: 5.5 µs per output record
of a backfill, most of what the Kafka sink spent. A :class:`RecordWriter` walks the field types that
:func:`demandsense.avro_reader.avro_type` builds once, and writes the bytes fastavro writes (the
tests hold it to that) for the types demandsense's schemas use: an alert in 2.4 µs against 5.8
compiled (as Python source, 6.1), and the Kafka sink's CPU over the 1M-event backfill 0.60 -> 0.43 s.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from demandsense.avro_reader import BOOLEAN, BYTES, DOUBLE, ENUM, INT, MAP, NULL, STRING, UNION, AvroType, record_fields

_DOUBLE: Final = struct.Struct("<d")
_MISSING: Final = object()


class RecordWriter:
    """Writes one flat record schema (the JSON of an ``.avsc`` file) from a dict, as fastavro's schemaless writer."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.name: str = schema.get("name", "")
        self.fields, self.types = record_fields(schema)
        # a missing field is written as its default, or as null where null is allowed (as fastavro does)
        self.defaults: list[Any] = [f.get("default") for f in schema["fields"]]
        self.optional: list[bool] = [
            "default" in f or _nullable(t) for f, t in zip(schema["fields"], self.types, strict=True)
        ]

    def write(self, record: dict[str, Any], header: bytes = b"") -> bytes:
        """``header`` followed by the record's body; ValueError or TypeError if ``record`` does not fit the schema."""
        out = bytearray(header)
        fields, types = self.fields, self.types
        for i in range(len(fields)):
            value = record.get(fields[i], _MISSING)
            if value is _MISSING:
                if not self.optional[i]:
                    raise ValueError(f"{self.name}.{fields[i]} is missing and has no default")
                value = self.defaults[i]
            _put(out, value, types[i])
        return bytes(out)


def _nullable(t: AvroType) -> bool:
    return t.kind == UNION and any(b.kind == NULL for b in t.branches)


def _put(out: bytearray, value: Any, t: AvroType) -> None:
    """Append ``value`` as type ``t``."""
    kind = t.kind
    if kind == UNION:
        branch = _branch(value, t.branches)
        _long(out, branch)
        t = t.branches[branch]
        kind = t.kind
    if kind == STRING:
        data = value.encode("utf-8")
        _long(out, len(data))
        out += data
    elif kind == INT:
        _long(out, value)
    elif kind == DOUBLE:
        out += _DOUBLE.pack(value)
    elif kind == ENUM:
        try:
            _long(out, t.symbols.index(value))
        except ValueError:
            raise ValueError(f"{value!r} is not one of the symbols {t.symbols}") from None
    elif kind == BOOLEAN:
        out.append(1 if value else 0)
    elif kind == BYTES:
        _long(out, len(value))
        out += value
    elif kind == MAP:
        if value:  # one block of every entry, then the empty block that ends the map
            _long(out, len(value))
            for key, v in value.items():
                _put(out, key, _STRING)
                _put(out, v, t.branches[0])
        _long(out, 0)
    elif kind != NULL:
        raise ValueError(f"unknown kind {kind}")  # unreachable: avro_type builds only the kinds above


_STRING: Final = AvroType(STRING, [], [])


def _branch(value: Any, branches: list[AvroType]) -> int:
    """The first branch of a union that holds ``value``."""
    for i, b in enumerate(branches):
        kind = b.kind
        if value is None:
            if kind == NULL:
                return i
        elif (
            (kind == STRING and isinstance(value, str))
            or (kind == DOUBLE and isinstance(value, (int, float)))
            or (kind == INT and isinstance(value, int) and not isinstance(value, bool))
            or (kind == BOOLEAN and isinstance(value, bool))
            or (kind == BYTES and isinstance(value, bytes))
            or (kind == ENUM and value in b.symbols)
            or (kind == MAP and isinstance(value, dict))
        ):
            return i
    raise ValueError(f"{value!r} fits no branch of the union")


def _long(out: bytearray, n: int) -> None:
    """Append a zig-zag varint."""
    z = (n << 1) ^ (n >> 63)
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
