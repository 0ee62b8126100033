"""Keeping a Bytewax worker thread's Python thread state for the life of the thread.

In a cluster (several processes, or several workers in one) each Bytewax worker runs on a thread
that timely started, with no Python thread state of its own. Bytewax takes the GIL there through
PyO3, that is ``PyGILState_Ensure``, which on such a thread creates a thread state and deletes it
at the matching release, frame stack included (an mmap and a munmap), every time. Bytewax takes the
GIL for each item it routes, thousands of times a second: a one-process cluster used ~25% more CPU
than the same process run on its main thread (1.7-1.9 s of system time against 0.6; strace: 63,000
mmap and munmap calls against 600, under ``PyGILState_Ensure`` and ``tstate_delete_common``). One
more ``PyGILState_Ensure`` from the thread, never released, keeps its thread state, and every later
one reuses it; the interpreter frees it at exit.
"""

from __future__ import annotations

import ctypes
import threading

_kept = threading.local()  # lives in the thread state: lost whenever that is deleted


def keep_thread_state() -> None:
    """Keep the calling thread's Python thread state until the thread ends (once per thread; on the main
    thread, which keeps its own anyway, it changes nothing)."""
    if getattr(_kept, "done", False):
        return
    ctypes.pythonapi.PyGILState_Ensure()
    _kept.done = True
