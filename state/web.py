"""A small live page and JSON API over the Redis views (stdlib ``http.server``, no external assets).

Routes: ``/`` (the page; it polls the API every 2 s), ``/api/top?store=S&n=N``, ``/api/alerts?n=N``,
``/api/item/STORE/SKU`` (the view and its recent alerts), ``/api/summary``, ``/healthz``.
A Redis outage answers 503 with a JSON error; the page says so and keeps polling.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.exceptions import RedisError

from state.views import recent_alerts, show, summary, top

log = logging.getLogger(__name__)
MAX_ROWS = 500


class ViewServer(ThreadingHTTPServer):
    """The HTTP server; handlers read Redis through ``client`` under ``prefix``."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], *, client: redis.Redis, prefix: str) -> None:
        super().__init__(address, _Handler)
        self.client = client
        self.prefix = prefix


def serve(client: redis.Redis, host: str = "127.0.0.1", port: int = 8050, *, prefix: str = "ds") -> ViewServer:
    """Start the server in a daemon thread; ``port=0`` picks a free port. Stop it with ``.shutdown()``."""
    server = ViewServer((host, port), client=client, prefix=prefix)
    threading.Thread(target=server.serve_forever, name="demandsense-web", daemon=True).start()
    return server


class _Handler(BaseHTTPRequestHandler):
    server: ViewServer

    def do_GET(self) -> None:
        """Route one GET request."""
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if url.path == "/":
                self._send(HTTPStatus.OK, PAGE.encode(), "text/html; charset=utf-8")
            else:
                status, body = self._api(parts, query)
                self._json(status, body)
        except RedisError as exc:
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"redis unavailable: {exc}"})
        except ValueError as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})

    def _api(self, parts: list[str], query: dict[str, str]) -> tuple[HTTPStatus, Any]:
        client, prefix = self.server.client, self.server.prefix
        match parts:
            case ["healthz"]:
                client.ping()
                return HTTPStatus.OK, {"status": "ok"}
            case ["api", "top"]:
                return HTTPStatus.OK, top(client, query.get("store") or None, _rows(query, 20), prefix=prefix)
            case ["api", "alerts"]:
                return HTTPStatus.OK, recent_alerts(client, _rows(query, 50), prefix=prefix)
            case ["api", "summary"]:
                return HTTPStatus.OK, summary(client, query.get("store") or None, prefix=prefix)
            case ["api", "item", store, sku]:
                item = show(client, store, sku, prefix=prefix)
                if item is None:
                    return HTTPStatus.NOT_FOUND, {"error": f"no view for {store}/{sku}"}
                return HTTPStatus.OK, item | {"alerts": recent_alerts(client, 20, store=store, sku=sku, prefix=prefix)}
        return HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}"}

    def _json(self, status: HTTPStatus, body: Any) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Request lines go to debug logging, not stderr."""
        log.debug("%s " + format, self.address_string(), *args)


def _rows(query: dict[str, str], default: int) -> int:
    n = int(query.get("n", default))
    if not 1 <= n <= MAX_ROWS:
        raise ValueError(f"n must be between 1 and {MAX_ROWS}, got {n}")
    return n


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>demandsense live views</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d2430; background: #f7f8fa; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
  #status { color: #5b6472; font-size: .9rem; }
  #status.down { color: #b3261e; font-weight: 600; }
  table { border-collapse: collapse; width: 100%; background: #fff; box-shadow: 0 1px 2px #0001; }
  th, td { padding: .35rem .6rem; border-bottom: 1px solid #e6e8ec; text-align: left; white-space: nowrap; }
  th { background: #eef0f4; font-weight: 600; font-size: .85rem; white-space: normal; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  td.wrap { white-space: normal; }
  .risk { display: inline-block; min-width: 2.5rem; padding: 0 .3rem; border-radius: 3px; text-align: right; }
  .hi { background: #fbd5d2; } .mid { background: #fde9c3; } .lo { background: #e3efe0; }
  .empty { color: #5b6472; font-style: italic; }
  svg { vertical-align: middle; }
</style>
</head>
<body>
<h1>demandsense &mdash; live demand views</h1>
<div id="status">loading&hellip;</div>
<h2>Top risks <span id="scope"></span></h2>
<table id="top"><thead><tr>
  <th>Store</th><th>SKU</th><th>Risk</th><th>Expected/h</th><th>Observed/h</th><th>On hand</th>
  <th>Position</th><th>Hours to stockout</th><th>Open alerts</th><th>Last 24 h</th><th>Event time</th>
</tr></thead><tbody></tbody></table>
<h2>Recent alerts</h2>
<table id="alerts"><thead><tr>
  <th>Event time</th><th>Store</th><th>SKU</th><th>Type</th><th>Status</th><th>Priority</th>
  <th>Severity</th><th>Reason</th>
</tr></thead><tbody></tbody></table>
<script>
"use strict";
const store = new URLSearchParams(location.search).get("store");
const SVG = "http://www.w3.org/2000/svg";

function fmt(x, digits) { return x === null || x === undefined ? "-" : Number(x).toFixed(digits); }
function iso(ms) { return ms === null || ms === undefined ? "-" : new Date(ms).toISOString(); }

function cell(row, value, cls) {
  const td = row.insertCell();
  if (value instanceof Node) td.appendChild(value); else td.textContent = value;
  if (cls) td.className = cls;
  return td;
}

function sparkline(values) {
  const w = 96, h = 24, svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", h); svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  if (!values.length) return svg;
  const peak = Math.max(1, ...values), step = values.length > 1 ? w / (values.length - 1) : 0;
  const line = document.createElementNS(SVG, "polyline");
  const y = (v) => (h - 2 - (v / peak) * (h - 4)).toFixed(1);
  line.setAttribute("points", values.map((v, i) => `${(i * step).toFixed(1)},${y(v)}`).join(" "));
  line.setAttribute("fill", "none"); line.setAttribute("stroke", "#2f6fde"); line.setAttribute("stroke-width", "1.5");
  const title = document.createElementNS(SVG, "title");
  title.textContent = values.join(", ") + " units/h";
  svg.append(title, line);
  return svg;
}

function riskBadge(risk) {
  const span = document.createElement("span");
  span.className = "risk " + (risk >= 70 ? "hi" : risk >= 40 ? "mid" : "lo");
  span.textContent = fmt(risk, 0);
  return span;
}

function fill(table, rows, columns, emptyText) {
  const body = document.querySelector(`#${table} tbody`);
  body.replaceChildren();
  if (!rows.length) { cell(body.insertRow(), emptyText, "empty").colSpan = columns; return; }
  return body;
}

function renderTop(rows) {
  const body = fill("top", rows, 11, "No items at risk.");
  for (const r of rows) {
    const tr = body.insertRow();
    tr.dataset.item = `${r.store_id}/${r.sku}`;
    cell(tr, r.store_id); cell(tr, r.sku); cell(tr, riskBadge(r.risk), "num");
    cell(tr, fmt(r.expected_rate, 1), "num"); cell(tr, fmt(r.observed_rate, 1), "num");
    cell(tr, fmt(r.on_hand, 0), "num"); cell(tr, fmt(r.position, 0), "num");
    cell(tr, fmt(r.hours_to_stockout, 1), "num"); cell(tr, r.open_alerts.join(", ") || "-", "wrap");
    cell(tr, sparkline(r.hourly_units)); cell(tr, iso(r.event_time));
  }
}

function renderAlerts(rows) {
  const body = fill("alerts", rows, 8, "No alerts yet.");
  for (const a of rows) {
    const tr = body.insertRow();
    cell(tr, iso(a.event_time)); cell(tr, a.store_id); cell(tr, a.sku); cell(tr, a.alert_type);
    cell(tr, a.status); cell(tr, a.priority, "num"); cell(tr, a.severity); cell(tr, a.reason, "wrap");
  }
}

async function getJSON(path) {
  const res = await fetch(path, {cache: "no-store"});
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const [rows, alerts] = await Promise.all([
      getJSON("/api/top" + (store ? "?store=" + encodeURIComponent(store) : "")),
      getJSON("/api/alerts?n=20"),
    ]);
    renderTop(rows); renderAlerts(alerts);
    status.className = ""; status.textContent = "updated " + new Date().toISOString() + " (every 2 s)";
  } catch (err) {
    status.className = "down"; status.textContent = "not updating: " + err.message;
  }
}

document.getElementById("scope").textContent = store ? "(store " + store + ")" : "(all stores)";
poll();
setInterval(poll, 2000);
</script>
</body>
</html>
"""
