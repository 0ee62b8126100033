"""Policy tables from TOML: known keys with their types, clear errors otherwise."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from operators.policy import Policy


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
    ],
)
def test_an_out_of_range_value_is_refused_with_its_key(toml: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        Policy.from_dict(tomllib.loads(toml))


def test_the_example_policy_file_is_the_defaults() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "policy.example.toml"
    assert Policy.from_dict(tomllib.loads(example.read_text())) == Policy()
