"""The throughput benchmark's arithmetic: the rates and ratios it reports from measured runs."""

from __future__ import annotations

from argparse import Namespace

from bench.throughput import Run, render
from demandsense.simulate import SimConfig

TOTAL = 1_000


def report(results: dict[str, list[Run]]) -> str:
    args = Namespace(partitions=4, repeats=len(results["ds1"]))
    return render(results, TOTAL, {"retail.sales.v1": TOTAL}, SimConfig(), args, 0.5, float("nan"), None)


def row(text: str, label: str) -> list[str]:
    """The cells of the table row that starts with ``label``."""
    line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_two_jobs_at_once_count_both_jobs_records() -> None:
    """The pair reads the input twice: 2,000 records in 12.5 s is 160/s, 1.6x one process's 100/s."""
    text = report({"ds1": [Run(10.0, 9.0, 100.0)], "pair": [Run(12.5, 20.0, 200.0)]})
    assert row(text, "2 demandsense jobs at once (1 proc each)")[1:5] == ["160", "160", "12.50", "10000.0"]
    assert row(text, "2 demandsense jobs at once / 1 proc (the ceiling for 2 processes of this job)")[1] == "1.60x"
    assert row(text, "2 jobs at once / 1 proc, each repeat's runs")[1] == "1.60x"


def test_the_cluster_is_judged_against_one_process_and_against_the_pair() -> None:
    runs = {
        "ds1": [Run(10.0, 9.0, 100.0), Run(12.0, 9.0, 100.0)],
        "ds2": [Run(8.0, 11.0, 150.0), Run(6.0, 11.0, 150.0)],
        "pair": [Run(12.5, 20.0, 200.0), Run(12.5, 20.0, 200.0)],
    }
    text = report(runs)
    assert row(text, "demandsense 2 procs / 1 proc")[1:4] == ["1.59x", ">= 1.6x", "**no**"]  # 145.8/s / 91.7/s
    assert row(text, "demandsense 2 procs / 2 jobs at once (as a share of this job's ceiling)")[1] == "91%"
    assert row(text, "demandsense 2 procs / 1 proc, each repeat's runs")[1] == "1.25x / 2.00x"
