"""SIGTERM and SIGINT (Ctrl-C) stop a flow cleanly, in every phase of a run.

The signals are blocked in every thread and taken by one thread of their own (``sigwait``), so they are
acted on even while the main thread waits inside Bytewax, where a Python handler would not run before
the cluster has formed (a process waiting for its peers), and where Ctrl-C would surface as a Rust panic.
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("demandsense.signals")

SIGNALS = {signal.SIGTERM, signal.SIGINT}
UNWIND_S = 5.0
"""Seconds the main thread gets to unwind after an early signal (it may be in a long call into C or Rust)."""
STARTED = threading.Event()
"""Set once the flow's sources are built (the cluster has formed): from then on a stop has work to finish."""


class Interrupted(BaseException):
    """A signal that came before the flow started, raised in the main thread so that its ``with`` blocks unwind."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Stopper:
    """The first signal stops the flow through ``stop``; a second exits now. Before the flow started, the first
    raises :class:`Interrupted` in the main thread when ``unwind_early`` (the demo: its embedded services stop;
    it exits after :data:`UNWIND_S` if they have not), or exits at once (``run``: its main thread may be inside
    Bytewax, waiting for its peers).

    Install it before any other thread starts (native ones too, such as a BLAS pool started by importing numpy):
    threads inherit the blocked signals from the one that starts them.
    """

    def __init__(self, stop: Callable[[], None], *, unwind_early: bool = False) -> None:
        self._stop, self._unwind_early = stop, unwind_early
        self.received: signal.Signals | None = None
        tasks = Path("/proc/self/task")
        if tasks.is_dir() and len(list(tasks.iterdir())) > 1:
            log.warning("signals: other threads started first; a signal may reach one of them and end the process")
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        if unwind_early:  # the handler only runs through interrupt_main: the real signal is blocked everywhere
            signal.signal(signal.SIGTERM, self._interrupted)
        threading.Thread(target=self._wait, name="signals", daemon=True).start()

    def exit_code(self) -> int:
        """0 after a clean stop by SIGTERM (or none), 130 after Ctrl-C."""
        return 130 if self.received == signal.SIGINT else 0

    def _wait(self) -> None:
        while True:
            received = signal.Signals(signal.sigwait(SIGNALS))
            if self.received is not None:
                log.warning("second %s: exiting without a clean shutdown", received.name)
                os._exit(128 + received)
            self.received = received
            if not STARTED.is_set():  # nothing read yet: nothing to finish
                log.info("%s before the flow started: exiting", received.name)
                if not self._unwind_early:
                    os._exit(128 + received)
                _thread.interrupt_main(signal.SIGTERM)  # raised when the main thread next runs Python code
                threading.Timer(UNWIND_S, os._exit, (128 + received,)).start()  # if it does not soon
                continue
            log.info("%s: stopping input; finishing the epoch, flushing outputs, taking a snapshot", received.name)
            self._stop()

    def _interrupted(self, signum: int, frame: object) -> None:
        raise Interrupted(self.received or signum)
