"""Bytewax dataflows: sources, decoding, keyed store state, sinks."""
