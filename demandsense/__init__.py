"""demandsense: streaming demand sensing for retail."""

__version__ = "0.1.0"
