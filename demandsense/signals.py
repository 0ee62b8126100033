"""SIGTERM and SIGINT (Ctrl-C) stop a flow cleanly, in every phase of a run.

The signals are blocked in every thread and taken by one thread of their own (``sigwait``), so they are
acted on even while the main thread waits inside Bytewax, where a Python handler would not run before
the cluster has formed (a process waiting for its peers), and where Ctrl-C would surface as a Rust panic.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable

log = logging.getLogger("demandsense.signals")

SIGNALS = {signal.SIGTERM, signal.SIGINT}
STARTED = threading.Event()
"""Set once the flow's sources are built (the cluster has formed): from then on a stop has work to finish."""


class Stopper:
    """The first signal stops the flow through ``stop``; a second exits now. Before the flow started, the first
    calls ``early`` (the demo: ``_thread.interrupt_main``, so that its embedded services stop), or exits at once.

    Install it before any other thread starts: threads inherit the blocked signals from the one that starts them.
    """

    def __init__(self, stop: Callable[[], None], early: Callable[[], None] | None = None) -> None:
        self._stop, self._early = stop, early
        self.received: signal.Signals | None = None
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
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
                if self._early is None:
                    os._exit(128 + received)
                self._early()
                continue
            log.info("%s: stopping input; finishing the epoch, flushing outputs, taking a snapshot", received.name)
            self._stop()
