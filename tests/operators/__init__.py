"""Tests of ``operators/``, and the synthetic store streams they share."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from operators.events import HOUR_MS, Alert, DeadLetter, InventoryEvent, Origin, Sale, Trigger
from operators.policy import Policy
from operators.store import StoreOut, StoreState

T0 = 1_772_409_600_000  # 2026-03-02T00:00:00Z, a Monday
DAY_MS = 24 * HOUR_MS
MINUTE_MS = 60_000
OPEN_HOUR, CLOSE_HOUR = 8, 22  # the store sells from 08:00 to 22:00 UTC
STORE = "S1"

RateFn = Callable[[str, int], float]
"""Transactions per hour of ``sku`` in the hour starting at ``t`` (epoch ms)."""


def is_open(t: int) -> bool:
    """The synthetic store's opening hours."""
    return OPEN_HOUR <= (t % DAY_MS) // HOUR_MS < CLOSE_HOUR


def flat(rate: float = 10.0) -> RateFn:
    """``rate`` transactions per hour while the store is open, none while it is closed."""
    return lambda _sku, t: rate if is_open(t) else 0.0


@dataclass
class Stream:
    """Builds a store's events by hand: Poisson sales and inventory records with origins."""

    seed: int = 7
    store_id: str = STORE
    events: list[Sale | InventoryEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._sales = 0
        self._inventory = 0

    def sale(self, sku: str, t: int, quantity: int = 1, *, promo_id: str | None = None) -> Sale:
        """One sale line with a fresh id and origin ``("sales", 0, n)``."""
        n = self._sales
        self._sales += 1
        ev = Sale(f"sale-{n}", t, self.store_id, sku, "STORE", quantity, 5.0, promo_id, Origin("sales", 0, n))
        self.events.append(ev)
        return ev

    def inventory(
        self, sku: str, t: int, event_type: str, quantity: int = 0, on_hand: int | None = None
    ) -> InventoryEvent:
        """One inventory record with a fresh id and origin ``("inventory", 0, n)``."""
        n = self._inventory
        self._inventory += 1
        ev = InventoryEvent(
            f"inv-{n}", t, self.store_id, sku, event_type, quantity, on_hand, None, Origin("inventory", 0, n)
        )
        self.events.append(ev)
        return ev

    def sales(self, skus: Sequence[str], start: int, end: int, rate: RateFn) -> None:
        """Poisson sales of each SKU between ``start`` and ``end``, hour by hour at ``rate``."""
        for hour in range(start - start % HOUR_MS, end, HOUR_MS):
            for sku in skus:
                r = rate(sku, hour)
                if r <= 0:
                    continue
                t = float(hour)
                while True:
                    t += self.rng.expovariate(r / HOUR_MS)
                    if t >= hour + HOUR_MS:
                        break
                    if start <= t < end:
                        self.sale(sku, int(t))

    def ordered(self) -> list[Sale | InventoryEvent]:
        """The events in event-time order (stable for ties)."""
        return sorted(self.events, key=lambda e: e.event_time)


@dataclass
class Run:
    """Everything a store produced over a run, in emission order."""

    alerts: list[Alert] = field(default_factory=list)
    triggers: list[Trigger] = field(default_factory=list)
    late: list[DeadLetter] = field(default_factory=list)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, out: StoreOut) -> None:
        """Append one batch's output."""
        self.alerts += out.alerts
        self.triggers += out.triggers
        self.late += out.late
        for k, v in out.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v

    def of(self, alert_type: str, sku: str | None = None, status: str | None = None) -> list[Alert]:
        """The alerts of one type (and SKU, and status)."""
        return [
            a
            for a in self.alerts
            if a.alert_type == alert_type and (sku is None or a.sku == sku) and (status is None or a.status == status)
        ]


def batches(events: Sequence[object], sizes: Iterable[int]) -> list[list[object]]:
    """``events`` cut into consecutive batches, cycling through ``sizes``."""
    sizes = list(sizes)
    out, i, k = [], 0, 0
    while i < len(events):
        n = sizes[k % len(sizes)]
        out.append(list(events[i : i + n]))
        i, k = i + n, k + 1
    return out


def feed(
    events: Sequence[object],
    policy: Policy | None = None,
    *,
    sizes: Iterable[int] = (500,),
    state: StoreState | None = None,
    flush: bool = True,
) -> tuple[Run, StoreState]:
    """Feed ``events`` to a store in batches (then flush); what came out, and the state."""
    policy = policy or Policy()
    state = state if state is not None else StoreState(STORE)
    run = Run()
    for batch in batches(events, sizes):
        run.add(state.on_events(batch, policy))  # type: ignore[arg-type]
    if flush:
        run.add(state.flush(policy))
    return run, state


def local_shuffle(events: Sequence[Sale | InventoryEvent], window_ms: int, seed: int) -> list[Sale | InventoryEvent]:
    """The events in an arrival order that only reorders them within ``window_ms`` of each other.

    Each event gets an arrival time of its event time plus a random delay in ``[0, window_ms)``;
    no event then arrives more than ``window_ms`` behind the newest event already seen.
    """
    rng = random.Random(seed)
    delayed = [(e.event_time + rng.randrange(window_ms), i, e) for i, e in enumerate(events)]
    return [e for *_, e in sorted(delayed)]
