"""Plain-text tables for ``demandsense top`` and ``demandsense show`` (pure: dicts in, text out)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from demandsense.serde import iso_from_ms

SPARK_LEVELS = "▁▂▃▄▅▆▇█"
Row = Mapping[str, Any]


def sparkline(values: Sequence[int]) -> str:
    """One block per value, scaled from zero to the largest value."""
    peak = max(values, default=0)
    if peak <= 0:
        return SPARK_LEVELS[0] * len(values)
    top_level = len(SPARK_LEVELS) - 1
    return "".join(SPARK_LEVELS[round(max(v, 0) / peak * top_level)] for v in values)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _int(value: int | None) -> str:
    return "-" if value is None else str(value)


def _time(ms: int | None) -> str:
    return "-" if ms is None else iso_from_ms(ms)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    """Fixed-width columns two spaces apart; column indexes in ``right`` are right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


_TOP_COLUMNS: list[tuple[str, Callable[[Row], str]]] = [
    ("STORE", lambda r: r["store_id"]),
    ("SKU", lambda r: r["sku"]),
    ("RISK", lambda r: _num(r["risk"], 0)),
    ("EXP/H", lambda r: _num(r["expected_rate"])),
    ("OBS/H", lambda r: _num(r["observed_rate"])),
    ("ON HAND", lambda r: _int(r["on_hand"])),
    ("POSITION", lambda r: _int(r["position"])),
    ("H TO OUT", lambda r: _num(r["hours_to_stockout"])),
    ("OPEN ALERTS", lambda r: ",".join(r["open_alerts"]) or "-"),
    ("LAST 24H", lambda r: sparkline(r["hourly_units"])),
    ("EVENT TIME", lambda r: _time(r["event_time"])),
]


def format_top(rows: Sequence[Row]) -> str:
    """The ranked items (as returned by :func:`state.views.top`) as a table."""
    if not rows:
        return "No items at risk."
    headers = ["#", *(name for name, _ in _TOP_COLUMNS)]
    body = [[str(i), *(cell(r) for _, cell in _TOP_COLUMNS)] for i, r in enumerate(rows, 1)]
    return _table(headers, body, right={0, 3, 4, 5, 6, 7, 8})


def format_item(item: Row, alerts: Sequence[Row]) -> str:
    """One item's view (from :func:`state.views.show`) and its recent alerts."""
    units = list(item["hourly_units"])
    trend = f"{sparkline(units)}  ({len(units)} h, max {max(units)} units/h)" if units else "-"
    last = "-" if item["last_alert_type"] is None else f"{item['last_alert_type']} at {_time(item['last_alert_time'])}"
    facts = [
        ("event time", _time(item["event_time"])),
        ("risk", _num(item["risk"], 0)),
        ("expected rate", f"{_num(item['expected_rate'])} units/h"),
        ("observed rate", f"{_num(item['observed_rate'])} units/h (last hour)"),
        ("on hand", _int(item["on_hand"])),
        ("position", f"{_int(item['position'])} (on hand + in transit - reserved)"),
        ("hours to stockout", _num(item["hours_to_stockout"])),
        ("open alerts", ", ".join(item["open_alerts"]) or "-"),
        ("last alert", last),
        ("last 24h", trend),
    ]
    width = max(len(k) for k, _ in facts)
    lines = [f"Item {item['store_id']} / {item['sku']}", *(f"  {k.ljust(width)}  {v}" for k, v in facts), ""]
    return "\n".join(lines + [_format_alerts(alerts)])


def _format_alerts(alerts: Sequence[Row]) -> str:
    if not alerts:
        return "No recent alerts."
    headers = ["EVENT TIME", "TYPE", "STATUS", "PRIORITY", "SEVERITY", "REASON"]
    body = [
        [_time(a["event_time"]), a["alert_type"], a["status"], str(a["priority"]), a["severity"], a["reason"]]
        for a in alerts
    ]
    return "Recent alerts\n" + _table(headers, body, right={3})
