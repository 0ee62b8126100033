"""Policy tables from TOML: known keys with their types, clear errors otherwise."""

from __future__ import annotations

import re
import tomllib

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
