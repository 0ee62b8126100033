"""The embedded demo: a real broker, Redis, the simulator and the dataflow, printing alerts live.

The demo speaks JSON on its topics so that any plain consumer (kcat) can read the alerts;
``run`` defaults to Confluent-framed Avro.
"""

from __future__ import annotations

import heapq
import sys
import threading
import time
from collections import Counter
from typing import Any

from confluent_kafka import Producer

from demandsense.serde import make_codec

HOUR_MS = 3_600_000


def _paced_produce(
    bootstrap: str, sim: Any, topics: dict[str, str], seconds: float, stop: threading.Event, done: Counter
) -> None:
    """Produce the simulation in event-time order, spreading its hours over ``seconds`` of wall time."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "log.connection.close": False})
    codecs = {k: make_codec("json", k) for k in topics}
    for item in sim.items:
        producer.produce(topics["ItemParams"], codecs["ItemParams"].encode(item), f"{item['store_id']}:{item['sku']}")
    stream = heapq.merge(
        ((r["event_time"], "InventoryEvent", r) for r in sim.inventory),
        ((r["event_time"], "Sale", r) for r in sim.sales),
        key=lambda x: x[0],
    )
    first = last = None
    per_hour = seconds / max(1.0, sim.manifest.get("hours", 24.0))
    start = time.monotonic()
    for t, kind, rec in stream:
        if stop.is_set():
            break
        first = t if first is None else first
        if last is None or t - last >= HOUR_MS:  # pace by simulated hour
            last = t
            wait = start + (t - first) / HOUR_MS * per_hour - time.monotonic()
            producer.poll(0)
            if wait > 0:
                stop.wait(wait)
        key = f"{rec['store_id']}:{rec['sku']}".encode()
        while True:
            try:
                producer.produce(topics[kind], codecs[kind].encode(rec), key, timestamp=t)
                break
            except BufferError:
                producer.poll(0.1)
        done[kind] += 1
    producer.flush(10)


def run_demo(*, duration_s: float, stores: int, skus: int, days: float, seed: int) -> int:
    """Start everything embedded, stream ``days`` of simulated retail over the run, print alerts."""
    from demandsense import simulate
    from demandsense.embedded import Broker, RedisServer, create_topics
    from demandsense.settings import kafka_config
    from flows.demand import FlowSettings, KafkaIO, Topics, ViewsPace, build_flow, run_flow

    topics = Topics()
    inputs = topics.inputs()
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    say(f"demandsense demo: {stores} stores x {skus} SKUs, {days:g} simulated days streamed over {duration_s:.0f} s")
    sim = simulate.generate(simulate.SimConfig(stores=stores, skus=skus, days=days, seed=seed))
    sim.manifest.setdefault("hours", days * 24)
    n_sales, n_inv = len(sim.sales), len(sim.inventory)
    say(f"  simulated {n_sales:,} sale lines, {n_inv:,} inventory events, {len(sim.labels)} injected scenarios")
    with Broker() as broker, RedisServer() as redis_server:
        bootstrap = broker.bootstrap_servers
        create_topics(bootstrap, [*inputs.values(), *topics.outputs().values()])
        say(f"  Kafka (embedded Tansu) at {bootstrap}, Redis at {redis_server.url}")
        say(f"  the alert topic:        demandsense tail --bootstrap-servers {bootstrap} --format json -f")
        say(f"  live views:             demandsense top --redis-url {redis_server.url}")
        say("  the first simulated day is the models' warm-up; alerts follow. Most urgent first in each batch:\n")
        print(f"{'event time':<16}  {'prio':>6}  {'status':<8} {'type':<17} {'store:sku':<15} reason")
        stop, done = threading.Event(), Counter()
        producer = threading.Thread(
            target=_paced_produce, args=(bootstrap, sim, inputs, duration_s * 0.8, stop, done), daemon=True
        )
        producer.start()
        # the embedded broker stops while the clients close: no disconnect noise after the summary
        config = {**kafka_config(bootstrap, group_id="demandsense-demo"), "log.connection.close": False}
        io = KafkaIO(config, topics, "json", from_beginning=True, duration_s=duration_s)
        # the demo streams simulated history as if live: its views refresh every second
        views = ViewsPace(catching_up_s=1.0)
        settings = FlowSettings(io, redis={"url": redis_server.url}, print_alerts=True, views_pace=views)
        flow = build_flow(settings)
        try:
            run_flow(flow, workers_per_process=1)
        finally:
            stop.set()
            producer.join(5)
        say(f"\ndemo done: streamed {sum(done.values()):,} events; alerts are on {topics.alerts}, "
            f"triggers on {topics.triggers}, dead letters on {topics.dead_letter}.")  # fmt: skip
    return 0
