"""Per-item state and its transitions: the online demand model, detectors and inventory position.

One :class:`ItemState` per SKU-store, about 30 numbers. The expected rate is a decayed
transactions-per-profile-hour estimate shrunk towards the store's average item (sparse items
borrow strength), times the store's hour-of-week profile, times a promotion's lift. Time moves
by :meth:`ItemState.advance`; events and ticks arrive in event-time order.

Demand over a window (:meth:`ItemState.demand_moments`) is compound Poisson within a day times a
day-level multiplier (weather, paydays, local events) with squared coefficient of variation
:meth:`ItemState.day_cv2`, independent from one calendar day (UTC) to the next, learned from each
day's units against the model's expectation. A store open across midnight UTC splits its business
day in two, which reads the swing lower than it is.

Discard rule: an item with no event for ``Detection.idle_hours`` sheds its hourly detail; the
store drops it entirely once it is idle, holds no stock and has no open alert.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Final

from operators.alerting import Condition, Episode
from operators.detectors import confidence, cusum_down_quiet, cusum_on_event, cusum_up_quiet, demand_tail
from operators.events import COUNT_TYPES, HOUR_MS, InventoryEvent, ItemParams, Sale
from operators.policy import Detection, ItemDefaults
from operators.profile import StoreProfile
from operators.replenish import n_units

CLOSED_INTENSITY: Final = 0.1  # hours below a tenth of the week's mean intensity count as closed
PROMO_MS: Final = 24 * HOUR_MS  # a promotion counts as running this long after its last promoted sale
SPARK_HOURS: Final = 24
DAY_MS: Final = 24 * HOUR_MS
NEVER: Final = 2**62  # the due time of an item no time-driven check can change: it waits for its next event
DAY_CV2_PRIOR: Final = 0.2  # day-to-day CV² an item starts from: demand swinging about +-45% from day to day
DAY_CV2_PRIOR_DAYS: Final = 7.0  # fully informative days of prior weight in the day-level CV² estimate


_ITEM_FIELDS: Final = (
    "t", "x", "p", "units", "n_sales", "s_up", "s_dn", "quiet", "on_hand", "in_transit", "reserved",
    "on_order", "ordered_at", "counted_at", "last_sale", "last_event", "promo", "promo_until",
    "hour0", "hourly", "episodes", "due", "p_out", "slow_at_sale", "day_units", "day_expected", "cv2_w",
    "cv2_sum", "queued",
)  # fmt: skip


class ItemState:
    """Learned and operational state of one SKU in one store."""

    __slots__ = _ITEM_FIELDS

    def __init__(self, t: int = 0) -> None:
        self.t = t  # event time the model has been advanced to
        self.x = 0.0  # decayed transactions (promotion-adjusted)
        self.p = 0.0  # decayed exposure, in profile-hours
        self.units = 0.0  # decayed units, for the basket size
        self.n_sales = 0
        self.s_up = 0.0  # spike CUSUM
        self.s_dn = 0.0  # drop CUSUM
        self.quiet = 0.0  # expected transactions since the last sale (zero run)
        self.on_hand: int | None = None  # book stock; None until counted
        self.in_transit = 0
        self.reserved = 0
        self.on_order = 0  # ordered by our own triggers, not yet received
        self.ordered_at: int | None = None
        self.counted_at: int | None = None
        self.last_sale: int | None = None
        self.last_event = t
        self.promo: str | None = None
        self.promo_until = 0
        self.hour0: int | None = None  # start of the newest hourly bucket
        self.hourly: list[int] | None = None  # units per hour, oldest first, at most SPARK_HOURS
        self.episodes: dict[str, Episode] | None = None
        self.due = 0  # next event time a quiet item needs a look by the time-driven checks
        self.p_out = 0.0  # last probability of running out within the lead time
        self.slow_at_sale = False  # the drop statistic was already up at the last sale
        self.day_units = 0.0  # units sold so far today (UTC) while in stock and warm
        self.day_expected = 0.0  # units the model expected over the same time
        self.cv2_w = 0.0  # decayed weight of the days behind the day-level CV² estimate
        self.cv2_sum = 0.0  # decayed weighted sum of the days' CV² estimates
        self.queued: int | None = None  # time of the item's live entry in its store's heap of due looks

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, s) for s in _ITEM_FIELDS)

    def __setstate__(self, state: tuple) -> None:
        if len(state) == len(_ITEM_FIELDS) - 5:  # a snapshot from before the day-level CV²: none learned
            state = (*state, 0.0, 0.0, 0.0, 0.0)
        if len(state) == len(_ITEM_FIELDS) - 1:  # before ``queued``: the heap then held an entry at ``due``
            state = (*state, state[_ITEM_FIELDS.index("due")])
        for name, value in zip(_ITEM_FIELDS, state, strict=True):
            setattr(self, name, value)

    # -- the demand model -------------------------------------------------------------------
    def base_rate(self, prior: float, det: Detection) -> float:
        """Transactions per profile-hour, shrunk towards ``prior`` (the store's average item)."""
        w = det.prior_weight_hours
        return (self.x + w * prior) / (self.p + w)

    def basket(self) -> float:
        """Mean units per transaction."""
        return self.units / self.x if self.x > 0 else 1.0

    def lift(self, t: int, det: Detection) -> float:
        """Expected lift of a running promotion, else 1."""
        return det.promo_lift if self.promo is not None and t < self.promo_until else 1.0

    def out_of_stock(self) -> bool:
        """Book stock known and nothing available."""
        return self.on_hand is not None and self.on_hand - self.reserved <= 0

    def advance(self, t: int, profile: StoreProfile, prior: float, det: Detection, warm: bool = True) -> None:
        """Move to ``t``: the quiet stretch adds exposure, decays memory, moves the CUSUMs.

        Until the store is ``warm`` the item only learns its rate; evidence starts after. Each
        midnight (UTC) passed closes a day of the day-level CV² estimate.
        """
        while t > self.t:
            midnight = self.t - self.t % DAY_MS + DAY_MS
            self._advance(min(t, midnight), profile, prior, det, warm)
            if self.t == midnight:
                self._close_day(det)

    def _advance(self, t: int, profile: StoreProfile, prior: float, det: Detection, warm: bool) -> None:
        e = profile.exposure(self.t, t)
        self.t = t
        if e <= 0 or self.out_of_stock():  # closed hours and empty shelves say nothing of demand
            return
        if warm:
            expected = self.base_rate(prior, det) * self.lift(t, det) * e
            self.s_up = cusum_up_quiet(self.s_up, expected, det.spike_ratio)
            self.s_dn = min(cusum_down_quiet(self.s_dn, expected, det.drop_ratio), 2 * det.drop_threshold)
            self.quiet += expected
            self.day_expected += expected * self.basket()
        decay = math.exp(-e / det.memory_hours)
        self.x *= decay
        self.units *= decay
        self.p = self.p * decay + e

    # -- events ------------------------------------------------------------------------------
    def on_sale(self, sale: Sale, profile: StoreProfile, prior: float, det: Detection, warm: bool = True) -> None:
        """Learn from one sale line; it also leaves the shelf."""
        t = sale.event_time
        self.advance(t, profile, prior, det, warm)
        if sale.promo_id is not None:
            self.promo, self.promo_until = sale.promo_id, t + PROMO_MS
        if warm and not self.out_of_stock():
            self.day_units += sale.quantity
        lift = self.lift(t, det)
        self.x += 1.0 / lift
        self.units += sale.quantity / lift
        self.n_sales += 1
        if warm:
            self.s_up = min(cusum_on_event(self.s_up, det.spike_ratio), 2 * det.spike_threshold)
            self.s_dn = cusum_on_event(self.s_dn, det.drop_ratio)
        self.quiet = 0.0
        self.slow_at_sale = self.s_dn >= det.drop_threshold / 3
        self.last_sale = self.last_event = t
        if self.on_hand is not None:
            # selling from an empty book proves the book wrong: stock is unknown until counted
            self.on_hand = self.on_hand - sale.quantity if self.on_hand > 0 else None
            if self.on_hand is not None and self.on_hand < 0:
                self.on_hand = 0
        self._add_units(t, sale.quantity)

    def on_inventory(
        self, ev: InventoryEvent, profile: StoreProfile, prior: float, det: Detection, warm: bool = True
    ) -> None:
        """Apply a count or a delta to the book stock."""
        self.advance(ev.event_time, profile, prior, det, warm)
        self.last_event = ev.event_time
        was_out = self.on_hand is None or self.on_hand <= 0
        kind, q = ev.event_type, ev.quantity
        if kind in COUNT_TYPES:
            self.on_hand = ev.on_hand
            self.counted_at = ev.event_time
            if kind != "SNAPSHOT":  # a person looked at the shelf: a silent run starts again
                self.quiet = 0.0
        elif kind == "RESERVATION":
            self.reserved += q
        elif kind == "RESERVATION_RELEASE":
            self.reserved = max(0, self.reserved - q)
        elif self.on_hand is not None:
            self.on_hand = max(0, self.on_hand + q)
        if kind in ("RECEIPT", "TRANSFER_IN"):
            self.in_transit = max(0, self.in_transit - q)
            self.on_order = max(0, self.on_order - q)
        if ev.in_transit is not None:
            self.in_transit = ev.in_transit
        if was_out and self.on_hand is not None and self.on_hand > 0:
            self.quiet = 0.0

    def _add_units(self, t: int, units: int) -> None:
        hour = t - t % HOUR_MS
        if self.hour0 is None or self.hourly is None:
            self.hour0, self.hourly = hour, [units]
            return
        if hour > self.hour0:
            gap = min((hour - self.hour0) // HOUR_MS, SPARK_HOURS)
            self.hourly.extend([0] * gap)
            del self.hourly[:-SPARK_HOURS]
            self.hour0 = hour
        self.hourly[-1] += units

    def recent_units(self, t: int) -> float:
        """Units sold in the trailing hour before ``t`` (interpolating the previous bucket)."""
        if self.hour0 is None or self.hourly is None:
            return 0.0
        hour = t - t % HOUR_MS
        frac = (t - hour) / HOUR_MS
        if hour == self.hour0:
            prev = self.hourly[-2] if len(self.hourly) > 1 else 0
            return self.hourly[-1] + prev * (1 - frac)
        if hour == self.hour0 + HOUR_MS:
            return self.hourly[-1] * (1 - frac)
        return 0.0

    def shed_detail(self) -> None:
        """Drop the hourly detail of an idle item (the model stays)."""
        self.hour0 = self.hourly = None

    # -- positions ----------------------------------------------------------------------------
    def position(self) -> int | None:
        """On hand plus confirmed in transit minus reserved; None while stock is unknown."""
        return None if self.on_hand is None else self.on_hand + self.in_transit - self.reserved

    def expected_units(self, t0: int, hours: float, profile: StoreProfile, prior: float, det: Detection) -> float:
        """Expected units over ``hours`` from ``t0`` (no promotion assumed ahead)."""
        e = profile.exposure(t0, t0 + int(hours * HOUR_MS))
        return self.base_rate(prior, det) * self.basket() * e

    def hours_until(self, units: float, t0: int, profile: StoreProfile, prior: float, det: Detection) -> float | None:
        """Hours from ``t0`` until expected sales reach ``units`` (None beyond two weeks)."""
        per_profile_hour = self.base_rate(prior, det) * self.basket()
        if per_profile_hour <= 0:
            return None
        need, t = units / per_profile_hour, t0
        for _ in range(336):
            step = profile.exposure(t, t + HOUR_MS)
            if step >= need:
                return (t - t0) / HOUR_MS + need / step
            need -= step
            t += HOUR_MS
        return None

    def variance_ratio(self) -> float:
        """Variance over mean of unit demand within a day: compound Poisson baskets, plus over-dispersion."""
        return 1.25 * max(1.0, 2.0 * self.basket() - 1.0)

    def _close_day(self, det: Detection) -> None:
        """Fold the day just ended into the day-level CV² estimate (see :meth:`day_cv2`)."""
        units, expected = self.day_units, self.day_expected
        self.day_units = self.day_expected = 0.0
        keep = math.exp(-24.0 / det.memory_hours)
        self.cv2_w *= keep
        self.cv2_sum *= keep
        if expected <= 0 or self.n_sales < det.min_history_sales:
            return
        ratio = self.variance_ratio()
        weight = (DAY_CV2_PRIOR / (ratio / expected + DAY_CV2_PRIOR)) ** 2
        self.cv2_w += weight
        self.cv2_sum += weight * ((units - expected) ** 2 - ratio * expected) / expected**2

    def day_cv2(self) -> float:
        """Squared coefficient of variation of the day-level demand multiplier, learned per item.

        A day with ``E`` units expected and ``U`` sold (both while in stock) gives the estimate
        ``((U - E)² - r E) / E²`` of it, ``r`` being :meth:`variance_ratio`: unbiased if ``E`` is the
        true mean, and otherwise the model's forecast error counts as variance too. Days are
        weighted by their precision relative to a fully informative day, ``(c / (r / E + c))²`` at
        the prior ``c``: a sparse item's day is mostly Poisson noise and says little, a fast
        mover's says much. The weighted mean, decayed over ``memory_hours`` like the rate, is
        shrunk towards :data:`DAY_CV2_PRIOR` with :data:`DAY_CV2_PRIOR_DAYS` days of weight, and is
        at least 0.
        """
        return max(0.0, (self.cv2_sum + DAY_CV2_PRIOR_DAYS * DAY_CV2_PRIOR) / (self.cv2_w + DAY_CV2_PRIOR_DAYS))

    def demand_moments(
        self, t0: int, hours: float, profile: StoreProfile, prior: float, det: Detection
    ) -> tuple[float, float]:
        """Mean and variance of unit demand over ``hours`` from ``t0`` (no promotion assumed ahead).

        Within a day demand is compound Poisson, variance :meth:`variance_ratio` x mean; a day-level
        multiplier with squared CV ``c`` (:meth:`day_cv2`), shared by a day's hours and independent
        across days, adds ``c x sum_d mean_d²`` over the calendar days the window touches. So a lead
        time within one day carries the whole ``c x mean²``, and ``n`` whole days ``c x mean² / n``:
        the swings of separate days partly cancel.

        Today's multiplier is sensed from today's sales so far, ``U`` units against ``E`` expected
        (:meth:`today`); the rest of today is then expected at that multiplier, with what is left of
        its variance.
        """
        per_profile_hour = self.base_rate(prior, det) * self.basket()
        ratio, cv2 = self.variance_ratio(), self.day_cv2()
        end, a = t0 + int(hours * HOUR_MS), t0
        mean = var = 0.0
        while a < end:
            b = min(end, a - a % DAY_MS + DAY_MS)
            m = per_profile_hour * profile.exposure(a, b)
            mult, c = self.today(ratio, cv2) if a // DAY_MS == self.t // DAY_MS else (1.0, cv2)
            mean += mult * m
            var += ratio * mult * m + c * m * m
            a = b
        return mean, var

    def demand_ceiling(self, hours: float, profile: StoreProfile, prior: float, det: Detection) -> float:
        """A cheap bound above any plausible demand over ``hours``: the peak hour's rate throughout,
        today's multiplier if above 1, and ten standard deviations (see :meth:`demand_moments`)."""
        ratio, cv2 = self.variance_ratio(), self.day_cv2()
        mean = self.base_rate(prior, det) * self.basket() * profile.peak() * hours * max(1.0, self.today(ratio, cv2)[0])
        return mean + 10 * math.sqrt(ratio * mean + cv2 * mean * mean)

    def today(self, ratio: float, cv2: float) -> tuple[float, float]:
        """Today's demand multiplier and its remaining squared CV, given today's sales so far.

        The linear Bayes (credibility) estimate: the multiplier has prior mean 1 and variance
        ``cv2``; ``U`` units sold against ``E`` expected have variance ``ratio x E`` around
        ``multiplier x E``. The multiplier is ``(cv2 U + ratio) / (cv2 E + ratio)`` and its variance
        ``cv2 ratio / (cv2 E + ratio)``: nothing expected yet today leaves the prior, a busy morning
        of a fast mover sets its afternoon.
        """
        den = cv2 * self.day_expected + ratio
        return (cv2 * self.day_units + ratio) / den, cv2 * ratio / den

    # -- detectors ----------------------------------------------------------------------------
    def look(
        self,
        t: int,
        profile: StoreProfile,
        prior: float,
        params: ItemParams | None,
        d: ItemDefaults,
        det: Detection,
        warm: bool = True,
    ) -> Look:
        """The item as the detectors and the replenishment see it at ``t`` (after :meth:`advance` to ``t``).

        ``warm`` says the store has been seen long enough for its profile to mean something.
        """
        return Look(self, t, profile, prior, params, d, det, warm)

    def conditions(self, look: Look, *, stock_changed: bool = True) -> list[Condition]:
        """What the detectors see in ``look``, for the types that can move.

        Only types that are open, or whose statistic crossed its threshold, are evaluated; the
        stock-based types only when ``stock_changed`` (an event) or while open. Until the store is
        warm only OUT_OF_STOCK can hold.
        """
        det, warm = look.det, look.warm
        ep = self.episodes
        opened = {k for k, e in ep.items() if e.open} if ep else ()
        out = []
        if "DEMAND_SPIKE" in opened or (warm and self.s_up >= det.spike_threshold):
            out.append(look.spike("DEMAND_SPIKE" in opened))
        phantom = None
        if "PHANTOM_INVENTORY" in opened or (look.armed and self.quiet >= det.phantom_threshold):
            phantom = look.phantom("PHANTOM_INVENTORY" in opened)
            out.append(phantom)
        if "DEMAND_DROP" in opened or (look.armed and self.s_dn >= det.drop_threshold):
            out.append(look.drop("DEMAND_DROP" in opened, phantom is not None and phantom.active))
        if self.on_hand is not None:
            if (stock_changed and self.out_of_stock()) or "OUT_OF_STOCK" in opened:
                out.append(look.out_of_stock())
            if "STOCKOUT_RISK" in opened or ((stock_changed or self.p_out >= 0.05) and look.risk_possible()):
                out.append(look.stockout_risk("STOCKOUT_RISK" in opened))
            else:
                self.p_out = 0.0
        return out


class Look:
    """One item at one time: the figures its detectors and its replenishment share, each computed once.

    Most looks at an item need none of the costlier figures, so each is computed on first use and
    kept (plain attributes rather than a descriptor, so the class compiles as a native class).
    """

    __slots__ = (
        "item", "t", "profile", "prior", "det", "params", "warm", "armed", "lift", "base", "price", "lead",
        "_intensity", "_exp_rate", "_obs_rate", "_day_rate", "_pace", "_h_phantom", "_ceiling", "_moments",
    )  # fmt: skip

    def __init__(
        self,
        item: ItemState,
        t: int,
        profile: StoreProfile,
        prior: float,
        params: ItemParams | None,
        d: ItemDefaults,
        det: Detection,
        warm: bool,
    ) -> None:
        self.item, self.t, self.profile, self.prior, self.det = item, t, profile, prior, det
        self.params, self.warm = params, warm
        self.armed = warm and item.n_sales >= det.min_history_sales
        self.lift = item.lift(t, det)
        self.base = item.base_rate(prior, det)
        self.price = item_param(params, "unit_price", d.unit_price)
        self.lead = item_param(params, "lead_time_hours", d.lead_time_hours)
        self._intensity: float | None = None
        self._exp_rate: float | None = None
        self._obs_rate: float | None = None
        self._day_rate: float | None = None
        self._pace: float | None = None
        self._h_phantom: float | None = None
        self._ceiling: float | None = None
        self._moments: tuple[float, float] | None = None

    @property
    def intensity(self) -> float:
        if self._intensity is None:
            self._intensity = self.profile.intensity(self.t)
        return self._intensity

    @property
    def open_now(self) -> bool:
        """A closed store (a tenth of the week's mean intensity or less) opens no rate alert."""
        return self.intensity >= CLOSED_INTENSITY

    @property
    def exp_rate(self) -> float:
        """Expected units per hour now."""
        if self._exp_rate is None:
            self._exp_rate = self.base * self.intensity * self.lift * self.item.basket()
        return self._exp_rate

    @property
    def obs_rate(self) -> float:
        """Units sold over the trailing hour."""
        if self._obs_rate is None:
            self._obs_rate = self.item.recent_units(self.t)
        return self._obs_rate

    @property
    def day_rate(self) -> float:
        """Expected units per hour over the next day."""
        if self._day_rate is None:
            self._day_rate = self.item.expected_units(self.t, 24, self.profile, self.prior, self.det) / 24
        return self._day_rate

    @property
    def pace(self) -> float:
        """How much the spike and drop thresholds rise for a fast mover: a fast mover's many chances to
        fluctuate must not buy it more false alarms per day than a slow one."""
        if self._pace is None:
            self._pace = math.log(max(1.0, self.base * 24 / self.det.threshold_rate_per_day))
        return self._pace

    @property
    def h_spike(self) -> float:
        return self.det.spike_threshold + self.pace

    @property
    def h_drop(self) -> float:
        return self.det.drop_threshold + self.pace

    @property
    def h_phantom(self) -> float:
        if self._h_phantom is None:
            per_day = max(self.base * 24, 1e-9)
            self._h_phantom = max(self.det.phantom_threshold, math.log(per_day / self.det.phantom_false_alarms_per_day))
        return self._h_phantom

    @property
    def ceiling(self) -> float:
        """A cheap bound above any plausible demand over the lead time (:meth:`ItemState.demand_ceiling`)."""
        if self._ceiling is None:
            self._ceiling = self.item.demand_ceiling(self.lead, self.profile, self.prior, self.det)
        return self._ceiling

    @property
    def moments(self) -> tuple[float, float]:
        """Mean and variance of unit demand over the lead time from now (:meth:`ItemState.demand_moments`)."""
        if self._moments is None:
            self._moments = self.item.demand_moments(self.t, self.lead, self.profile, self.prior, self.det)
        return self._moments

    def risk_possible(self) -> bool:
        """False when the position is so far above any plausible lead-time demand that the risk is nil."""
        item = self.item
        if not self.armed or (item.on_hand or 0) - item.reserved <= 0:
            return False
        return (item.position() or 0) <= self.ceiling + 1

    def next_look(self, opened: Collection[str]) -> int | None:
        """Milliseconds until time alone could open an alert or end an ``opened`` one (at most a day), or
        None when it cannot: before the detectors are armed, only the item's next sale can.

        The statistics move at most as fast as at the store's peak hour: a phantom or a drop opens no
        sooner than its threshold allows, and an open spike ends no sooner than its evidence can ebb
        away. An empty shelf moves no statistic and opens no drop, nor does a silent one (a phantom
        alert open).
        """
        item, det = self.item, self.det
        per_hour = self.base * self.profile.peak() * self.lift  # fastest the statistics can move
        if per_hour <= 0:
            return None
        hours = 24.0
        spike = "DEMAND_SPIKE" in opened
        if spike:
            hours = min(hours, item.s_up / ((det.spike_ratio - 1.0) * per_hour))
        if item.n_sales < det.min_history_sales:
            return int(hours * HOUR_MS) if spike else None
        if "PHANTOM_INVENTORY" not in opened and not item.out_of_stock():
            if (item.on_hand or 0) > 0:
                hours = min(hours, (det.phantom_threshold - item.quiet) / per_hour)
            if "DEMAND_DROP" not in opened:
                hours = min(hours, (det.drop_threshold - item.s_dn) / ((1 - det.drop_ratio) * per_hour))
        return int(max(hours, 0.0) * HOUR_MS)

    def revenue_ceiling(self, kind: str) -> float:
        """The most revenue at risk a rate alert of ``kind`` can claim while the item stays quiet, at
        today's rates: a spike's trailing-hour sales only ebb, and a drop's shortfall is at most the
        expected day at the peak hour's rate."""
        if kind == "DEMAND_SPIKE":
            return self.obs_rate * self.lead * self.price
        return self.base * self.item.basket() * self.profile.peak() * 24 * self.price

    def _make(
        self, kind: str, active: bool, conf: float, rar: float, template: str, args: tuple, evidence: tuple
    ) -> Condition:
        return Condition(kind, active, conf, self.exp_rate, self.obs_rate, None, rar, template, args, evidence)

    def spike(self, is_open: bool) -> Condition:
        item, det = self.item, self.det
        active = item.p >= det.prior_weight_hours and (item.s_up >= self.h_spike or (is_open and item.s_up > 0))
        promo = ""
        if self.lift > 1:
            promo = f" during promotion {item.promo}, {self.obs_rate / max(self.exp_rate, 1e-9):.1f}x its expected lift"
        return self._make(
            "DEMAND_SPIKE",
            active,
            confidence(item.s_up, det.prior_change_odds),
            max(self.obs_rate - self.exp_rate, 0.0) * self.lead * self.price,
            "Selling {:.1f} units/h against {:.1f} expected{}: more than chance explains (evidence {:.1f}, alarm at "
            "{:.1f}).",
            (self.obs_rate, self.exp_rate, promo, item.s_up, self.h_spike),
            (("cusum", item.s_up), ("threshold", self.h_spike), ("promo_lift", self.lift)),
        )

    def phantom(self, is_open: bool) -> Condition:
        item, det = self.item, self.det
        book = (item.on_hand or 0) - item.reserved
        # an item that was already selling slowly explains a silence better by a drop: judge it
        # at the dropped rate; one that sold normally until it went silent is judged at its own
        silence = item.quiet * (det.drop_ratio if item.slow_at_sale else 1.0)
        opens = silence >= self.h_phantom and self.open_now
        active = self.armed and book > 0 and (opens or (is_open and item.quiet > 0))
        silent_h = (self.t - item.last_sale) / HOUR_MS if item.last_sale is not None else 0.0
        return self._make(
            "PHANTOM_INVENTORY",
            active,
            confidence(item.quiet, det.prior_change_odds),
            self.day_rate * self.lead * self.price,
            "No sale for {:.1f} h while {:.1f} were expected and the books show {} on hand: count the shelf.",
            (silent_h, item.quiet, item.on_hand),
            (
                ("expected_sales_in_run", item.quiet),
                ("p_value", math.exp(-item.quiet)),
                ("threshold", self.h_phantom),
                ("on_hand", float(item.on_hand or 0)),
            ),
        )

    def drop(self, is_open: bool, phantom: bool) -> Condition:
        """A silent run with stock is phantom inventory and an empty shelf a stockout, not a drop."""
        item, det = self.item, self.det
        opens = item.s_dn >= self.h_drop and not phantom and not item.out_of_stock() and self.open_now
        active = self.armed and (opens or (is_open and item.s_dn > 0))
        return self._make(
            "DEMAND_DROP",
            active,
            confidence(item.s_dn, det.prior_change_odds),
            max(self.day_rate - self.obs_rate, 0.0) * 24 * self.price,
            "Selling {:.1f} units/h against {:.1f} expected at this hour: demand has fallen well below normal "
            "(evidence {:.1f}, alarm at {:.1f}).",
            (self.obs_rate, self.exp_rate, item.s_dn, self.h_drop),
            (("cusum", item.s_dn), ("threshold", self.h_drop)),
        )

    def out_of_stock(self) -> Condition:
        item = self.item
        active = item.out_of_stock() and item.n_sales > 0 and self.day_rate > 0
        return Condition(
            "OUT_OF_STOCK",
            active,
            0.95,
            self.exp_rate,
            self.obs_rate,
            0.0,
            self.day_rate * self.lead * self.price,
            "Out of stock ({} on hand, {} reserved) while {:.1f} units/h are expected at this hour and {} over the "
            "next day.",
            (item.on_hand, item.reserved, self.exp_rate, n_units(round(self.day_rate * 24))),
            (("on_hand", float(item.on_hand or 0)), ("in_transit", float(item.in_transit))),
        )

    def stockout_risk(self, is_open: bool) -> Condition:
        """The probability of running out within the lead time (kept as :attr:`ItemState.p_out`).

        Below the alarm and with no open alert it moves nothing, so then only ``confidence`` is
        filled in: most looks at an item with known stock end here.
        """
        item, det = self.item, self.det
        pos = item.position() or 0
        avail = (item.on_hand or 0) - item.reserved
        mean_l, var_l = self.moments
        p_out = demand_tail(mean_l, var_l, pos) if self.armed else 0.0
        item.p_out = p_out
        active = (
            self.armed and avail > 0 and (p_out >= det.stockout_risk or (is_open and p_out >= det.stockout_risk / 2))
        )
        if not active and not is_open:  # it moves no alert: skip the figures and the reason (most looks)
            return Condition("STOCKOUT_RISK", False, p_out)
        hts = item.hours_until(avail, self.t, self.profile, self.prior, det) if active else None
        return Condition(
            "STOCKOUT_RISK",
            active,
            p_out,
            self.exp_rate,
            self.obs_rate,
            hts,
            max(mean_l - pos, self.day_rate) * self.price,
            "{:.0%} chance of running out within the {:g} h lead time: {} in position against {:.1f} expected"
            + ("." if hts is None else "; the shelf empties in about {:.1f} h."),
            (p_out, self.lead, n_units(pos), mean_l) if hts is None else (p_out, self.lead, n_units(pos), mean_l, hts),
            (("position", float(pos)), ("lead_time_demand", mean_l), ("p_stockout", p_out)),
        )


def item_param(params: ItemParams | None, name: str, default: float) -> float:
    """The item's master-data field ``name``, or the policy's ``default`` when it has none."""
    value = getattr(params, name) if params is not None else None
    return default if value is None else value
