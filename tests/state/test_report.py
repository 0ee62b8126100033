"""The text tables of ``demandsense top`` and ``show`` (pure, no Redis)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from state.report import format_item, format_top, sparkline

T0_MS = 1_772_438_400_000  # 2026-03-02T08:00:00Z


def item(sku: str = "C03-000123", **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "store_id": "S001",
        "sku": sku,
        "event_time": T0_MS,
        "expected_rate": 4.5,
        "observed_rate": 12.75,
        "on_hand": 7,
        "position": 19,
        "hours_to_stockout": 0.57,
        "risk": 87.0,
        "open_alerts": ["DEMAND_SPIKE", "STOCKOUT_RISK"],
        "last_alert_type": "STOCKOUT_RISK",
        "last_alert_time": T0_MS - 60_000,
        "hourly_units": [0, 1, 2, 4, 8],
    }
    return base | kw


def alert(reason: str, **kw: Any) -> dict[str, Any]:
    base = {
        "id": "1-0",
        "event_time": T0_MS,
        "alert_type": "DEMAND_SPIKE",
        "status": "OPEN",
        "priority": 80,
        "severity": "HIGH",
        "reason": reason,
    }
    return base | kw


def test_sparkline_scales_from_zero_to_peak() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([5, 10]) == "▅█"
    assert sparkline([0, 0, 0]) == "▁▁▁"
    assert sparkline([]) == ""


def test_format_top_aligns_columns() -> None:
    rows = [item(), item("D01-1", risk=9.5, on_hand=None, hours_to_stockout=None, open_alerts=[], hourly_units=[])]
    lines = format_top(rows).splitlines()
    header = "# STORE SKU RISK EXP/H OBS/H ON HAND POSITION H TO OUT OPEN ALERTS LAST 24H EVENT TIME"
    assert lines[0].split() == header.split()
    assert set(lines[1]) == {"-", " "}
    first, second = lines[2], lines[3]
    assert first.split()[:9] == ["1", "S001", "C03-000123", "87", "4.5", "12.8", "7", "19", "0.6"]
    assert "DEMAND_SPIKE,STOCKOUT_RISK" in first and "▁▂▃▅█" in first and "2026-03-02T08:00:00.000Z" in first
    assert second.split()[:10] == ["2", "S001", "D01-1", "10", "4.5", "12.8", "-", "19", "-", "-"]
    # fixed width: each column starts at the same offset on every line
    for header in ("RISK", "OPEN ALERTS", "EVENT TIME"):
        at = lines[0].index(header)
        assert lines[1][at - 1] == " " and lines[1][at] == "-"
    assert first.index("2026-") == second.index("2026-") == lines[0].index("EVENT TIME")


def test_format_top_empty() -> None:
    assert format_top([]) == "No items at risk."


def test_format_item_shows_view_and_alerts() -> None:
    text = format_item(item(), [alert("Sales run at 2.7x", status="UPDATE"), alert("Sales run at 2.1x")])
    assert text.startswith("Item S001 / C03-000123\n")
    assert "  hours to stockout  0.6" in text
    assert "  last alert         STOCKOUT_RISK at 2026-03-02T07:59:00.000Z" in text
    assert "▁▂▃▅█  (5 h, max 8 units/h)" in text
    table = text.split("Recent alerts\n")[1].splitlines()
    assert table[0].split() == ["EVENT", "TIME", "TYPE", "STATUS", "PRIORITY", "SEVERITY", "REASON"]
    assert table[2].endswith("Sales run at 2.7x") and "UPDATE" in table[2]
    assert table[3].endswith("Sales run at 2.1x")


def test_format_item_without_history() -> None:
    bare = item(on_hand=None, position=None, hours_to_stockout=None, open_alerts=[], hourly_units=[])
    text = format_item(bare | {"last_alert_type": None, "last_alert_time": None}, [])
    assert "  last 24h           -" in text and "  last alert         -" in text
    assert text.endswith("No recent alerts.")


def test_accepts_rows_from_item_views() -> None:
    from state.views import ItemView

    view = ItemView("S9", "X", T0_MS, 1.0, 2.0, None, None, None, 3.0, (), None, None, (1, 2))
    assert "S9" in format_top([asdict(view)])
    assert "Item S9 / X" in format_item(asdict(view), [])
