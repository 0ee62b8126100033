"""Seasonal demand profile of a store: relative sales intensity by hour of the week.

Pooled over every item of the store, so sparse items borrow the store's shape. Each hour-of-week
cell is a decayed mean of the store's transactions in that hour, shrunk towards the hour-of-day
mean, which is shrunk towards flat: a day of data already tells closed nights from busy evenings,
and a few weeks tell Saturday from Tuesday. Closed hours get (near) zero intensity, so they are
never read as a drop.
"""

from __future__ import annotations

from typing import Final

from operators.events import HOUR_MS

HOURS_PER_WEEK: Final = 168
WEEK_MS: Final = HOURS_PER_WEEK * HOUR_MS
MONDAY_MS: Final = 4 * 24 * HOUR_MS  # 1970-01-05T00:00Z, a Monday


def hour_of_week(t_ms: int) -> int:
    """0 for Monday 00:00-01:00 UTC up to 167 for Sunday 23:00-24:00."""
    return ((t_ms - MONDAY_MS) // HOUR_MS) % HOURS_PER_WEEK


class StoreProfile:
    """Hour-of-week intensity of one store, mean 1 over the week, learned online.

    Parameters
    ----------
    week_decay
        Weight kept by past weeks each week (0.75: about a month of memory).
    cell_prior, hour_prior
        Weeks of pseudo-exposure that shrink a cell to its hour of day, and an hour to flat.
    """

    __slots__ = (
        "week_decay",
        "cell_prior",
        "hour_prior",
        "_counts",
        "_exposure",
        "_hour",
        "_txns",
        "_cum",
        "_peak",
        "_mean",
    )

    def __init__(self, week_decay: float = 0.75, cell_prior: float = 0.5, hour_prior: float = 0.05) -> None:
        if not 0 < week_decay <= 1:
            raise ValueError(f"week_decay must be in (0, 1], got {week_decay}")
        self.week_decay = week_decay
        self.cell_prior = cell_prior
        self.hour_prior = hour_prior
        self._counts = [0.0] * HOURS_PER_WEEK
        self._exposure = [0.0] * HOURS_PER_WEEK
        self._hour: int | None = None  # start (ms) of the hour being counted
        self._txns = 0
        self._cum = [float(i) for i in range(HOURS_PER_WEEK + 1)]  # flat until data comes
        self._peak = 1.0
        self._mean = 0.0

    def __getstate__(self) -> tuple:
        return (self.week_decay, self.cell_prior, self.hour_prior, self._counts, self._exposure, self._hour, self._txns)

    def __setstate__(self, state: tuple) -> None:
        (self.week_decay, self.cell_prior, self.hour_prior, self._counts, self._exposure, self._hour, self._txns) = (
            state
        )
        self._rebuild()

    def advance(self, t_ms: int) -> None:
        """Close every whole hour before ``t_ms`` (events arrive in event-time order)."""
        hour = t_ms - t_ms % HOUR_MS
        if self._hour is None:
            self._hour = hour
            return
        if hour <= self._hour:
            return
        closed = min((hour - self._hour) // HOUR_MS, HOURS_PER_WEEK)
        d = self.week_decay
        for i in range(closed):
            c = hour_of_week(self._hour + i * HOUR_MS)
            self._counts[c] = d * self._counts[c] + (self._txns if i == 0 else 0)
            self._exposure[c] = d * self._exposure[c] + 1.0
        self._hour, self._txns = hour, 0
        self._rebuild()

    def record_sale(self, t_ms: int) -> None:
        """Count one transaction at ``t_ms``."""
        self.advance(t_ms)
        self._txns += 1

    def mean_rate(self) -> float:
        """The store's transactions per hour, over every hour it has seen (open or closed)."""
        return self._mean

    def peak(self) -> float:
        """The highest intensity of any hour of the week."""
        return self._peak

    def intensity(self, t_ms: int) -> float:
        """Relative intensity at ``t_ms`` (mean 1 over a week)."""
        c = hour_of_week(t_ms)
        return self._cum[c + 1] - self._cum[c]

    def exposure(self, t0_ms: int, t1_ms: int) -> float:
        """Profile-hours between two times: the integral of intensity, in hours."""
        if t1_ms <= t0_ms:
            return 0.0
        return self._integral(t1_ms) - self._integral(t0_ms)

    def _integral(self, t_ms: int) -> float:
        """Profile-hours from the epoch's Monday to ``t_ms``."""
        t = t_ms - MONDAY_MS
        within = t % WEEK_MS  # not divmod: mypyc makes a tuple of it
        c = within // HOUR_MS
        cum = self._cum
        return t // WEEK_MS * cum[HOURS_PER_WEEK] + cum[c] + (cum[c + 1] - cum[c]) * (within % HOUR_MS) / HOUR_MS

    def _rebuild(self) -> None:
        counts, exposure = self._counts, self._exposure
        total_e = sum(exposure)
        overall = self._mean = sum(counts) / total_e if total_e else 0.0
        if overall <= 0:
            self._cum = [float(i) for i in range(HOURS_PER_WEEK + 1)]
            self._peak = 1.0
            return
        hod = []
        for h in range(24):
            c = sum(counts[h::24])
            e = sum(exposure[h::24])
            hod.append((c + self.hour_prior * overall) / (e + self.hour_prior))
        cells = [
            (counts[i] + self.cell_prior * hod[i % 24]) / (exposure[i] + self.cell_prior) for i in range(HOURS_PER_WEEK)
        ]
        mean = sum(cells) / HOURS_PER_WEEK
        cum, acc = [0.0], 0.0
        for v in cells:
            acc += v / mean
            cum.append(acc)
        self._cum = cum
        self._peak = max(cells) / mean
