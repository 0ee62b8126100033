"""Bad input at scale: every record ends as an event, a duplicate, a late record or a dead letter.

A simulated stream in Avro, with 10% duplicates, 5% out of order within the lateness and a mix of
poison (random bytes, truncated frames, the wrong schema, huge strings, NaN and infinite prices,
times far in the past or future, unknown enums), goes through the flow's decoder and the store
state. The counts add up, nothing valid is lost, and the metrics saw the same numbers.
"""

from __future__ import annotations

import math
import random
from collections import Counter

from prometheus_client import REGISTRY

from demandsense.serde import AvroCodec, JsonCodec
from demandsense.simulate import SimConfig, generate
from flows.demand import Decoder, Router
from operators.policy import Policy
from operators.store import StoreState

TOPIC = "scale.sales"


def _poison(rng: random.Random, sale: dict, avro: AvroCodec) -> bytes:
    good = avro.encode(sale)
    kind = rng.randrange(8)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 64))
    if kind == 1:
        return good[: rng.randrange(1, len(good))]
    if kind == 2:
        return AvroCodec("InventoryEvent").encode(
            {"event_id": "x", "event_time": sale["event_time"], "store_id": "S", "sku": "K",
             "event_type": "RECEIPT", "quantity": 1, "on_hand": None, "in_transit": None}
        )  # fmt: skip
    if kind == 3:
        return avro.encode(sale | {"sku": "Z" * 100_000})
    if kind == 4:
        return avro.encode(sale | {"unit_price": rng.choice([math.nan, math.inf, -math.inf])})
    if kind == 5:
        return avro.encode(sale | {"event_time": rng.choice([0, 10**11, 4_102_444_800_000])})
    if kind == 6:
        return JsonCodec().encode(sale | {"channel": "CARRIER_PIGEON"})  # JSON on an Avro topic
    return avro.encode(sale | {"quantity": -rng.randrange(1, 5)})


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_every_record_is_accounted_for_and_nothing_valid_is_lost() -> None:
    rng = random.Random(2026)
    sim = generate(SimConfig(stores=3, skus=150, days=4, seed=9, duplicate_rate=0, disorder_rate=0, late_rate=0))
    avro = AvroCodec("Sale")
    sales = list(sim.sales)
    arrivals: list[tuple[float, bytes | None, bytes]] = []  # (arrival time, Kafka key, value)
    valid_ids: set[str] = set()
    poison = 0
    for sale in sales:
        t, key = sale["event_time"], f"{sale['store_id']}:{sale['sku']}".encode()
        if rng.random() < 0.05:  # a third of the poison comes without a key
            arrivals.append((t, rng.choice([key, key, None]), _poison(rng, sale, avro)))
            poison += 1
            continue
        delay = rng.uniform(0, 120_000) if rng.random() < 0.05 else 0  # 5% arrive up to 2 minutes late
        arrivals.append((t + delay, key, avro.encode(sale)))
        valid_ids.add(sale["event_id"])
        if rng.random() < 0.10:  # 10% are sent twice, the copy up to a minute later
            arrivals.append((t + delay + rng.uniform(0, 60_000), key, avro.encode(sale)))
    stream = [(k, v) for _, k, v in sorted(arrivals, key=lambda a: a[0])]

    dead_before = _sample("demandsense_events_in_total", topic=TOPIC, outcome="dead_letter")
    policy = Policy()
    decoder = Decoder({"Sale": avro}, policy)
    router = Router(decoder, policy, [])
    stores: dict[str, StoreState] = {}
    counts: Counter[str] = Counter()
    dead = []
    for start in range(0, len(stream), 1000):
        part = stream[start : start + 1000]
        raws = [("Sale", TOPIC, 0, start + i, k, v, 0) for i, (k, v) in enumerate(part)]
        for store_id, (_, records, _, _) in router(raws):
            events, bad = decoder(store_id, records)
            dead += bad
            out = stores.setdefault(store_id, StoreState(store_id)).on_events(events, policy)
            counts.update({outcome: n for (_, outcome), n in out.counts.items()})
            dead += out.late
    for state in stores.values():
        state.flush(policy)

    assert len(stream) == counts["ok"] + counts["duplicate"] + len(dead)  # dead includes the late
    assert counts["ok"] == len(valid_ids)  # every valid record was taken, once
    assert counts["late"] == 0
    assert len(dead) == poison and all(d.error and d.reason and d.stage in ("decode", "validate") for d in dead)
    assert {d.reason for d in dead} >= {"malformed", "wrong_schema", "too_long", "bad_value", "negative_quantity"}
    assert _sample("demandsense_events_in_total", topic=TOPIC, outcome="dead_letter") - dead_before == poison


def test_a_runaway_catalogue_is_bounded_and_the_evictions_are_counted() -> None:
    from operators.events import Origin, Sale
    from operators.policy import Detection

    policy = Policy(detection=Detection(max_items_per_store=100))
    state = StoreState("S1")
    t0 = 1_772_438_400_000
    events = [
        Sale(f"e{i}", t0 + i * 1000, "S1", f"SKU-{i}", "STORE", 1, 1.0, None, Origin("s", 0, i)) for i in range(300)
    ]
    out = state.on_events(events, policy)
    out_flush = state.flush(policy)
    assert len(state.items) <= 100
    assert out.evicted + out_flush.evicted == 300 - len(state.items)
