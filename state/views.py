"""Redis live views for analysts: the writer (outage-tolerant) and the readers.

Key layout (``ds`` is the configurable prefix; see ``docs/redis.md``):

- ``ds:item:{store}:{sku}`` hash: one :class:`ItemView`, expires ``item_ttl_s`` after its last write.
- ``ds:risk:{store}`` sorted set: sku -> risk, items with risk > 0 only.
- ``ds:open:{store}:{alert_type}`` sorted set: sku -> last write (ms), items with that alert open.
- ``ds:items:{store}`` sorted set: sku -> last write (ms); members older than the TTL are pruned.
- ``ds:store:{store}`` hash: items, items_at_risk, open alerts by type, updated_at.
- ``ds:stores`` set, ``ds:summary`` hash (stores, items, alerts_written, updated_at).
- ``ds:alerts`` stream capped near ``alerts_maxlen``; ``ds:alert-seen:{id}:{status}:{event_time}``
  markers (TTL ``item_ttl_s``) make each alert record land in the stream once.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import orjson
import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from demandsense.metrics import REDIS_WRITE_FAILURES
from operators.events import ALERT_TYPES, Alert

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
SOCKET_TIMEOUT_S = 1.0
_PRUNE_BATCH = 1000


@dataclass(slots=True)
class ItemView:
    """What analysts see of one item; rates in units/hour, times in epoch ms. Treat it as read-only (not frozen:
    a frozen one took 2.0 µs to build, this one 0.7)."""

    store_id: str
    sku: str
    event_time: int
    expected_rate: float
    observed_rate: float
    on_hand: int | None
    position: int | None
    hours_to_stockout: float | None
    risk: float
    open_alerts: tuple[str, ...] = ()
    last_alert_type: str | None = None
    last_alert_time: int | None = None
    hourly_units: tuple[int, ...] = ()


# ---------------------------------------------------------------- keys and field codecs


@dataclass(frozen=True, slots=True)
class Keys:
    """Redis key names under one prefix."""

    prefix: str = "ds"

    def item(self, store: str, sku: str) -> str:
        """Hash of one item's view."""
        return f"{self.prefix}:item:{store}:{sku}"

    def risk(self, store: str) -> str:
        """Sorted set sku -> risk of one store."""
        return f"{self.prefix}:risk:{store}"

    def open(self, store: str, alert_type: str) -> str:
        """Sorted set of the store's skus with an open alert of this type."""
        return f"{self.prefix}:open:{store}:{alert_type}"

    def items(self, store: str) -> str:
        """Sorted set sku -> last write (ms) of the store's live items."""
        return f"{self.prefix}:items:{store}"

    def store(self, store: str) -> str:
        """Summary hash of one store."""
        return f"{self.prefix}:store:{store}"

    def seen(self, alert: Alert) -> str:
        """Marker of one alert record already in the stream."""
        return f"{self.prefix}:alert-seen:{alert.alert_id}:{alert.status}:{alert.event_time}"

    @property
    def stores(self) -> str:
        """Set of store ids."""
        return f"{self.prefix}:stores"

    @property
    def summary(self) -> str:
        """Global summary hash."""
        return f"{self.prefix}:summary"

    @property
    def alerts(self) -> str:
        """Stream of alert records."""
        return f"{self.prefix}:alerts"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _str(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _opt(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    return lambda s: None if s == "" else parse(s)


def _tuple(parse: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    return lambda s: tuple(parse(x) for x in s.split(",")) if s else ()


_ITEM_PARSERS: dict[str, Callable[[str], Any]] = {
    "event_time": int,
    "expected_rate": float,
    "observed_rate": float,
    "on_hand": _opt(int),
    "position": _opt(int),
    "hours_to_stockout": _opt(float),
    "risk": float,
    "open_alerts": _tuple(str),
    "last_alert_type": _opt(str),
    "last_alert_time": _opt(int),
    "hourly_units": _tuple(int),
}
_ALERT_PARSERS: dict[str, Callable[[str], Any]] = {
    "event_time": int,
    "priority": int,
    "expected_rate": float,
    "observed_rate": float,
    "confidence": float,
    "hours_to_stockout": _opt(float),
    "revenue_at_risk": _opt(float),
    "evidence": json.loads,
}


ITEM_FIELDS = tuple(f.name for f in fields(ItemView))


def item_values(view: ItemView) -> tuple[str, ...]:
    """The hash values of a view in :data:`ITEM_FIELDS` order: ``""`` for None, tuples comma-separated."""
    return (
        view.store_id,
        view.sku,
        str(view.event_time),
        str(view.expected_rate),
        str(view.observed_rate),
        _text(view.on_hand),
        _text(view.position),
        _text(view.hours_to_stockout),
        str(view.risk),
        ",".join(view.open_alerts),
        _text(view.last_alert_type),
        _text(view.last_alert_time),
        ",".join(map(str, view.hourly_units)),
    )


def item_fields(view: ItemView) -> dict[str, str]:
    """The hash fields of a view: every field present, ``""`` for None, tuples comma-separated."""
    return dict(zip(ITEM_FIELDS, item_values(view), strict=True))


def item_from_fields(raw: Mapping[Any, Any]) -> ItemView:
    """The :class:`ItemView` stored in a hash (inverse of :func:`item_fields`)."""
    h = {_str(k): _str(v) for k, v in raw.items()}
    values = {f.name: _ITEM_PARSERS.get(f.name, str)(h.get(f.name, "")) for f in fields(ItemView)}
    return ItemView(**values)


def alert_fields(alert: Alert) -> dict[str, str]:
    """The stream fields of an alert: strings, ``""`` for None, evidence as JSON."""
    out = {f.name: _text(getattr(alert, f.name)) for f in fields(Alert)}
    out["evidence"] = json.dumps(alert.evidence, sort_keys=True)
    return out


def alert_from_fields(raw: Mapping[Any, Any]) -> dict[str, Any]:
    """A stream entry's fields as typed values (unknown fields stay strings)."""
    h = {_str(k): _str(v) for k, v in raw.items()}
    return {k: _ALERT_PARSERS.get(k, str)(v) for k, v in h.items()}


# ---------------------------------------------------------------- client


def connect(
    url: str, *, username: str | None = None, password: str | None = None, ssl_ca_certs: str | None = None
) -> redis.Redis:
    """A client with short timeouts: ``redis://`` or ``rediss://`` (TLS); AUTH from the URL or arguments.

    One immediate retry covers a pooled connection the server closed while idle; longer outages
    are the caller's to handle (:class:`RedisViews` backs off).
    """
    options: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": SOCKET_TIMEOUT_S,
        "retry": Retry(NoBackoff(), 1),
        "decode_responses": True,
    }
    extra = {"username": username, "password": password, "ssl_ca_certs": ssl_ca_certs}
    options.update({k: v for k, v in extra.items() if v is not None})
    return redis.Redis.from_url(url, **options)


# ---------------------------------------------------------------- writer

# Writes items of one store. KEYS: items, risk, open:{type}... (one per ALERT_TYPES), then one hash per item;
# ARGV: ttl (s), now (ms), type..., then a JSON array with one row per item, in KEYS' order:
# [sku, risk, ",open,types,", the ITEM_FIELDS values...] (one argument: packing ~17 per item cost more
# of the writer's CPU than building them).
_ITEMS_LUA = f"""
local names = {{{", ".join(f"'{name}'" for name in ITEM_FIELDS)}}}
local ntypes, nfields = {len(ALERT_TYPES)}, #names
local ttl, now = ARGV[1], ARGV[2]
local rows = cjson.decode(ARGV[3 + ntypes])
for r, row in ipairs(rows) do
  local key, sku, risk, open = KEYS[2 + ntypes + r], row[1], row[2], row[3]
  local pairs = {{}}
  for f = 1, nfields do
    pairs[2 * f - 1] = names[f]
    pairs[2 * f] = row[3 + f]
  end
  redis.call('HSET', key, unpack(pairs))
  redis.call('EXPIRE', key, ttl)
  redis.call('ZADD', KEYS[1], now, sku)
  if risk > 0 then redis.call('ZADD', KEYS[2], risk, sku) else redis.call('ZREM', KEYS[2], sku) end
  for t = 1, ntypes do
    if string.find(open, ',' .. ARGV[2 + t] .. ',', 1, true) then
      redis.call('ZADD', KEYS[2 + t], now, sku)
    else
      redis.call('ZREM', KEYS[2 + t], sku)
    end
  end
end
return #rows
"""
_ITEMS_PER_CALL = 500

# Adds one alert record to the stream unless its marker exists. KEYS: seen, stream, summary;
# ARGV: marker ttl (s), maxlen, now (ms), field, value, ...
_ALERT_LUA = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 4))
redis.call('HINCRBY', KEYS[3], 'alerts_written', 1)
redis.call('HSET', KEYS[3], 'updated_at', ARGV[3])
return 1
"""

# Prunes a store's items older than the TTL, then recomputes its summary from the sorted sets.
# KEYS: store hash, items, risk, summary, stores, open:{type}...;
# ARGV: store id, now (ms), cutoff (ms), prune batch, type...
_STORE_LUA = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[3], 'LIMIT', 0, ARGV[4])
if #expired > 0 then
  for i = 2, #KEYS do
    if i ~= 4 and i ~= 5 then redis.call('ZREM', KEYS[i], unpack(expired)) end
  end
end
local items = redis.call('ZCARD', KEYS[2])
local before = tonumber(redis.call('HGET', KEYS[1], 'items') or '0')
local out = {'store_id', ARGV[1], 'items', items, 'items_at_risk', redis.call('ZCARD', KEYS[3]),
             'updated_at', ARGV[2]}
local total = 0
for i = 6, #KEYS do
  local n = redis.call('ZCARD', KEYS[i])
  total = total + n
  table.insert(out, 'open:' .. ARGV[i - 1])
  table.insert(out, n)
end
table.insert(out, 'open_alerts')
table.insert(out, total)
redis.call('HSET', KEYS[1], unpack(out))
redis.call('SADD', KEYS[5], ARGV[1])
redis.call('HINCRBY', KEYS[4], 'items', items - before)
redis.call('HSET', KEYS[4], 'stores', redis.call('SCARD', KEYS[5]), 'updated_at', ARGV[2])
return items
"""


class RedisViews:
    """Writes item views and alerts to Redis; an outage never raises, it buffers and backs off.

    Pending work is the latest view per item (bounded by the key count) and the unwritten alerts
    (the oldest beyond ``max_pending`` are dropped and counted in ``dropped_alerts``). After a
    failure, attempts are spaced 0.5 s doubling to 30 s on the injected clock; in between,
    :meth:`write` only buffers. Every write is idempotent, so a retried batch leaves the same views.
    """

    def __init__(
        self,
        *,
        client: redis.Redis,
        prefix: str = "ds",
        item_ttl_s: int = 7 * 24 * 3600,
        alerts_maxlen: int = 10_000,
        clock: Callable[[], float] = time.time,
        max_pending: int = 200_000,
    ) -> None:
        if item_ttl_s <= 0 or alerts_maxlen <= 0 or max_pending <= 0:
            raise ValueError("item_ttl_s, alerts_maxlen and max_pending must be positive")
        self._client = client
        self._keys = Keys(prefix)
        self.item_ttl_s = item_ttl_s
        self.alerts_maxlen = alerts_maxlen
        self.max_pending = max_pending
        self._clock = clock
        self._alert_script = client.register_script(_ALERT_LUA)
        self._store_script = client.register_script(_STORE_LUA)
        self._items_script = client.register_script(_ITEMS_LUA)
        self._views: dict[tuple[str, str], ItemView] = {}
        self._alerts: deque[Alert] = deque()
        self.dropped_alerts = 0
        self._failures = 0
        self._retry_at = float("-inf")

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        ssl_ca_certs: str | None = None,
        **options: Any,
    ) -> RedisViews:
        """A writer on :func:`connect`'s client; ``options`` go to the constructor."""
        client = connect(url, username=username, password=password, ssl_ca_certs=ssl_ca_certs)
        return cls(client=client, **options)

    @property
    def pending(self) -> tuple[int, int]:
        """(views, alerts) waiting to be written."""
        return len(self._views), len(self._alerts)

    def write(self, views: Sequence[ItemView], alerts: Sequence[Alert]) -> bool:
        """Buffer, then flush everything pending in one pipeline; ``False`` if it is not in Redis yet."""
        self._buffer(views, alerts)
        if not (self._views or self._alerts):
            return True
        if self._clock() < self._retry_at:
            return False
        try:
            self._flush()
        except RedisError as exc:
            self._failed(exc)
            return False
        self._failures = 0
        self._retry_at = float("-inf")
        return True

    def _buffer(self, views: Iterable[ItemView], alerts: Iterable[Alert]) -> None:
        for view in views:
            self._views[(view.store_id, view.sku)] = view
        self._alerts.extend(alerts)
        excess = len(self._alerts) - self.max_pending
        if excess > 0:
            for _ in range(excess):
                self._alerts.popleft()
            self.dropped_alerts += excess

    def _flush(self) -> None:
        now_ms = int(self._clock() * 1000)
        by_store: dict[str, list[ItemView]] = {}
        for view in self._views.values():
            by_store.setdefault(view.store_id, []).append(view)
        pipe = self._client.pipeline(transaction=False)
        for store, views in sorted(by_store.items()):
            for i in range(0, len(views), _ITEMS_PER_CALL):
                self._put_items(pipe, store, views[i : i + _ITEMS_PER_CALL], now_ms)
        for alert in self._alerts:
            self._put_alert(pipe, alert, now_ms)
        for store in sorted(by_store):
            self._put_store(pipe, store, now_ms)
        pipe.execute()
        self._views.clear()
        self._alerts.clear()

    def _put_items(self, pipe: Any, store: str, views: list[ItemView], now_ms: int) -> None:
        """Items of one store in one script call: hashes, TTLs and their places in the store's sets."""
        k = self._keys
        keys = [k.items(store), k.risk(store), *(k.open(store, t) for t in ALERT_TYPES)]
        keys += [k.item(store, view.sku) for view in views]
        rows = [(view.sku, view.risk, "," + ",".join(view.open_alerts) + ",", *item_values(view)) for view in views]
        self._items_script(keys=keys, args=[self.item_ttl_s, now_ms, *ALERT_TYPES, orjson.dumps(rows)], client=pipe)

    def _put_alert(self, pipe: Any, alert: Alert, now_ms: int) -> None:
        k = self._keys
        pairs = [x for item in alert_fields(alert).items() for x in item]
        args = [self.item_ttl_s, self.alerts_maxlen, now_ms, *pairs]
        self._alert_script(keys=[k.seen(alert), k.alerts, k.summary], args=args, client=pipe)

    def _put_store(self, pipe: Any, store: str, now_ms: int) -> None:
        k = self._keys
        keys = [k.store(store), k.items(store), k.risk(store), k.summary, k.stores]
        keys += [k.open(store, t) for t in ALERT_TYPES]
        args = [store, now_ms, now_ms - self.item_ttl_s * 1000, _PRUNE_BATCH, *ALERT_TYPES]
        self._store_script(keys=keys, args=args, client=pipe)

    def _failed(self, exc: RedisError) -> None:
        REDIS_WRITE_FAILURES.inc()
        delay = min(BACKOFF_MAX_S, BACKOFF_START_S * 2 ** min(self._failures, 10))
        self._failures += 1
        self._retry_at = self._clock() + delay
        views, alerts = self.pending
        log.warning(
            "Redis views: write failed (%s: %s); %d views and %d alerts pending (%d oldest alerts dropped so far, "
            "max_pending=%d); next attempt in %.1f s",
            type(exc).__name__,
            exc,
            views,
            alerts,
            self.dropped_alerts,
            self.max_pending,
            delay,
        )


# ---------------------------------------------------------------- readers


def _numbers(raw: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in raw.items():
        text = _str(v)
        out[_str(k)] = int(text) if text.lstrip("-").isdigit() else text
    return out


def known_stores(client: redis.Redis, *, prefix: str = "ds") -> list[str]:
    """The ids of the stores with live views, sorted."""
    return sorted(_str(s) for s in client.smembers(Keys(prefix).stores))


def top(client: redis.Redis, store: str | None = None, n: int = 20, *, prefix: str = "ds") -> list[dict[str, Any]]:
    """The ``n`` riskiest items of one store, or of all stores merged; highest risk first."""
    if n <= 0:
        return []
    k = Keys(prefix)
    stores = [store] if store is not None else known_stores(client, prefix=prefix)
    pipe = client.pipeline(transaction=False)
    for s in stores:
        pipe.zrevrange(k.risk(s), 0, n - 1, withscores=True)
    ranked = [(-score, s, _str(sku)) for s, rows in zip(stores, pipe.execute(), strict=True) for sku, score in rows]
    ranked = sorted(ranked)[:n]
    for _, s, sku in ranked:
        pipe.hgetall(k.item(s, sku))
    return [asdict(item_from_fields(h)) for h in pipe.execute() if h]


def show(client: redis.Redis, store: str, sku: str, *, prefix: str = "ds") -> dict[str, Any] | None:
    """One item's view, or ``None`` when it is unknown or expired."""
    h = client.hgetall(Keys(prefix).item(store, sku))
    return asdict(item_from_fields(h)) if h else None


def recent_alerts(
    client: redis.Redis,
    n: int = 50,
    *,
    store: str | None = None,
    sku: str | None = None,
    prefix: str = "ds",
    scan_limit: int = 10_000,
) -> list[dict[str, Any]]:
    """The newest ``n`` alert records (optionally of one store/sku), newest first, with the stream ``id``.

    With a filter, at most ``scan_limit`` stream entries are read.
    """
    stream = Keys(prefix).alerts
    page_size = n if store is None and sku is None else 500
    out: list[dict[str, Any]] = []
    upper, scanned = "+", 0
    while len(out) < n and scanned < scan_limit:
        page = client.xrevrange(stream, max=upper, min="-", count=page_size)
        if not page:
            break
        for entry_id, raw in page:
            alert = alert_from_fields(raw)
            if store in (None, alert.get("store_id")) and sku in (None, alert.get("sku")):
                out.append({"id": _str(entry_id), **alert})
        scanned += len(page)
        upper = "(" + _str(page[-1][0])
    return out[:n]


def summary(client: redis.Redis, store: str | None = None, *, prefix: str = "ds") -> dict[str, Any]:
    """The global summary (with ``alerts_in_stream``), or one store's summary hash."""
    k = Keys(prefix)
    if store is not None:
        return _numbers(client.hgetall(k.store(store)))
    out = _numbers(client.hgetall(k.summary))
    out["alerts_in_stream"] = int(client.xlen(k.alerts))
    return out
