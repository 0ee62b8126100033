"""The domain math of demandsense: pure, deterministic, no I/O.

Events come in as the typed records of :mod:`operators.events`; time comes with them (epoch
milliseconds), never from the wall clock, so every decision can be unit-tested and replayed.
"""
