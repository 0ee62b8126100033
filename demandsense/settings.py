"""Settings read at the entry point: flags with ``DEMANDSENSE_*`` environment defaults, the policy file."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from demandsense.errors import ConfigError
from operators.policy import Policy


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
    ssl_key_password: str | None = None,
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
        "ssl.key.password": ssl_key_password,
    }
    conf.update({k: v for k, v in optional.items() if v})
    return conf


KAFKA_ENV = {
    "security_protocol": "KAFKA_SECURITY_PROTOCOL",
    "sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "sasl_username": "KAFKA_SASL_USERNAME",
    "sasl_password": "KAFKA_SASL_PASSWORD",
    "ssl_ca_location": "KAFKA_SSL_CA_LOCATION",
    "ssl_certificate_location": "KAFKA_SSL_CERTIFICATE_LOCATION",
    "ssl_key_location": "KAFKA_SSL_KEY_LOCATION",
    "ssl_key_password": "KAFKA_SSL_KEY_PASSWORD",
}


def kafka_config_from_env(bootstrap_servers: str, group_id: str = "demandsense") -> dict[str, str]:
    """:func:`kafka_config` with the security settings from ``DEMANDSENSE_KAFKA_*`` (as the Helm chart sets them)."""
    return kafka_config(bootstrap_servers, group_id=group_id, **{k: env(name) for k, name in KAFKA_ENV.items()})


def librdkafka_overrides(role: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """librdkafka settings of the ``role`` (``PRODUCER`` or ``CONSUMER``) from ``DEMANDSENSE_<ROLE>_<NAME>``.

    ``<NAME>`` is the property upper-cased with dots as underscores:
    ``DEMANDSENSE_PRODUCER_MESSAGE_TIMEOUT_MS=60000`` sets the sink's ``message.timeout.ms``,
    ``DEMANDSENSE_CONSUMER_FETCH_WAIT_MAX_MS=500`` the input's ``fetch.wait.max.ms``. librdkafka
    refuses unknown names when the client is built.
    """
    prefix = f"DEMANDSENSE_{role}_"
    environ = os.environ if environ is None else environ
    return {
        k.removeprefix(prefix).lower().replace("_", "."): v
        for k, v in environ.items()
        if k.startswith(prefix) and len(k) > len(prefix)
    }


def delivery_retries(environ: dict[str, str] | None = None) -> int:
    """How often the Kafka sink re-produces a record whose delivery failed (``DEMANDSENSE_DELIVERY_RETRIES``, 8)."""
    raw = (os.environ if environ is None else environ).get("DEMANDSENSE_DELIVERY_RETRIES", "8")
    try:
        n = int(raw)
    except ValueError:
        raise ConfigError(f"DEMANDSENSE_DELIVERY_RETRIES must be an integer, got {raw!r}") from None
    if n < 0:
        raise ConfigError(f"DEMANDSENSE_DELIVERY_RETRIES must be 0 or more, got {n}")
    return n
