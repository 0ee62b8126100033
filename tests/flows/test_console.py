"""The console sink (the demo, `run --print-alerts`) when its reader goes away."""

from __future__ import annotations

import os

from flows import sources
from flows.sinks import ConsoleSink, format_alert
from tests.state.test_views import make_alert


def test_a_closed_pipe_stops_the_flow_instead_of_failing_it() -> None:
    read, write = os.pipe()
    stream = os.fdopen(write, "w")
    part = ConsoleSink(stream).build("print", 0, 1)
    sources.reset()
    try:
        part.write_batch([make_alert("S1", "A")])
        assert format_alert(make_alert("S1", "A")) in os.read(read, 4096).decode()
        os.close(read)  # the reader left (`| head -1`)
        part.write_batch([make_alert("S1", "B")])
        assert sources.STOP.is_set()
        part.write_batch([make_alert("S1", "C")])  # later batches are dropped, not raised
        stream.close()
    finally:
        sources.reset()
