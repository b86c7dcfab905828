"""The entity id to shard id function: pinned values, spread, input checks, join compatibility."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casty.errors import ConfigurationError
from casty.sharding import messages
from casty.sharding.hashing import HASH_VERSION, entity_hash, incompatibility, shard_id_for
from casty.sharding.messages import RegisterRegion, ShardEnvelope

# 64-bit values computed once with coreutils (`printf %s ID | b2sum -l 64`), an implementation
# of BLAKE2b independent of Python's hashlib. They must never change while HASH_VERSION is 1.
GOLDEN_HASHES = {
    "": 0xE4A6A0577479B2B4,
    "a": 0x40F89E395B66422F,
    "queue:emails": 0x97971BB8DA67A503,
    "queue:reports": 0xF98AC7AFB5E65DBC,
    "entity-0": 0xB3C5413498A1F510,
    "entity-1": 0x15B0AD1B4B098357,
    "user:42": 0xD9279B7CB3A5B282,
    "ünïcödé-ключ-鍵": 0xDE0B545908211222,
    "🦀": 0x3D081887D0CD1C1C,
}

# (entity id, num_shards, shard id), computed once and written down.
GOLDEN_SHARDS = [
    ("", 256, 180),
    ("a", 256, 47),
    ("queue:emails", 256, 3),
    ("queue:reports", 256, 188),
    ("entity-0", 256, 16),
    ("entity-1", 256, 87),
    ("user:42", 256, 130),
    ("ünïcödé-ключ-鍵", 256, 34),
    ("🦀", 256, 28),
    ("queue:emails", 100, 47),
    ("entity-1", 100, 99),
    ("queue:reports", 7, 3),
    ("user:42", 7, 5),
    ("entity-1", 1000, 999),
    ("🦀", 1000, 932),
    ("queue:emails", 1, 0),
]


def test_hash_version_is_one() -> None:
    assert HASH_VERSION == 1


@pytest.mark.parametrize(("entity_id", "expected"), GOLDEN_HASHES.items())
def test_entity_hash_matches_independent_blake2b(entity_id: str, expected: int) -> None:
    assert entity_hash(entity_id) == expected


@pytest.mark.parametrize(("entity_id", "num_shards", "expected"), GOLDEN_SHARDS)
def test_shard_id_for_matches_pinned_values(entity_id: str, num_shards: int, expected: int) -> None:
    assert shard_id_for(entity_id, num_shards) == expected


def test_spread_of_100_000_ids_over_256_shards_is_even() -> None:
    counts = Counter(shard_id_for(f"entity-{i}", 256) for i in range(100_000))
    assert set(counts) == set(range(256))
    expected = 100_000 / 256
    chi_square = sum((c - expected) ** 2 / expected for c in counts.values())
    # 255 degrees of freedom: mean 255, standard deviation about 22.6; 400 is over 6 sigmas.
    assert chi_square < 400, chi_square
    assert max(counts.values()) < 1.25 * expected
    assert min(counts.values()) > 0.75 * expected


def test_sequential_ids_with_shared_prefix_hit_every_shard_of_a_small_count() -> None:
    counts = Counter(shard_id_for(f"queue:{i}", 16) for i in range(1600))
    assert len(counts) == 16
    assert max(counts.values()) < 1.3 * 100


@given(st.text(), st.integers(min_value=1, max_value=2**32))
def test_shard_id_is_in_range_and_deterministic(entity_id: str, num_shards: int) -> None:
    shard_id = shard_id_for(entity_id, num_shards)
    assert 0 <= shard_id < num_shards
    assert shard_id == shard_id_for(entity_id, num_shards)
    assert shard_id == entity_hash(entity_id) % num_shards


@given(st.text())
def test_entity_hash_is_a_64_bit_unsigned_int(entity_id: str) -> None:
    assert 0 <= entity_hash(entity_id) < 2**64


@pytest.mark.parametrize("num_shards", [0, -1, True, 1.5, "256", None, 2**32 + 1])
def test_bad_num_shards_raises_configuration_error(num_shards: object) -> None:
    with pytest.raises(ConfigurationError, match="num_shards"):
        shard_id_for("a", num_shards)  # type: ignore[arg-type]


@pytest.mark.parametrize("entity_id", [b"bytes", None, 42, "lone \ud800 surrogate"])
def test_bad_entity_id_raises_configuration_error(entity_id: object) -> None:
    with pytest.raises(ConfigurationError, match="entity id") as info:
        shard_id_for(entity_id, 256)  # type: ignore[arg-type]
    assert info.value.__cause__ is not None


def test_matching_settings_are_compatible() -> None:
    assert incompatibility("tasks", num_shards=256, hash_version=1, expected_num_shards=256) is None


def test_other_num_shards_is_refused_with_both_values() -> None:
    reason = incompatibility("tasks", num_shards=128, hash_version=1, expected_num_shards=256)
    assert reason is not None
    assert "'tasks'" in reason
    assert "num_shards=128" in reason
    assert "num_shards=256" in reason


def test_other_hash_version_is_refused_with_both_values() -> None:
    reason = incompatibility(
        "tasks", num_shards=256, hash_version=2, expected_num_shards=256, expected_hash_version=1
    )
    assert reason is not None
    assert "hash version 2" in reason
    assert "cluster's 1" in reason


def test_register_region_carries_this_nodes_hash_version_by_default() -> None:
    message = RegisterRegion(region=None, type_name="tasks", num_shards=256)  # type: ignore[arg-type]
    assert message.hash_version == HASH_VERSION
    assert (message.roles, message.hosted) == ((), ())
    assert (
        incompatibility(
            message.type_name,
            num_shards=message.num_shards,
            hash_version=message.hash_version,
            expected_num_shards=256,
        )
        is None
    )


@pytest.mark.parametrize("name", messages.__all__)
def test_protocol_messages_are_frozen_slotted_dataclasses(name: str) -> None:
    cls: Any = getattr(messages, name)
    if name == "RefLike":
        return
    assert dataclasses.is_dataclass(cls)
    assert cls.__dict__["__dataclass_params__"].frozen
    assert "__slots__" in cls.__dict__
    assert cls.__module__ == "casty.sharding.messages"


def test_shard_envelope_is_an_immutable_value() -> None:
    envelope = ShardEnvelope("queue:emails", ("send", 1))
    assert envelope == ShardEnvelope("queue:emails", ("send", 1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        envelope.entity_id = "other"  # type: ignore[misc]
