"""Errors of demandsense, under one root."""

from __future__ import annotations


class DemandsenseError(Exception):
    """Root of every error demandsense raises on purpose."""


class ConfigError(DemandsenseError):
    """A setting, flag or policy file is wrong. Operator action: fix the named setting."""


class DecodeError(DemandsenseError):
    """Bytes that are not a record of the expected format."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ValidationError(DemandsenseError):
    """A decoded record that breaks the contract (missing field, bad enum, negative quantity...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ServiceUnavailable(DemandsenseError):
    """Kafka or Redis did not answer. Operator action: check the address and that it is up."""
