"""keep_thread_state on Bytewax's worker threads, in a process of its own (a cluster runs its workers on threads
that timely started)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import sys, threading
import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, cluster_main
from demandsense.threadstate import keep_thread_state

local = threading.local()  # lives in the thread state, as Bytewax's and the job's per-thread data do
fresh = []


def step(x):
    if sys.argv[1] == "keep":
        keep_thread_state()
    if not hasattr(local, "seen"):
        local.seen = True
        fresh.append(threading.get_native_id())
    return x


flow = Dataflow("threadstate")
items = op.input("in", flow, TestingSource(range(100), batch_size=1))  # one item per activation
keyed = op.map("step", op.key_on("key", items, lambda x: str(x % 7)), step)
op.inspect("out", op.stateful_map("routed", keyed, lambda state, v: (None, v)), lambda *_: None)
cluster_main(flow, [], 0, worker_count_per_proc=2)
print(len(fresh), len(set(fresh)))
"""


def fresh_thread_states(mode: str) -> tuple[int, int]:
    """How many times the step found a thread state new to it over 100 items, and on how many threads."""
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60, check=True)
    fresh, threads = out.stdout.split()
    return int(fresh), int(threads)


@pytest.mark.parametrize("mode", ["bare", "keep"])
def test_a_worker_thread_keeps_its_thread_state_only_when_told(mode: str) -> None:
    fresh, threads = fresh_thread_states(mode)
    if mode == "keep":
        assert fresh == threads <= 2  # one per worker thread that ran the step, kept for every later item
    else:  # Bytewax makes and drops a thread state per item: what keep_thread_state is for
        assert fresh == 100
