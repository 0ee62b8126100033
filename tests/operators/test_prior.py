"""Sparse items borrow strength from their store and category."""

from __future__ import annotations

from operators.events import ItemParams
from operators.policy import Policy
from operators.store import StoreState
from tests.operators import DAY_MS, T0, Stream, is_open


def _store_with_categories() -> StoreState:
    """Two categories: FAST items sell 20 lines an hour, SLOW ones 1; NEW-F and NEW-S have no sales yet."""
    s = Stream(seed=3)
    rates = {"F1": 20.0, "F2": 20.0, "S1": 1.0, "S2": 1.0}
    s.sales(list(rates), T0, T0 + 3 * DAY_MS, lambda sku, t: rates[sku] if is_open(t) else 0.0)
    params = [
        ItemParams("S1", sku, category="FAST" if sku.startswith(("F", "NEW-F")) else "SLOW")
        for sku in (*rates, "NEW-F", "NEW-S")
    ]
    state = StoreState("S1")
    state.on_events([*params, *s.ordered()], Policy())
    state.flush(Policy())
    return state


def test_a_new_item_borrows_its_categorys_rate() -> None:
    state = _store_with_categories()
    fast, slow = state.prior("NEW-F"), state.prior("NEW-S")
    assert fast > 5 * slow
    # per item and hour of the week: the category's mean rate, around 20 x 14/24 for the fast one
    assert 6 < fast < 18 and 0.3 < slow < 0.9


def test_an_item_without_a_category_borrows_the_stores_average() -> None:
    state = _store_with_categories()
    assert state.prior("UNKNOWN") == state.profile.mean_rate() / len(state.items)
    assert state.prior("NEW-S") < state.prior("UNKNOWN") < state.prior("NEW-F")


def test_changing_an_items_category_moves_it() -> None:
    state = _store_with_categories()
    before = dict(state.category_items)
    state.on_events([ItemParams("S1", "S1", category="FAST")], Policy())
    assert state.category_items["FAST"] == before["FAST"] + 1 and state.category_items["SLOW"] == before["SLOW"] - 1
