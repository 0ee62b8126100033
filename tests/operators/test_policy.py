"""Policy tables from TOML: known keys with their types, clear errors otherwise."""

from __future__ import annotations

import re
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from operators.policy import Alerting, Detection, Governance, ItemDefaults, Policy

SECTIONS = {"detection": Detection, "items": ItemDefaults, "governance": Governance, "alerts": Alerting}
# decimal keys; a field's type is the string "float" in Python, the class when compiled with mypyc
FLOAT_KEYS = [(name, f.name) for name, kind in SECTIONS.items() for f in fields(kind) if f.type in ("float", float)]


def test_keys_keep_their_types() -> None:
    policy = Policy.from_dict(tomllib.loads("[detection]\nallowed_lateness_s = 0\npartition_progress = true\n"))
    assert policy.detection.allowed_lateness_s == 0.0 and isinstance(policy.detection.allowed_lateness_s, float)
    assert policy.detection.partition_progress is True


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[detection]\npartition_progress = 1\n", "policy key detection.partition_progress must be true or false"),
        ("[detection]\nstream_idle_s = true\n", "policy key detection.stream_idle_s must be a number"),
        ("[detection]\nstream_idle = 1\n", "unknown policy key detection.stream_idle"),
        ("[detecton]\n", "unknown policy section [detecton]"),
        ('max_quantity = "x"\n', "policy key max_quantity must be an integer, got 'x'"),
        ("max_quantity = 1.9\n", "policy key max_quantity must be an integer, got 1.9"),
        ("max_quantity = true\n", "policy key max_quantity must be an integer, got True"),
        ("[items]\npack_size = 1.9\n", "policy key items.pack_size must be an integer, got 1.9"),
        ("[governance]\nmax_auto_qty = 2.5\n", "policy key governance.max_auto_qty must be an integer, got 2.5"),
    ],
)
def test_a_mistyped_or_unknown_key_is_named(toml: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        Policy.from_dict(tomllib.loads(toml))


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("max_quantity = -1\n", "max_quantity must be 1 or more"),
        ("[detection]\nstream_idle_s = -5\n", "detection.stream_idle_s must be above 0"),
        ("[detection]\nwarmup_hours = -1\n", "detection.warmup_hours must be 0 or more"),
        ("[detection]\nmax_items_per_store = 0\n", "detection.max_items_per_store must be above 0"),
        ("[items]\nlead_time_hours = 0\n", "items.lead_time_hours must be in (0, 8784]"),
        ("[items]\nlead_time_hours = 1e6\n", "items.lead_time_hours must be in (0, 8784]"),
        ("[governance]\nstale_hours = -1\n", "governance.stale_hours must be above 0"),
        ("[alerts]\ncooldown_minutes = -10\n", "alerts.cooldown_minutes must be 0 or more"),
        ("[alerts]\nrevenue_scale = 0\n", "alerts.revenue_scale must be above 0"),
        ("max_quantity = 0\n", "max_quantity must be 1 or more, got 0"),
        (
            "[detection]\ntick_minutes = 0.001\n",
            "detection.tick_minutes must be 1 or more (a check a minute), got 0.001",
        ),
        ("[detection]\nspike_ratio = 1\n", "detection.spike_ratio must be above 1, got 1.0"),
        ("[detection]\ndrop_ratio = 1\n", "detection.drop_ratio must be between 0 and 1, got 1.0"),
        ("[items]\nservice_level = 1.5\n", "items.service_level must be between 0 and 1, got 1.5"),
        ("[items]\npack_size = 0\n", "items.pack_size must be 1 or more, got 0"),
        ("[items]\nunit_cost = -1\n", "items.unit_cost must be 0 or more, got -1.0"),
        ("[items]\nmax_qty = -1\nmin_qty = 0\n", "items.max_qty must be 0 or more, got -1"),
        ("[items]\nmin_qty = 30\n", "items.min_qty must be between 0 and items.max_qty (24), got 30"),
        ("[governance]\nmax_auto_qty = -5\n", "governance.max_auto_qty must be 0 or more, got -5"),
        ("[governance]\nmax_auto_value = -1\n", "governance.max_auto_value must be 0 or more, got -1.0"),
    ],
)
def test_an_out_of_range_value_is_refused_with_its_key(toml: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        Policy.from_dict(tomllib.loads(toml))


@pytest.mark.parametrize(("section", "key"), FLOAT_KEYS)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_a_value_that_is_not_finite_is_refused_with_its_key(section: str, key: str, value: str) -> None:
    """inf passed the "above 0" checks, and an infinite review cycle crashed the flow (integer keys refuse it as a
    float)."""
    with pytest.raises(ValueError, match="^" + re.escape(f"{section}.{key} must be ") + ".*, got " + value):
        Policy.from_dict(tomllib.loads(f"[{section}]\n{key} = {value}\n"))


def test_the_example_policy_file_is_the_defaults() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "policy.example.toml"
    assert Policy.from_dict(tomllib.loads(example.read_text())) == Policy()
