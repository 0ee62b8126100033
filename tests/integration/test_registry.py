"""--schema-registry-url: each topic's schema is registered under ``<topic>-value`` and frames carry its id.

No Schema Registry runs on these machines, so the registry here is the part of Confluent's REST API the
client calls (``POST /subjects/<subject>/versions`` gives the schema's id), in a thread; the broker is real.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from demandsense.serde import schema_json
from tests.integration.test_kafka_roundtrip import consume_all
from tests.integration.test_recovery import (
    OUTPUT_KINDS,
    Stream,
    assert_covers_reference,
    finish,
    new_outputs,
    read_outputs,
    run_args,
    start,
)
from tests.integration.test_recovery import stream as stream  # noqa: PLC0414 (the session fixture)

pytestmark = pytest.mark.integration


class Registry(ThreadingHTTPServer):
    """Schema ids from 1001 up, one per distinct schema (as a registry's are); what each subject registered."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.ids: dict[str, int] = {}
        self.subjects: dict[str, int] = {}
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Registry

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.split("/")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if len(path) != 4 or path[1] != "subjects" or path[3] != "versions" or body.get("schemaType", "AVRO") != "AVRO":
            self.send_error(404)
            return
        with self.server.lock:
            schema_id = self.server.ids.setdefault(body["schema"], 1001 + len(self.server.ids))
            self.server.subjects[unquote(path[2])] = schema_id
        reply = json.dumps({"id": schema_id}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def registry() -> Iterator[Registry]:
    server = Registry()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_run_registers_every_topic_schema_and_frames_outputs_with_its_id(
    stream: Stream, registry: Registry, tmp_path: Path
) -> None:
    outputs, log = new_outputs(stream.bootstrap), tmp_path / "run.log"
    args = run_args(stream, outputs, "--exit-at-end", "--metrics-port", "0", "--schema-registry-url", registry.url)
    finish(start(args, log), log)

    kinds = {"sales": "Sale", "inventory": "InventoryEvent", "items": "ItemParams"}
    topics = {stream.inputs[k]: name for k, name in kinds.items()} | {outputs[k]: OUTPUT_KINDS[k] for k in outputs}
    assert registry.subjects.keys() == {f"{t}-value" for t in topics}
    by_schema = {json.loads(text)["name"]: schema_id for text, schema_id in registry.ids.items()}
    assert by_schema.keys() == set(topics.values())
    for text in registry.ids:  # the contract's schema, as avro/ holds it
        assert json.loads(text) == schema_json(json.loads(text)["name"])

    # the inputs were produced with the local ids: still read; every output frame carries the registry's id
    for k, topic in outputs.items():
        frames = [m.value() for m in consume_all(stream.bootstrap, topic, 1, timeout=30)]
        assert frames and {struct.unpack_from(">bI", v)[1] for v in frames} == {by_schema[OUTPUT_KINDS[k]]}
    assert_covers_reference(read_outputs(stream.bootstrap, outputs, any_id=True), stream.reference)
