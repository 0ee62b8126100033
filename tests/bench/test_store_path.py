"""bench/store_path.py: it drives the flow's own store path and prints repeatable outputs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.store_path import callgrind_total

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_pure_run_prints_its_cost_outputs_and_a_digest_that_repeats() -> None:
    cmd = [sys.executable, "-m", "bench.store_path", "--pure", "--events", "1", "--repeats", "2"]
    runs = [subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:]
    out = runs[0].stdout
    assert re.search(r"^CPU µs/record: \d+\.\d\d \(best of 2", out, re.M), out
    counts = dict((k, int(v.replace(",", ""))) for v, k in re.findall(r"([\d,]+) (alerts|triggers|views)", out))
    assert counts["alerts"] > 0 and counts["triggers"] > 0 and counts["views"] > 0, out
    digests = [re.search(r"^digest: ([0-9a-f]{12})$", r.stdout, re.M) for r in runs]
    assert all(digests) and digests[0][1] == digests[1][1]  # type: ignore[index]


def test_the_instruction_total_is_read_from_callgrinds_summary(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("events: Ir\nfl=x\n1 5\nsummary: 123456789\ntotals: 123456789\n")
    assert callgrind_total(tmp_path / "out") == 123_456_789
