"""Settings read at the entry point: flags with ``DEMANDSENSE_*`` environment defaults, the policy file."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from demandsense.errors import ConfigError
from operators.policy import Policy

SECRET_KEYS = ("sasl.password", "ssl.key.password")


def env(name: str, default: str | None = None) -> str | None:
    """``DEMANDSENSE_<NAME>`` from the environment."""
    return os.environ.get(f"DEMANDSENSE_{name}", default)


def load_policy(path: str | Path | None) -> Policy:
    """The policy TOML at ``path`` (defaults when None); one clear error when it is wrong."""
    if path is None:
        return Policy()
    p = Path(path)
    try:
        return Policy.from_dict(tomllib.loads(p.read_text()))
    except FileNotFoundError as exc:
        raise ConfigError(f"policy file {p} does not exist") from exc
    except (tomllib.TOMLDecodeError, ValueError, TypeError) as exc:
        raise ConfigError(f"policy file {p}: {exc}") from exc


def kafka_config(
    bootstrap_servers: str,
    *,
    security_protocol: str | None = None,
    sasl_mechanism: str | None = None,
    sasl_username: str | None = None,
    sasl_password: str | None = None,
    ssl_ca_location: str | None = None,
    ssl_certificate_location: str | None = None,
    ssl_key_location: str | None = None,
    group_id: str = "demandsense",
) -> dict[str, str]:
    """librdkafka settings for consumers and producers (SASL/SCRAM and mTLS included)."""
    conf = {"bootstrap.servers": bootstrap_servers, "group.id": group_id}
    optional = {
        "security.protocol": security_protocol,
        "sasl.mechanism": sasl_mechanism,
        "sasl.username": sasl_username,
        "sasl.password": sasl_password,
        "ssl.ca.location": ssl_ca_location,
        "ssl.certificate.location": ssl_certificate_location,
        "ssl.key.location": ssl_key_location,
    }
    conf.update({k: v for k, v in optional.items() if v})
    return conf


def redacted(conf: dict[str, str]) -> dict[str, str]:
    """A copy safe to log: secrets replaced by ``**********``."""
    return {k: ("**********" if k in SECRET_KEYS else v) for k, v in conf.items()}
