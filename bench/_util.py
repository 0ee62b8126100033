"""Shared helpers of the performance benchmarks: machine facts, markdown results, simulated input."""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent

# SimConfig used by the throughput benchmark: 10 stores x 2,000 SKUs; ~68k sale lines and
# inventory events per simulated day plus 20,000 item-params records.
SIM_STORES, SIM_SKUS = 10, 2000
EVENTS_PER_DAY = 68_400


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (or the platform's answer)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": platform.machine(),
        "nproc": str(os.cpu_count()),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "load": load,
    }


def revision() -> str:
    """The commit measured, with ``+changes`` when the work tree differs from it."""
    import subprocess

    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()  # fmt: skip
        status = ["git", "status", "--porcelain", "--untracked-files=no", "--", "flows", "operators", "demandsense",
                  "state"]  # fmt: skip
        dirty = subprocess.run(status, cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + (" + uncommitted changes" if dirty else "")


def machine_line() -> str:
    m = machine()
    return (
        f"Measured {m['date']} on {m['machine']}, nproc {m['nproc']}, {m['cpu']}, Python {m['python']}, "
        f"demandsense at {revision()} (load average at the end: {m['load']}; the machine is shared, so "
        "compare ratios measured in the same run)."
    )


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, title: str, body: str) -> Path:
    """``bench/results/<name>.md`` with a title, the machine line and ``body``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    path.write_text(f"# {title}\n\n{machine_line()}\n\n{body.rstrip()}\n")
    return path


def compiled_install(dest: Path) -> dict[str, str]:
    """demandsense as ``pip install`` builds it (``operators/``, the Avro codecs and validation compiled by mypyc:
    setup.py) into ``dest``; the environment that runs it with ``python -P`` (``-P`` keeps the working directory
    off the path; the source tree comes after ``dest``, for ``bench``)."""
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--upgrade", "--target",
                    str(dest), str(ROOT)], check=True, env={**os.environ, "DEMANDSENSE_COMPILE": "1"})  # fmt: skip
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(dest), str(ROOT)])}


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def fmt_rate(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:,.0f}"


def sim_days(events: int) -> float:
    """Simulated days of the 10 x 2,000 catalogue that give at least ``events`` records."""
    return max(1.0, math.ceil((events - SIM_STORES * SIM_SKUS) / EVENTS_PER_DAY * 4) / 4)


class Timer:
    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.t0
