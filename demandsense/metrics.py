"""Every Prometheus metric demandsense exports, in one place.

Labels are bounded (topic, partition, outcome, stage, reason, alert_type, severity, approval, client, broker);
never a SKU or store.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter(
    "demandsense_events_in",
    "Input records by topic and outcome (ok, dead_letter, duplicate, late).",
    ["topic", "outcome"],
)
DEAD_LETTERS = Counter("demandsense_dead_letters", "Records sent to the dead-letter stream.", ["stage", "reason"])
ALERTS_OUT = Counter("demandsense_alerts_out", "Alerts emitted, by type and severity.", ["alert_type", "severity"])
TRIGGERS_OUT = Counter("demandsense_triggers_out", "Replenishment triggers emitted, by approval.", ["approval"])
EVENT_TIME_LAG = Gauge("demandsense_event_time_lag_seconds", "Wall clock minus the newest event time processed.")
EVENT_TO_ALERT = Histogram(
    "demandsense_event_to_alert_seconds",
    "Wall-clock seconds from a record's Kafka timestamp to the alert it caused.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
ACTIVE_KEYS = Gauge("demandsense_active_keys", "SKU-store keys held in state in this process.")
STATE_BYTES = Gauge("demandsense_state_bytes", "Approximate bytes of per-key state in this process.")
REDIS_WRITE_FAILURES = Counter("demandsense_redis_write_failures", "Redis view writes that failed (retried later).")
MODEL_RESETS = Counter("demandsense_model_resets", "Per-key models reset (cold start after eviction).")
KEYS_EVICTED = Counter("demandsense_keys_evicted", "Idle keys whose detail was shed to bound memory.")
LAST_BATCH = Gauge("demandsense_last_event_timestamp_seconds", "Wall clock of the last processed input batch.")
CONSUMER_LAG = Gauge("demandsense_consumer_lag", "End offset minus next offset to read.", ["topic", "partition"])
BROKER_RTT = Gauge(
    "demandsense_broker_rtt_seconds",
    "Mean round trip of a Kafka client's requests to each broker over the last statistics interval.",
    ["client", "broker"],
)
DELIVERY_ERRORS = Counter("demandsense_delivery_errors", "Kafka produce deliveries that failed.", ["topic"])
DELIVERY_RETRIES = Counter(
    "demandsense_delivery_retries", "Records produced again after their delivery failed.", ["topic"]
)
DELIVERY_LOST = Counter(
    "demandsense_delivery_lost", "Records still undelivered after every retry (the job then fails).", ["topic"]
)
PRODUCER_QUEUE_FULL = Counter(
    "demandsense_producer_queue_full", "Times the Kafka sink waited for room in the producer's local queue."
)


def broker_rtt_config(client: str) -> dict[str, object]:
    """librdkafka settings that report ``client``'s (``consumer`` or ``producer``) round trips every 5 s."""
    return {"statistics.interval.ms": 5000, "stats_cb": _broker_rtt_stats(client)}


def _broker_rtt_stats(client: str) -> Callable[[str], None]:
    """A librdkafka ``stats_cb`` that sets :data:`BROKER_RTT` for ``client``.

    A broker that answered no request in the interval keeps its last value.
    """

    def on_stats(raw: str) -> None:
        for broker in orjson.loads(raw).get("brokers", {}).values():
            rtt = broker.get("rtt", {})
            if broker.get("nodeid", -1) >= 0 and rtt.get("cnt"):  # bootstrap entries have nodeid -1
                BROKER_RTT.labels(client, broker["nodename"]).set(rtt["avg"] / 1e6)

    return on_stats
