"""Wire formats: Confluent-framed Avro (:mod:`demandsense.avro_reader` and ``avro_writer``) and JSON (orjson).

A codec turns one record dict into bytes and back. Times are epoch milliseconds in the dicts;
JSON carries them as ISO-8601 UTC strings. Avro values use the Confluent wire format: magic
byte 0, a 4-byte big-endian schema id, then the Avro body. Ids come from a Schema Registry when
one is configured, and otherwise from the local ``avro/`` files (a CRC-32 of the schema's
canonical form, so every process agrees without a registry).
"""

from __future__ import annotations

import json
import struct
import warnings
import zlib
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import fastavro
import orjson

from demandsense.avro_reader import RecordReader
from demandsense.avro_writer import RecordWriter
from demandsense.errors import ConfigError, DecodeError, ServiceUnavailable

RECORD_TYPES = ("Sale", "InventoryEvent", "ItemParams", "Alert", "ReplenishmentTrigger", "DeadLetter")
MAGIC = 0
_HEADER = struct.Struct(">bI")


def schema_dir() -> Path:
    """``avro/`` of a source tree, or its copy ``demandsense/schemas`` in an installed wheel."""
    here = Path(__file__).resolve().parent
    return next(d for d in (here.parent / "avro", here / "schemas") if d.is_dir())


@cache
def schema_json(name: str) -> dict[str, Any]:
    """The schema ``avro/<name>.avsc`` as JSON."""
    return json.loads((schema_dir() / f"{name}.avsc").read_text())


def _strip_logical(node: Any) -> Any:
    """The same schema without logical types: identical bytes, times stay epoch-ms ints."""
    if isinstance(node, dict):
        return {k: _strip_logical(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical(v) for v in node]
    return node


@cache
def parsed_schema(name: str) -> Any:
    """The fastavro-parsed schema, with times as plain longs."""
    return fastavro.parse_schema(_strip_logical(schema_json(name)))


def local_schema_id(name: str) -> int:
    """A stable id for a local schema: CRC-32 of its parsing canonical form, as a positive int."""
    canonical = fastavro.schema.to_parsing_canonical_form(schema_json(name))
    return zlib.crc32(canonical.encode()) & 0x7FFFFFFF


class Codec(Protocol):
    """Turns a record dict into bytes and back."""

    def encode(self, record: dict[str, Any]) -> bytes:
        """Serialise one record."""
        ...

    def decode(self, data: bytes) -> dict[str, Any]:
        """Deserialise one record; raises :class:`DecodeError` on bad bytes."""
        ...


def iso_from_ms(ms: int) -> str:
    """``2026-03-02T08:00:56.073Z`` from epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class JsonCodec:
    """One JSON object per message; fields named in ``time_fields`` are written as ISO-8601."""

    def __init__(self, time_fields: tuple[str, ...] = ("event_time", "detected_at", "failed_at")) -> None:
        self.time_fields = time_fields

    def encode(self, record: dict[str, Any]) -> bytes:
        """Serialise one record; times as ISO-8601 UTC strings, bytes as latin-1 text."""
        out = dict(record)
        for f in self.time_fields:
            if isinstance(out.get(f), int):
                out[f] = iso_from_ms(out[f])
        if isinstance(out.get("raw"), bytes):
            out["raw"] = out["raw"].decode("utf-8", "backslashreplace")
        return orjson.dumps(out)

    def decode(self, data: bytes) -> dict[str, Any]:
        """Parse one JSON object (times stay as sent; validation normalises them)."""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DecodeError("malformed", f"not JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise DecodeError("malformed", f"expected a JSON object, got {type(obj).__name__}")
        return obj


class AvroCodec:
    """Confluent-framed Avro for one record type.

    ``schema_id`` is the id written into each message; ``accept_ids`` lists the writer ids
    this codec can read (the same schema under a registry id and under its local id), or is None
    (``any_id``) to read every frame with this schema, as ``tail`` reads demandsense's own topics.
    """

    def __init__(self, name: str, schema_id: int | None = None, *, any_id: bool = False) -> None:
        self.name = name
        self.schema = parsed_schema(name)
        self.schema_id = local_schema_id(name) if schema_id is None else schema_id
        self.accept_ids = None if any_id else {self.schema_id, local_schema_id(name)}
        self._header = _HEADER.pack(MAGIC, self.schema_id)
        plain = _strip_logical(schema_json(name))
        self._reader, self._writer = RecordReader(plain), RecordWriter(plain)

    def encode(self, record: dict[str, Any]) -> bytes:
        """Frame and serialise one record (times as epoch-ms ints)."""
        return self._writer.write(record, self._header)

    def decode(self, data: bytes) -> dict[str, Any]:
        """Read one framed record; any malformation becomes a :class:`DecodeError`."""
        if len(data) < 5:
            raise DecodeError("malformed", f"{len(data)} bytes is too short for a Confluent Avro frame")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise DecodeError("malformed", f"magic byte {magic} is not 0: not Confluent-framed Avro")
        if self.accept_ids is not None and schema_id not in self.accept_ids:
            raise DecodeError(
                "wrong_schema", f"schema id {schema_id} is not {self.name} (expects {sorted(self.accept_ids)})"
            )
        return self._reader.read(data, 5)


def registry_schema_id(url: str, subject: str, name: str) -> int:
    """Register (or look up) ``name``'s schema under ``subject`` in a Schema Registry; its id.

    :class:`ServiceUnavailable` when the registry does not answer, :class:`ConfigError` when it refuses.
    """
    with warnings.catch_warnings(record=True):  # authlib forces its deprecation warnings on; keep them off the CLI
        from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
        from confluent_kafka.schema_registry.error import SchemaRegistryError

    parts = urlsplit(url)
    where = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()  # without credentials
    try:
        client = SchemaRegistryClient({"url": url})
    except ValueError as exc:
        raise ConfigError(f"--schema-registry-url {where}: {exc}") from exc
    try:
        return client.register_schema(subject, Schema(json.dumps(schema_json(name)), "AVRO"))
    except SchemaRegistryError as exc:
        raise ConfigError(f"Schema Registry at {where} refused {subject}: {exc}") from exc
    except Exception as exc:  # no answer: the client's transport failed (httpx or httpx2, by client version)
        raise ServiceUnavailable(f"Schema Registry at {where} did not answer: {exc}") from exc


def make_codec(fmt: str, name: str, *, topic: str | None = None, registry_url: str | None = None) -> Codec:
    """The codec for one record type in format ``avro`` or ``json``."""
    if fmt == "json":
        return JsonCodec()
    if fmt != "avro":
        raise ValueError(f"unknown format {fmt!r}; expected 'avro' or 'json'")
    if registry_url and topic:
        return AvroCodec(name, registry_schema_id(registry_url, f"{topic}-value", name))
    return AvroCodec(name)
