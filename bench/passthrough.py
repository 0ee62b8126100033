"""Baselines of the throughput benchmark, each run as its own process over the same topics.

``raw``: one confluent-kafka consumer assigned to every input partition, decoding each value with
fastavro (the Confluent frame as demandsense reads it, the body with fastavro); no engine, no output.

``bytewax``: a Bytewax 0.21 dataflow ``KafkaSource -> map(decode, re-encode) -> KafkaSink`` with
the stock connectors (one Python object per message), reading from the beginning and stopping at
the end of every partition (``tail=False``); the consumer gets the same ``fetch.queue.backoff.ms``
as demandsense's source so that librdkafka's one-second backoff does not cap it.

Both print one JSON line: messages, seconds from process start to exit, and seconds from the first
to the last message.

    python -m bench.passthrough raw --bootstrap-servers HOST:PORT --topic Sale=retail.sales.v1 ...
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time

T_START = time.perf_counter()


class FastavroCodec:
    """demandsense's Confluent-framed Avro, read and written with fastavro as the baselines are specified
    (demandsense itself uses its own :mod:`demandsense.avro_reader` and :mod:`demandsense.avro_writer`); the frame
    is checked as demandsense checks it."""

    def __init__(self, kind: str) -> None:
        import fastavro

        from demandsense.serde import AvroCodec

        codec = AvroCodec(kind)
        self._schema, self._ids = codec.schema, codec.accept_ids
        self._header = b"\x00" + codec.schema_id.to_bytes(4, "big")
        self._read, self._write = fastavro.schemaless_reader, fastavro.schemaless_writer

    def decode(self, data: bytes) -> dict:
        if len(data) < 5 or data[0] != 0 or int.from_bytes(data[1:5], "big") not in self._ids:
            raise ValueError("not a Confluent Avro frame of this record type")
        return self._read(io.BytesIO(data[5:]), self._schema, None)

    def encode(self, record: dict) -> bytes:
        buf = io.BytesIO()
        buf.write(self._header)
        self._write(buf, self._schema, record)
        return buf.getvalue()


def _codecs(pairs: list[str]) -> dict[str, FastavroCodec]:
    out = {}
    for pair in pairs:
        kind, topic = pair.split("=", 1)
        out[topic] = FastavroCodec(kind)
    return out


CONSUMER = {
    "group.id": "bench-passthrough",
    "enable.auto.commit": False,
    "enable.partition.eof": True,
    "fetch.queue.backoff.ms": 1,
    "queued.min.messages": 20000,
}


def run_raw(bootstrap: str, codecs: dict) -> dict:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, **CONSUMER})
    meta = consumer.list_topics(timeout=10)
    parts = [TopicPartition(t, p, OFFSET_BEGINNING) for t in codecs for p in sorted(meta.topics[t].partitions)]
    consumer.assign(parts)
    pending = {(tp.topic, tp.partition) for tp in parts}
    n, first, last = 0, None, None
    decode = {t: c.decode for t, c in codecs.items()}
    while pending:
        for m in consumer.consume(num_messages=5000, timeout=0.1):
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    pending.discard((m.topic(), m.partition()))
                continue
            decode[m.topic()](m.value())
            n += 1
        if n and first is None:
            first = time.perf_counter()
    last = time.perf_counter()
    consumer.close()
    return {"messages": n, "first_to_last_s": last - (first or last)}


class _Count:
    n = 0
    first: float | None = None
    last: float | None = None


def bytewax_flow(bootstrap: str, codecs: dict, out_topic: str):
    import bytewax.operators as op
    from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
    from bytewax.dataflow import Dataflow
    from confluent_kafka import OFFSET_BEGINNING

    def reencode(msg):
        c = codecs[msg.topic]
        value = c.encode(c.decode(msg.value))
        _Count.n += 1
        if _Count.first is None:
            _Count.first = time.perf_counter()
        _Count.last = time.perf_counter()
        return KafkaSinkMessage(msg.key, value)

    flow = Dataflow("passthrough")
    src = KafkaSource(
        [bootstrap],
        list(codecs),
        tail=False,
        starting_offset=OFFSET_BEGINNING,
        add_config={"fetch.queue.backoff.ms": "1", "queued.min.messages": "20000"},
        batch_size=5000,
    )
    msgs = op.input("in", flow, src)
    out = op.map("reencode", msgs, reencode)
    op.output("out", out, KafkaSink([bootstrap], out_topic, add_config={"linger.ms": "5"}))
    return flow


def run_bytewax(bootstrap: str, codecs: dict, out_topic: str) -> dict:
    from bytewax.run import cli_main

    cli_main(bytewax_flow(bootstrap, codecs, out_topic), workers_per_process=1)
    first, last = _Count.first or 0.0, _Count.last or 0.0
    return {"messages": _Count.n, "first_to_last_s": last - first}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.passthrough", description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("raw", "bytewax"))
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--topic", action="append", required=True, help="KIND=TOPIC (Sale, InventoryEvent, ItemParams)")
    p.add_argument("--out-topic", default="bench.passthrough.out")
    args = p.parse_args(argv)
    codecs = _codecs(args.topic)
    if args.mode == "raw":
        res = run_raw(args.bootstrap_servers, codecs)
    else:
        res = run_bytewax(args.bootstrap_servers, codecs, args.out_topic)
    res["process_s"] = time.perf_counter() - T_START
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
