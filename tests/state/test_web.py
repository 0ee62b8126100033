"""The live page and JSON API against a real Redis, and the page rendered by headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import urlopen

import pytest

from state.views import ItemView, RedisViews, connect
from state.web import ViewServer, serve

from .test_views import FakeClock, batch, dead_port, make_view

pytestmark = pytest.mark.integration
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def get(server: ViewServer, path: str) -> tuple[int, Any]:
    host, port = server.server_address[:2]
    try:
        with urlopen(f"http://{host}:{port}{path}", timeout=5) as res:
            return res.status, json.loads(res.read())
    except HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture
def written(redis_url: str) -> Iterator[tuple[ViewServer, list[ItemView], list[Any]]]:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    client = connect(redis_url)
    views, alerts = batch()
    views.append(make_view("S001", "C03/slash", risk=20.0))
    assert RedisViews(client=client, prefix=prefix, clock=FakeClock()).write(views, alerts)
    server = serve(client, port=0, prefix=prefix)
    yield server, views, alerts
    server.shutdown()
    server.server_close()


def test_json_endpoints(written: tuple[ViewServer, list[ItemView], list[Any]]) -> None:
    server, views, alerts = written
    assert get(server, "/healthz") == (200, {"status": "ok"})

    status, rows = get(server, "/api/top")
    assert status == 200
    assert [r["sku"] for r in rows] == ["D01-000001", "C03-000123", "C03-000200", "C03/slash", "D01-000002"]
    assert rows[1] == json.loads(json.dumps(asdict(views[0])))
    assert [r["sku"] for r in get(server, "/api/top?store=S002&n=1")[1]] == ["D01-000001"]

    status, got = get(server, "/api/alerts?n=2")
    assert status == 200
    assert [(a["alert_id"], a["status"]) for a in got] == [(a.alert_id, a.status) for a in alerts[:0:-1]]

    status, item = get(server, "/api/item/S001/C03-000123")
    assert status == 200 and item["risk"] == 87.0 and item["hourly_units"] == list(views[0].hourly_units)
    assert [a["status"] for a in item["alerts"]] == ["UPDATE", "OPEN"]
    assert get(server, "/api/item/S001/C03%2Fslash")[1]["sku"] == "C03/slash"
    assert get(server, "/api/item/S001/nope")[0] == 404

    assert get(server, "/api/summary")[1]["stores"] == 2
    assert get(server, "/api/summary?store=S001")[1]["items_at_risk"] == 3
    assert get(server, "/api/top?n=0")[0] == 400
    assert get(server, "/nope")[0] == 404


def test_redis_down_answers_503() -> None:
    server = serve(connect(f"redis://127.0.0.1:{dead_port()}"), port=0)
    try:
        for path in ("/healthz", "/api/top", "/api/alerts", "/api/item/S1/A"):
            status, body = get(server, path)
            assert status == 503 and "redis unavailable" in body["error"]
    finally:
        server.shutdown()
        server.server_close()


def test_page_is_self_contained(written: tuple[ViewServer, list[ItemView], list[Any]]) -> None:
    host, port = written[0].server_address[:2]
    with urlopen(f"http://{host}:{port}/", timeout=5) as res:
        page = res.read().decode()
        assert res.headers["Content-Type"].startswith("text/html")
    assert "/api/top" in page and "/api/alerts" in page and "setInterval(poll, 2000)" in page
    assert "src=" not in page and "href=" not in page  # no external assets


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (apt-get install -y chromium)")
def test_page_renders_items_and_alerts_in_chromium(
    written: tuple[ViewServer, list[ItemView], list[Any]], tmp_path: Path
) -> None:
    server, views, alerts = written
    host, port = server.server_address[:2]
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        f"http://{host}:{port}/",
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    for view in views:
        if view.risk > 0:
            assert f'data-item="{view.store_id}/{view.sku}"' in dom
    for alert in alerts:
        assert alert.reason in dom
    assert "<polyline" in dom  # sparklines drawn
    assert re.search(r'<div id="status"[^>]*>updated ', dom), "the status line should report a fresh poll"


def test_view_on_a_port_in_use_is_one_line(
    written: tuple[ViewServer, list[ItemView], list[Any]], redis_url: str
) -> None:
    port = written[0].server_address[1]
    cmd = [sys.executable, "-m", "demandsense.cli", "view", "--redis-url", redis_url, "--port", str(port)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        f"demandsense view: error: cannot serve the live view on 127.0.0.1:{port}: Address already in use"
    )


def test_view_on_any_free_port_prints_the_port_it_took(redis_url: str) -> None:
    cmd = [sys.executable, "-m", "demandsense.cli", "view", "--redis-url", redis_url, "--port", "0"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        line = proc.stderr.readline()
        url = re.match(r"live view on (http://127\.0\.0\.1:(\d+)/) ", line)
        assert url and url[2] != "0", line
        assert urlopen(url[1], timeout=5).status == 200
    finally:
        proc.kill()
        proc.wait()
