"""demandsense.signals in a process of its own: what the first and second signal do, before and after the start."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from demandsense.signals import UNWIND_S

SCRIPT = """
import sys, threading, time
from demandsense.signals import STARTED, Interrupted, Stopper

stopper = Stopper(lambda: print("stop requested", flush=True), unwind_early=sys.argv[1] == "unwind")
if sys.argv[2] == "started":
    STARTED.set()


def ready_once_asleep(tid: int) -> None:  # "ready" only once the main thread is inside its sleep, not before it
    deadline = time.monotonic() + 5  # a kernel that hides wchan: ready after 5 s, when the sleep has surely begun
    while "nanosleep" not in open(f"/proc/self/task/{tid}/wchan").read() and time.monotonic() < deadline:
        time.sleep(0.01)
    print("ready", flush=True)


try:
    if sys.argv[2] == "in-c":
        threading.Thread(target=ready_once_asleep, args=(threading.get_native_id(),)).start()
        time.sleep(30)  # one long call: Python code does not run to raise Interrupted
    print("ready", flush=True)
    while True:  # Python at work, as the demo's main thread is before its flow starts
        time.sleep(0.05)
except Interrupted as exc:
    print("unwound", flush=True)
    sys.exit(128 + exc.signum)
"""


def _start(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize(("mode", "unwound"), [("unwind", True), ("exit", False)])
def test_a_signal_before_the_start_exits_with_its_code(sig: signal.Signals, mode: str, unwound: bool) -> None:
    proc = _start(mode, "early")
    proc.send_signal(sig)
    assert proc.wait(10) == 128 + sig
    assert ("unwound" in proc.stdout.read()) == unwound  # the demo's `with` blocks run; run's process just ends


def test_after_the_start_the_first_signal_asks_for_a_stop_and_the_second_exits() -> None:
    proc = _start("exit", "started")
    proc.send_signal(signal.SIGINT)
    assert proc.stdout.readline() == "stop requested\n"
    assert proc.poll() is None, "a stop lets the flow finish"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 128 + signal.SIGTERM


def test_an_early_signal_ends_the_process_when_the_main_thread_cannot_unwind() -> None:
    proc = _start("unwind", "in-c")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(UNWIND_S + 10) == 128 + signal.SIGTERM
    assert "unwound" not in proc.stdout.read()
