"""Schemaless Avro decoding of demandsense's records, compiled by mypyc (setup.py).

fastavro interprets the schema for every field of every record: 3.4-4.0 µs a sale (8 fields), most
of the cost of decoding an input record. A :class:`RecordReader` turns the schema into a list of
field types once and reads with it: a framed sale in 1.0 µs compiled. As Python source (an editable
install) it is slower than fastavro, 4.8 µs against 4.0: the price of one way of reading. It reads the
types demandsense's schemas use (``avro/``: records of null, boolean, int, long, double, string,
bytes, enums, maps and unions of these); any other schema is refused when the reader is
built. fastavro is the reference the tests hold this reader (and :mod:`demandsense.avro_writer`) to.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from demandsense.errors import DecodeError

NULL: Final = 0
BOOLEAN: Final = 1
INT: Final = 2  # ints and longs are the same zig-zag varint on the wire
DOUBLE: Final = 3
STRING: Final = 4
BYTES: Final = 5
ENUM: Final = 6
MAP: Final = 7
UNION: Final = 8

_PRIMITIVES: Final = {
    "null": NULL, "boolean": BOOLEAN, "int": INT, "long": INT, "double": DOUBLE, "string": STRING, "bytes": BYTES,
}  # fmt: skip
_DOUBLE: Final = struct.Struct("<d")


class AvroType:
    """One node of a schema: its kind and, for enums, maps and unions, what they hold."""

    def __init__(self, kind: int, symbols: list[str], branches: list[AvroType]) -> None:
        self.kind = kind
        self.symbols = symbols  # an enum's symbols
        self.branches = branches  # a union's branches; a map's value type as the one branch


def avro_type(schema: Any) -> AvroType:
    """The :class:`AvroType` of a (non-record) schema node; ValueError for what this reader does not read."""
    if isinstance(schema, list):
        return AvroType(UNION, [], [avro_type(s) for s in schema])
    if isinstance(schema, str) and schema in _PRIMITIVES:
        return AvroType(_PRIMITIVES[schema], [], [])
    if isinstance(schema, dict):
        t = schema.get("type")
        if t == "enum":
            return AvroType(ENUM, [str(s) for s in schema["symbols"]], [])
        if t == "map":
            return AvroType(MAP, [], [avro_type(schema["values"])])
        if isinstance(t, str) and t in _PRIMITIVES:
            return AvroType(_PRIMITIVES[t], [], [])
    raise ValueError(f"the Avro reader does not read {schema!r}")


def record_fields(schema: dict[str, Any]) -> tuple[list[str], list[AvroType]]:
    """The field names and types of a flat record schema (the JSON of an ``.avsc`` file); ValueError otherwise."""
    if schema.get("type") != "record":
        raise ValueError(f"the Avro codec reads and writes records, not {schema.get('type')!r}")
    return [f["name"] for f in schema["fields"]], [avro_type(f["type"]) for f in schema["fields"]]


class RecordReader:
    """Reads the body of one flat record schema into a dict, as fastavro does."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.name: str = schema.get("name", "")
        self.fields, self.types = record_fields(schema)
        self._empty: dict[str, Any] = dict.fromkeys(self.fields)  # copied per record: sized once, keys hashed once

    def read(self, data: bytes, pos: int) -> dict[str, Any]:
        """The record whose body starts at ``pos`` and ends with ``data``; :class:`DecodeError` if it is not one."""
        end = len(data)
        out = self._empty.copy()
        fields, types = self.fields, self.types
        for i in range(len(fields)):
            name = fields[i]
            try:
                out[name], pos = _value(data, pos, end, types[i])
            except UnicodeDecodeError as exc:
                raise DecodeError("malformed", f"{self.name}.{name} is not UTF-8: {exc}") from exc
            except DecodeError as exc:
                raise DecodeError("malformed", f"bad Avro body for {self.name} at {name}: {exc}") from exc
        if pos != end:
            raise DecodeError("malformed", f"{end - pos} trailing bytes after the {self.name} record")
        return out


def _value(data: bytes, pos: int, end: int, t: AvroType) -> tuple[Any, int]:
    """The value of type ``t`` at ``pos``, and the position after it."""
    kind = t.kind
    if kind == UNION:
        branch, pos = _long(data, pos, end)
        if not 0 <= branch < len(t.branches):
            raise DecodeError("malformed", f"union branch {branch} of {len(t.branches)}")
        t = t.branches[branch]
        kind = t.kind
    if kind == STRING:
        n, pos = _length(data, pos, end)
        return data[pos : pos + n].decode("utf-8"), pos + n
    if kind == INT:
        return _long(data, pos, end)
    if kind == NULL:
        return None, pos
    if kind == DOUBLE:
        if pos + 8 > end:
            raise DecodeError("malformed", "a double runs past the end")
        return _DOUBLE.unpack_from(data, pos)[0], pos + 8
    if kind == ENUM:
        i, pos = _long(data, pos, end)
        if not 0 <= i < len(t.symbols):
            raise DecodeError("malformed", f"enum index {i} of {len(t.symbols)} symbols")
        return t.symbols[i], pos
    if kind == BOOLEAN:
        if pos >= end:
            raise DecodeError("malformed", "a boolean runs past the end")
        return data[pos] != 0, pos + 1
    if kind == BYTES:
        n, pos = _length(data, pos, end)
        return data[pos : pos + n], pos + n
    if kind == MAP:
        return _map(data, pos, end, t.branches[0])
    raise DecodeError("malformed", f"unknown kind {kind}")  # unreachable: avro_type builds only the kinds above


def _map(data: bytes, pos: int, end: int, values: AvroType) -> tuple[dict[str, Any], int]:
    """A map: blocks of entries, each block led by its count (and its size in bytes if the count is negative)."""
    out: dict[str, Any] = {}
    while True:
        count, pos = _long(data, pos, end)
        if count == 0:
            return out, pos
        if count < 0:  # a block that also gives its size in bytes
            count = -count
            _, pos = _long(data, pos, end)
        for _ in range(count):
            n, pos = _length(data, pos, end)
            key = data[pos : pos + n].decode("utf-8")
            out[key], pos = _value(data, pos + n, end, values)


def _length(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """A string's or bytes' length, checked against what is left."""
    n, pos = _long(data, pos, end)
    if n < 0 or pos + n > end:
        raise DecodeError("malformed", f"a length of {n} with {end - pos} bytes left")
    return n, pos


def _long(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """A zig-zag varint (at most 10 bytes, a 64-bit long) and the position after it."""
    if pos >= end:
        raise DecodeError("malformed", "the record ends early")
    b = data[pos]
    pos += 1
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        if pos >= end:
            raise DecodeError("malformed", "the record ends inside a number")
        if shift > 63:
            raise DecodeError("malformed", "a number longer than 10 bytes")
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    if shift > 63:  # a tenth byte's bits past 64 are dropped, as fastavro (C) drops them
        n &= 0xFFFF_FFFF_FFFF_FFFF  # (only then: compiled, a mask this wide takes the slow path of big ints)
    return (n >> 1) ^ -(n & 1), pos
