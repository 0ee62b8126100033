"""The embedded broker's fetch cost against the record batches a partition holds.

Tansu 0.6's memory storage (the embedded broker of the demo, the tests and these benchmarks)
keeps each produced record batch as an object and lists every batch object of a partition on
each fetch of it (``fetch`` in tansu-storage's ``dynostore.rs``), so a fetch gets slower as the
partition grows. A live producer at thousands of events a second writes small batches (the
latency benchmark's: about 3 records each), so after a few minutes a fetch round takes hundreds
of milliseconds and a consumer falls behind (bench/results/latency.md). This benchmark measures
that on the broker alone, without demandsense: it fills a topic with batches of ``--batch``
records and, after each step, times a new consumer's fetch at the head and a read from behind it."""

from __future__ import annotations

import argparse
import statistics
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from bench._util import say, table, write_result

TOPIC = "bench.broker"
HEADER = ["batches per partition", "records stored", "fetch at the head (ms)", "vs. the first step",
          "read from behind (records/s)"]  # fmt: skip


def fill(producer: Producer, partitions: int, batches: int, batch: int) -> None:
    """``batches`` more batches of ``batch`` records in every partition."""
    value = b"x" * 84  # about a simulated Avro sale
    for i in range(batches):
        for p in range(partitions):
            for _ in range(batch):
                producer.produce(TOPIC, value, partition=p)
        producer.flush()  # one request, one batch per partition
        if i % 2000 == 1999:
            say(f"  ... {i + 1:,} of {batches:,} batches")


def read(bootstrap: str, partitions: int, high: int, behind: int) -> float:
    """Seconds a new consumer takes to read the last ``behind`` records of every partition up to its head ``high``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench.broker", "enable.auto.commit": False})
    t0 = time.perf_counter()
    consumer.assign([TopicPartition(TOPIC, p, high - behind) for p in range(partitions)])
    n = 0
    while n < partitions * behind:
        n += sum(1 for m in consumer.consume(1000, 0.001) if m.error() is None)
    elapsed = time.perf_counter() - t0
    consumer.close()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.broker", description=__doc__.split("\n\n")[0])
    p.add_argument("--partitions", type=int, default=4, help="partitions of the topic (4)")
    p.add_argument("--batch", type=int, default=10, help="records per produced batch (10)")
    p.add_argument(
        "--steps", type=int, nargs="+", default=[1, 5_000, 10_000, 25_000, 50_000],
        help="batches per partition after each step (1 5000 10000 25000 50000)",
    )  # fmt: skip
    p.add_argument("--behind", type=int, default=2_000, help="records per partition read from behind the head (2000)")
    args = p.parse_args(argv)

    from demandsense.embedded import Broker, create_topics

    rows, first = [], None
    with Broker() as broker:
        bs = broker.bootstrap_servers
        create_topics(bs, [TOPIC], partitions=args.partitions)
        producer = Producer({"bootstrap.servers": bs, "linger.ms": 1000})  # flush() alone ends a batch
        stored = 0
        for target in sorted(args.steps):
            say(f"filling to {target:,} batches of {args.batch} records per partition ...")
            fill(producer, args.partitions, target - stored, args.batch)
            stored = target
            high = stored * args.batch  # every partition's next offset
            fetch = statistics.median(read(bs, args.partitions, high, 1) for _ in range(5)) * 1000
            behind = min(args.behind, high)
            rate = behind * args.partitions / read(bs, args.partitions, high, behind)
            first = first or fetch
            rows.append((f"{stored:,}", f"{stored * args.batch * args.partitions:,}", f"{fetch:,.1f}",
                         f"{fetch / first:,.1f}x", f"{rate:,.0f}"))  # fmt: skip
            say(f"  {stored:,} batches per partition: fetch at the head {fetch:.1f} ms, read from behind {rate:,.0f}/s")

    body = (
        f"A topic of {args.partitions} partitions on a fresh embedded broker (Tansu 0.6, memory storage), filled "
        f"with batches of {args.batch} records of 84 bytes (one flush per batch, as a live producer sends small "
        "batches). After each step: 'fetch at the head' is the median of 5 times a new consumer takes to receive "
        "the newest record of every partition (connecting, then one fetch round with data waiting); 'read from "
        f"behind': a new consumer reads the last {args.behind:,} records of every partition up to the head.\n\n"
        + table(HEADER, rows)
        + "\n"
    )
    path = write_result("broker", "Benchmark: the embedded broker's fetch cost", body)
    print(body)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
