"""`ReplicationConfig` validation."""

from __future__ import annotations

import dataclasses

import pytest

from casty.errors import ConfigurationError
from casty.replication import ReplicationConfig


def test_defaults_and_float_timeout() -> None:
    config = ReplicationConfig(replicas=2, min_acks=1, ack_timeout=3)
    assert (config.replicas, config.min_acks, config.ack_timeout) == (2, 1, 3.0)
    assert type(config.ack_timeout) is float
    assert ReplicationConfig() == ReplicationConfig(replicas=1, min_acks=1, ack_timeout=2.0)


def test_is_frozen() -> None:
    config = ReplicationConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.replicas = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"replicas": 1, "min_acks": 2}, "min_acks"),
        ({"replicas": -1, "min_acks": 0}, "replicas"),
        ({"replicas": 1.0}, "replicas"),
        ({"min_acks": -1}, "min_acks"),
        ({"ack_timeout": 0}, "ack_timeout"),
        ({"ack_timeout": float("inf")}, "ack_timeout"),
        ({"ack_timeout": True}, "ack_timeout"),
    ],
)
def test_rejects_bad_values(options: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        ReplicationConfig(**options)  # type: ignore[arg-type]


def test_min_acks_zero_is_allowed() -> None:
    assert ReplicationConfig(replicas=0, min_acks=0).replicas == 0
