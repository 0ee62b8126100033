"""Quix Streams baseline of the throughput benchmark: the same Kafka-to-Kafka passthrough.

One ``Application`` (consumer group, at-least-once, from the earliest offset) with one
``StreamingDataFrame`` per input topic: each value is decoded from Confluent-framed Avro and
re-encoded (fastavro, as in ``bench/passthrough.py``), then produced to one output topic. It stops after ``--count``
messages. Tansu answers group joins only about ``session.timeout.ms / 2`` after the join, so the
consumer gets ``session.timeout.ms=2000`` (else the first assignment takes ~23 s).

Prints one JSON line: messages, seconds from process start to exit, and seconds from the first to
the last message (this excludes the group join).

    pip install quixstreams
    python -m bench.quix_passthrough --bootstrap-servers HOST:PORT --topic Sale=retail.sales.v1 ... --count N
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import uuid

T_START = time.perf_counter()


class _Count:
    n = 0
    first: float | None = None
    last: float | None = None


def run(bootstrap: str, pairs: list[str], out_topic: str, count: int) -> dict:
    from quixstreams import Application

    from bench.passthrough import FastavroCodec

    state_dir = tempfile.TemporaryDirectory(prefix="bench-quix-")  # Quix's default, ./state, is our package
    app = Application(
        broker_address=bootstrap,
        state_dir=state_dir.name,
        consumer_group=f"bench-quix-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        consumer_extra_config={
            "session.timeout.ms": 2000,
            "heartbeat.interval.ms": 500,
            "fetch.queue.backoff.ms": 1,
            "queued.min.messages": 20000,
        },
        producer_extra_config={"linger.ms": 5},
        loglevel="WARNING",
        use_changelog_topics=False,
    )
    out = app.topic(out_topic, value_serializer="bytes", key_serializer="bytes")
    for pair in pairs:
        kind, topic = pair.split("=", 1)
        codec = FastavroCodec(kind)

        def reencode(value: bytes, codec: FastavroCodec = codec) -> bytes:
            v = codec.encode(codec.decode(value))
            _Count.n += 1
            if _Count.first is None:
                _Count.first = time.perf_counter()
            _Count.last = time.perf_counter()
            return v

        sdf = app.dataframe(app.topic(topic, value_deserializer="bytes", key_deserializer="bytes"))
        sdf = sdf.apply(reencode)
        sdf.to_topic(out)
    app.run(count=count, timeout=30.0, collect=False)
    state_dir.cleanup()
    return {"messages": _Count.n, "first_to_last_s": (_Count.last or 0.0) - (_Count.first or 0.0)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quix_passthrough", description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--topic", action="append", required=True, help="KIND=TOPIC (Sale, InventoryEvent, ItemParams)")
    p.add_argument("--out-topic", default="bench.quix.out")
    p.add_argument("--count", type=int, required=True, help="messages to process before stopping")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    res = run(args.bootstrap_servers, args.topic, args.out_topic, args.count)
    res["process_s"] = time.perf_counter() - T_START
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
