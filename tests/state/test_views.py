"""RedisViews writes and readers, idempotence, TTLs and the outage path."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY

from demandsense.embedded import RedisServer
from operators.events import Alert
from state.views import (
    ItemView,
    Keys,
    RedisViews,
    alert_fields,
    alert_from_fields,
    connect,
    item_fields,
    item_from_fields,
    recent_alerts,
    show,
    summary,
    top,
)

T0_MS = 1_772_438_400_000  # 2026-03-02T08:00:00Z


@dataclass
class FakeClock:
    """A wall clock the test moves by hand."""

    now: float = T0_MS / 1000

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_view(store: str, sku: str, *, risk: float = 50.0, minute: int = 0, **kw: Any) -> ItemView:
    base: dict[str, Any] = {
        "store_id": store,
        "sku": sku,
        "event_time": T0_MS + minute * 60_000,
        "expected_rate": 4.5,
        "observed_rate": 12.25,
        "on_hand": 7,
        "position": 19,
        "hours_to_stockout": 0.57,
        "risk": risk,
        "open_alerts": ("DEMAND_SPIKE", "STOCKOUT_RISK") if risk > 0 else (),
        "last_alert_type": "STOCKOUT_RISK" if risk > 0 else None,
        "last_alert_time": T0_MS if risk > 0 else None,
        "hourly_units": (0, 1, 3, 2, 5, 8, 13),
    }
    return ItemView(**(base | kw))


def make_alert(store: str, sku: str, *, n: int = 0, status: str = "OPEN", alert_type: str = "DEMAND_SPIKE") -> Alert:
    return Alert(
        alert_id=f"a-{store}-{sku}-{alert_type}-{n}",
        alert_type=alert_type,
        status=status,
        store_id=store,
        sku=sku,
        event_time=T0_MS + n * 60_000,
        priority=80,
        severity="HIGH",
        expected_rate=4.5,
        observed_rate=12.25,
        confidence=0.93,
        hours_to_stockout=None,
        revenue_at_risk=1234.5,
        reason=f"Sales of {sku} in {store} run at 2.7x the expected rate ({n})",
        model_version="ewma-1",
        evidence={"z": 4.2, "window_h": 1.0},
    )


def failures() -> float:
    return REGISTRY.get_sample_value("demandsense_redis_write_failures_total") or 0.0


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- pure


def test_item_fields_round_trip() -> None:
    view = make_view("S001", "C03-000123")
    empty = make_view("S001", "X", risk=0.0, on_hand=None, position=None, hours_to_stockout=None, hourly_units=())
    for v in (view, empty):
        assert item_from_fields(item_fields(v)) == v
        assert all(isinstance(x, str) for x in item_fields(v).values())
    assert item_fields(view)["hourly_units"] == "0,1,3,2,5,8,13"
    assert item_fields(empty)["on_hand"] == ""


def test_alert_fields_round_trip() -> None:
    alert = make_alert("S001", "C03-000123")
    raw = {k.encode(): v.encode() for k, v in alert_fields(alert).items()}  # as a bytes client returns them
    assert alert_from_fields(raw) == asdict(alert)
    assert alert_fields(alert)["evidence"] == '{"window_h": 1.0, "z": 4.2}'


def test_connect_uses_short_timeouts_auth_and_tls() -> None:
    plain = connect("redis://u:p@localhost:6390/2").get_connection_kwargs()
    assert plain["socket_timeout"] == 1 and plain["socket_connect_timeout"] == 1
    assert (plain["username"], plain["password"], plain["db"]) == ("u", "p", 2)
    tls = connect("rediss://localhost:6390", username="a", password="b", ssl_ca_certs="/ca.pem")
    assert tls.connection_pool.connection_class.__name__ == "SSLConnection"
    assert tls.get_connection_kwargs()["ssl_ca_certs"] == "/ca.pem"
    assert tls.get_connection_kwargs()["username"] == "a"


def test_backoff_doubles_to_30s_and_only_buffers_in_between() -> None:
    clock = FakeClock()
    views = RedisViews(client=connect(f"redis://127.0.0.1:{dead_port()}"), clock=clock)
    start, before = time.monotonic(), failures()
    assert views.write([make_view("S1", "A")], []) is False
    assert time.monotonic() - start < 0.5
    assert failures() == before + 1
    waits, buffered = [], 0
    for _ in range(9):
        waited, before = 0.0, failures()
        while failures() == before:  # step the clock until a write touches the network again
            clock.advance(0.25)
            waited += 0.25
            buffered += 1
            assert views.write([], [make_alert("S1", "A", n=buffered)]) is False
        waits.append(waited)
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert views.pending == (1, buffered)


# ---------------------------------------------------------------- RedisViews against a real Redis


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = connect(redis_url)
    yield c
    c.close()


def batch() -> tuple[list[ItemView], list[Alert]]:
    views = [
        make_view("S001", "C03-000123", risk=87.0),
        make_view("S001", "C03-000200", risk=40.0, open_alerts=("DEMAND_DROP",)),
        make_view("S001", "C03-000300", risk=0.0),
        make_view("S002", "D01-000001", risk=95.0, open_alerts=("OUT_OF_STOCK",)),
        make_view("S002", "D01-000002", risk=10.0, open_alerts=()),
    ]
    alerts = [
        make_alert("S001", "C03-000123", n=0),
        make_alert("S001", "C03-000123", n=0, status="UPDATE"),
        make_alert("S002", "D01-000001", n=1, alert_type="OUT_OF_STOCK"),
    ]
    return views, alerts


def snapshot(client: redis.Redis, prefix: str) -> dict[str, Any]:
    """Every key under the prefix with its content (the stream by length; times dropped)."""
    out: dict[str, Any] = {}
    for key in sorted(client.scan_iter(f"{prefix}:*")):
        kind = client.type(key)
        if kind == "hash":
            out[key] = {k: v for k, v in client.hgetall(key).items() if k != "updated_at"}
        elif kind == "zset":
            out[key] = client.zrange(key, 0, -1, withscores=not key.startswith((f"{prefix}:open:", f"{prefix}:items:")))
        elif kind == "set":
            out[key] = client.smembers(key)
        elif kind == "stream":
            out[key] = client.xlen(key)
        else:
            out[key] = client.get(key)
    return out


@pytest.mark.integration
def test_write_and_read_back(client: redis.Redis, prefix: str) -> None:
    views, alerts = batch()
    writer = RedisViews(client=client, prefix=prefix, clock=FakeClock())
    assert writer.write(views, alerts) is True
    assert writer.pending == (0, 0)

    assert show(client, "S001", "C03-000123", prefix=prefix) == asdict(views[0])
    assert show(client, "S001", "nope", prefix=prefix) is None
    assert [r["sku"] for r in top(client, "S001", prefix=prefix)] == ["C03-000123", "C03-000200"]
    assert [r["sku"] for r in top(client, prefix=prefix)] == ["D01-000001", "C03-000123", "C03-000200", "D01-000002"]
    assert [r["sku"] for r in top(client, n=2, prefix=prefix)] == ["D01-000001", "C03-000123"]
    assert top(client, "S404", prefix=prefix) == []

    got = recent_alerts(client, prefix=prefix)
    assert [(a["alert_id"], a["status"]) for a in got] == [(a.alert_id, a.status) for a in reversed(alerts)]
    assert {k: v for k, v in got[-1].items() if k != "id"} == asdict(alerts[0])
    mine = recent_alerts(client, store="S001", sku="C03-000123", prefix=prefix)
    assert [a["status"] for a in mine] == ["UPDATE", "OPEN"]
    assert len(recent_alerts(client, n=1, prefix=prefix)) == 1

    total = summary(client, prefix=prefix)
    assert (total["stores"], total["items"], total["alerts_written"], total["alerts_in_stream"]) == (2, 5, 3, 3)
    assert total["updated_at"] == T0_MS
    s1 = summary(client, "S001", prefix=prefix)
    assert (s1["items"], s1["items_at_risk"], s1["open_alerts"]) == (3, 2, 3)
    assert (s1["open:DEMAND_SPIKE"], s1["open:STOCKOUT_RISK"], s1["open:DEMAND_DROP"]) == (1, 1, 1)


@pytest.mark.integration
def test_any_sku_text_round_trips(client: redis.Redis, prefix: str) -> None:
    """Items travel to the script as one JSON argument: quotes, backslashes and non-ASCII survive it."""
    skus = ['a"b', "c\\d", "Käse-ß-\u00e9", "x,y", "\u2603 snow", "tab\there"]
    views = [make_view("S\u00d8", sku, risk=10.5 + i) for i, sku in enumerate(skus)]
    assert RedisViews(client=client, prefix=prefix, clock=FakeClock()).write(views, []) is True
    for view in views:
        assert show(client, "S\u00d8", view.sku, prefix=prefix) == asdict(view)
    assert [r["sku"] for r in top(client, "S\u00d8", prefix=prefix)] == skus[::-1]


@pytest.mark.integration
def test_updates_move_rankings_and_counts(client: redis.Redis, prefix: str) -> None:
    views, alerts = batch()
    writer = RedisViews(client=client, prefix=prefix, clock=FakeClock())
    writer.write(views, alerts)
    calm = replace(views[0], risk=0.0, open_alerts=())
    assert writer.write([calm], []) is True
    assert [r["sku"] for r in top(client, "S001", prefix=prefix)] == ["C03-000200"]
    s1 = summary(client, "S001", prefix=prefix)
    assert (s1["items"], s1["items_at_risk"], s1["open:DEMAND_SPIKE"], s1["open_alerts"]) == (3, 1, 0, 1)


@pytest.mark.integration
def test_replaying_a_batch_leaves_the_same_views(client: redis.Redis, prefix: str) -> None:
    views, alerts = batch()
    clock = FakeClock()
    writer = RedisViews(client=client, prefix=prefix, clock=clock)
    writer.write(views, alerts)
    first = snapshot(client, prefix)
    clock.advance(60)
    assert RedisViews(client=client, prefix=prefix, clock=clock).write(views, alerts) is True
    assert snapshot(client, prefix) == first
    assert client.xlen(Keys(prefix).alerts) == len(alerts)
    assert summary(client, prefix=prefix)["alerts_written"] == len(alerts)


@pytest.mark.integration
def test_ttls(client: redis.Redis, prefix: str) -> None:
    views, alerts = batch()
    RedisViews(client=client, prefix=prefix, item_ttl_s=3600, clock=FakeClock()).write(views, alerts)
    k = Keys(prefix)
    assert 3590 < client.ttl(k.item("S001", "C03-000123")) <= 3600
    assert 3590 < client.ttl(k.seen(alerts[0])) <= 3600
    assert client.ttl(k.summary) == -1  # summaries and rankings live on; stale members are pruned


@pytest.mark.integration
def test_items_past_their_ttl_leave_rankings_and_counts(client: redis.Redis, prefix: str) -> None:
    views, alerts = batch()
    clock = FakeClock()
    writer = RedisViews(client=client, prefix=prefix, item_ttl_s=3600, clock=clock)
    writer.write(views, alerts)
    clock.advance(3601)
    writer.write([make_view("S001", "C03-000999", risk=5.0)], [])
    assert client.zrange(Keys(prefix).risk("S001"), 0, -1) == ["C03-000999"]
    s1 = summary(client, "S001", prefix=prefix)
    assert (s1["items"], s1["items_at_risk"], s1["open_alerts"]) == (1, 1, 2)
    assert summary(client, prefix=prefix)["items"] == 3  # S002's two items are pruned on its next write


@pytest.mark.integration
def test_stream_is_capped(client: redis.Redis, prefix: str) -> None:
    writer = RedisViews(client=client, prefix=prefix, alerts_maxlen=50, clock=FakeClock())
    writer.write([], [make_alert("S001", "A", n=i) for i in range(500)])
    assert 50 <= client.xlen(Keys(prefix).alerts) < 500
    assert summary(client, prefix=prefix)["alerts_written"] == 500


@pytest.mark.integration
def test_outage_buffers_backs_off_and_catches_up(redis_server: RedisServer, prefix: str) -> None:
    clock = FakeClock()
    client = connect(redis_server.url)
    writer = RedisViews(client=client, prefix=prefix, clock=clock)
    views, alerts = batch()
    assert writer.write(views, alerts) is True
    try:
        redis_server.stop()
        newer = [replace(v, observed_rate=v.observed_rate + 1, event_time=v.event_time + 60_000) for v in views]
        during = [make_alert("S001", "C03-000123", n=i) for i in range(1, 4)]
        before = failures()
        start = time.monotonic()
        assert writer.write(newer, during[:1]) is False
        assert time.monotonic() - start < 0.5
        assert failures() == before + 1
        clock.advance(0.2)  # still backing off: buffers without touching the network
        latest = [replace(v, observed_rate=v.observed_rate + 2, event_time=v.event_time + 120_000) for v in views]
        assert writer.write(latest, during[1:]) is False
        assert failures() == before + 1
        assert writer.pending == (len(views), len(during))
    finally:
        redis_server.restart()
    clock.advance(1.0)
    assert writer.write([], []) is True
    assert writer.pending == (0, 0)
    for view in latest:
        assert show(client, view.store_id, view.sku, prefix=prefix) == asdict(view)
    ids = [(a["alert_id"], a["status"]) for a in recent_alerts(client, n=100, prefix=prefix)]
    assert len(ids) == len(set(ids))  # nothing written twice
    assert {(a.alert_id, a.status) for a in during} <= set(ids)
    assert summary(client, "S001", prefix=prefix)["items"] == 3


@pytest.mark.integration
def test_outage_drops_the_oldest_alerts_beyond_max_pending(redis_server: RedisServer, prefix: str) -> None:
    clock = FakeClock()
    client = connect(redis_server.url)
    writer = RedisViews(client=client, prefix=prefix, clock=clock, max_pending=3)
    alerts = [make_alert("S001", "A", n=i) for i in range(5)]
    try:
        redis_server.stop()
        assert writer.write([], alerts) is False
    finally:
        redis_server.restart()
    assert writer.dropped_alerts == 2
    clock.advance(1.0)
    assert writer.write([], []) is True
    assert [a["alert_id"] for a in recent_alerts(client, prefix=prefix)] == [a.alert_id for a in alerts[:1:-1]]
