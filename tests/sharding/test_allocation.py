"""Allocation strategies: least-shards placement, bounded rebalance rounds, role filtering."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from collections.abc import Set as AbstractSet

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casty.errors import ConfigurationError
from casty.sharding.allocation import (
    LeastShardAllocationStrategy,
    RoleFilter,
    ShardAllocationStrategy,
)
from casty.sharding.hashing import shard_id_for

Current = dict[str, set[int]]


def _counts(current: Mapping[str, AbstractSet[int]]) -> list[int]:
    return sorted(len(shards) for shards in current.values())


def _run_rounds(
    strategy: ShardAllocationStrategy[str], current: Current, limit: int, max_rounds: int
) -> int:
    """Play the coordinator: hand off each round's shards, then allocate each anew."""
    all_shards = set().union(*current.values())
    for rounds in range(max_rounds + 1):
        moving = strategy.rebalance(current, set())
        if not moving:
            return rounds
        assert len(moving) <= limit
        assert moving <= all_shards
        # While those handoffs run, no further round starts.
        assert strategy.rebalance(current, moving) == set()
        for shards in current.values():
            shards -= moving
        for shard_id in sorted(moving):
            region = strategy.allocate_shard("requester", shard_id, current)
            assert region is not None
            current[region].add(shard_id)
    raise AssertionError(f"no balance after {max_rounds} rounds: {_counts(current)}")


def test_allocate_picks_the_region_with_fewest_shards() -> None:
    strategy: LeastShardAllocationStrategy[str] = LeastShardAllocationStrategy()
    current = {"a:1": {0, 1, 2}, "b:1": {3}, "c:1": {4, 5}}
    assert strategy.allocate_shard("a:1", 6, current) == "b:1"


def test_allocate_breaks_ties_by_region_key_whatever_the_mapping_order() -> None:
    strategy: LeastShardAllocationStrategy[str] = LeastShardAllocationStrategy()
    forward = {"b:1": {1}, "a:1": {2}, "c:1": {3}}
    backward = dict(reversed(list(forward.items())))
    assert strategy.allocate_shard("c:1", 0, forward) == "a:1"
    assert strategy.allocate_shard("c:1", 0, backward) == "a:1"


def test_allocate_uses_the_given_tie_break_key() -> None:
    age = {"young": 2, "old": 0, "middle": 1}
    strategy = LeastShardAllocationStrategy[str](tie_break=age.__getitem__)
    assert strategy.allocate_shard("young", 0, {"young": set(), "middle": set(), "old": set()}) == (
        "old"
    )


def test_allocate_without_regions_returns_none() -> None:
    strategy: LeastShardAllocationStrategy[str] = LeastShardAllocationStrategy()
    assert strategy.allocate_shard("proxy", 0, {}) is None


def test_1000_entities_over_3_regions_spread_within_1_5x_mean() -> None:
    """The issue's acceptance criterion, at the allocation level: shards allocated on demand."""
    strategy: LeastShardAllocationStrategy[str] = LeastShardAllocationStrategy()
    regions = ["10.0.0.1:25520", "10.0.0.2:25520", "10.0.0.3:25520"]
    current: Current = {region: set() for region in regions}
    home: dict[int, str] = {}
    entities_per_region: Counter[str] = Counter()
    for i in range(1000):
        shard_id = shard_id_for(f"entity-{i}", 256)
        if shard_id not in home:
            region = strategy.allocate_shard(regions[i % 3], shard_id, current)
            assert region is not None
            home[shard_id] = region
            current[region].add(shard_id)
        entities_per_region[home[shard_id]] += 1
    mean = 1000 / 3
    assert set(entities_per_region) == set(regions)
    assert max(entities_per_region.values()) <= 1.5 * mean, entities_per_region
    assert max(_counts(current)) - min(_counts(current)) <= 1


def test_a_joining_region_fills_up_in_bounded_rounds() -> None:
    strategy: LeastShardAllocationStrategy[str] = LeastShardAllocationStrategy(
        rebalance_absolute_limit=20, rebalance_relative_limit=0.1
    )
    current: Current = {"a": set(range(0, 86)), "b": set(range(86, 171)), "c": set(range(171, 256))}
    current["d"] = set()
    before = {region: set(shards) for region, shards in current.items()}
    rounds = _run_rounds(strategy, current, limit=20, max_rounds=10)
    assert rounds == 4  # 64 shards to move, at most 20 per round
    assert _counts(current) == [64, 64, 64, 64]
    moved = sum(len(before[r] - current[r]) for r in ("a", "b", "c"))
    assert moved == 64  # only the newcomer's share moved
    assert current["d"] == (before["a"] | before["b"] | before["c"]) - (
        current["a"] | current["b"] | current["c"]
    )


def test_balanced_allocation_does_not_move() -> None:
    strategy: LeastShardAllocationStrategy[str] = LeastShardAllocationStrategy()
    current = {"a": {0, 1, 2, 3}, "b": {4, 5, 6}, "c": {7, 8, 9}}
    assert strategy.rebalance(current, set()) == set()


def test_region_below_floor_takes_one_shard_from_each_full_region() -> None:
    strategy: LeastShardAllocationStrategy[str] = LeastShardAllocationStrategy()
    # 10 shards over 3 regions: nobody is above ceil (4), but "c" is below floor (3).
    current = {"a": {0, 1, 2, 3}, "b": {4, 5, 6, 7}, "c": {8, 9}}
    moving = strategy.rebalance(current, set())
    assert moving == {0}  # "a" wins the tie; its lowest shard moves
    _run_rounds(strategy, current, limit=1, max_rounds=2)
    assert _counts(current) == [3, 3, 4]


def test_excess_is_taken_from_the_most_loaded_region_first() -> None:
    strategy: LeastShardAllocationStrategy[str] = LeastShardAllocationStrategy(
        rebalance_absolute_limit=3, rebalance_relative_limit=1.0
    )
    current = {"a": set(range(0, 10)), "b": set(range(10, 16)), "c": set()}
    # ceil = 6: only "a" is above it, by 4; 3 may move this round.
    assert strategy.rebalance(current, set()) == {0, 1, 2}


def test_relative_limit_caps_a_round() -> None:
    strategy: LeastShardAllocationStrategy[str] = LeastShardAllocationStrategy(
        rebalance_absolute_limit=1000, rebalance_relative_limit=0.01
    )
    current: Current = {"a": set(range(1000)), "b": set()}
    assert len(strategy.rebalance(current, set())) == 10


def test_rebalance_with_one_region_moves_nothing() -> None:
    strategy: LeastShardAllocationStrategy[str] = LeastShardAllocationStrategy()
    assert strategy.rebalance({"a": set(range(10))}, set()) == set()


@pytest.mark.parametrize(
    ("absolute", "relative"),
    [(0, 0.1), (-1, 0.1), (1.5, 0.1), (20, 0.0), (20, 1.5), (20, -0.1), (20, "0.1")],
)
def test_bad_limits_raise_configuration_error(absolute: int, relative: float) -> None:
    with pytest.raises(ConfigurationError, match="rebalance_"):
        LeastShardAllocationStrategy[str](
            rebalance_absolute_limit=absolute, rebalance_relative_limit=relative
        )


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=60), min_size=2, max_size=6),
    absolute=st.integers(min_value=1, max_value=25),
    relative=st.sampled_from([0.01, 0.1, 0.5, 1.0]),
)
def test_rounds_converge_to_balance_within_limits(
    sizes: list[int], absolute: int, relative: float
) -> None:
    strategy: LeastShardAllocationStrategy[str] = LeastShardAllocationStrategy(
        rebalance_absolute_limit=absolute, rebalance_relative_limit=relative
    )
    current: Current = {}
    next_shard = 0
    for index, size in enumerate(sizes):
        current[f"region-{index}"] = set(range(next_shard, next_shard + size))
        next_shard += size
    limit = max(1, min(absolute, int(relative * next_shard)))
    _run_rounds(strategy, current, limit=limit, max_rounds=next_shard + 1)
    counts = _counts(current)
    assert counts[-1] - counts[0] <= 1
    assert sum(counts) == next_shard


@given(st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=5))
def test_answers_do_not_depend_on_mapping_order(sizes: list[int]) -> None:
    strategy: LeastShardAllocationStrategy[str] = LeastShardAllocationStrategy(
        rebalance_absolute_limit=5, rebalance_relative_limit=1.0
    )
    current: Current = {}
    next_shard = 0
    for index, size in enumerate(sizes):
        current[f"r{index}"] = set(range(next_shard, next_shard + size))
        next_shard += size
    reordered = dict(reversed(list(current.items())))
    assert strategy.rebalance(current, set()) == strategy.rebalance(reordered, set())
    assert strategy.allocate_shard("x", next_shard, current) == strategy.allocate_shard(
        "x", next_shard, reordered
    )


ROLES = {
    "a": frozenset({"worker"}),
    "b": frozenset({"frontend"}),
    "c": frozenset({"worker", "gpu"}),
}


def _role_filter(*roles: str) -> RoleFilter[str]:
    return RoleFilter(
        LeastShardAllocationStrategy[str](), roles=roles, region_roles=ROLES.__getitem__
    )


def test_role_filter_allocates_only_to_regions_with_the_role() -> None:
    strategy = _role_filter("worker")
    current: Current = {"a": set(), "b": set(), "c": set()}
    for shard_id in range(30):
        region = strategy.allocate_shard("b", shard_id, current)
        assert region is not None
        current[region].add(shard_id)
    assert current["b"] == set()
    assert len(current["a"]) == len(current["c"]) == 15


def test_role_filter_requires_every_role() -> None:
    strategy = _role_filter("worker", "gpu")
    assert strategy.allocate_shard("a", 0, {"a": set(), "b": set(), "c": {1, 2, 3}}) == "c"


def test_role_filter_without_eligible_region_returns_none() -> None:
    strategy = _role_filter("storage")
    assert strategy.allocate_shard("a", 0, {"a": set(), "b": set(), "c": set()}) is None


def test_role_filter_without_roles_admits_every_region() -> None:
    strategy = _role_filter()
    assert strategy.allocate_shard("a", 0, {"a": {1}, "b": set(), "c": {2}}) == "b"


def test_role_filter_rebalance_ignores_regions_without_the_role() -> None:
    strategy = _role_filter("worker")
    # "b" (frontend) is empty but ineligible: nothing moves towards it.
    assert strategy.rebalance({"a": {0, 1}, "b": set(), "c": {2, 3}}, set()) == set()
    # "c" joins empty: half of "a"'s shards move to it (one per round: 10% of 4 rounds up to 1).
    current: Current = {"a": {0, 1, 2, 3}, "b": set(), "c": set()}
    assert _run_rounds(strategy, current, limit=1, max_rounds=4) == 2
    assert current == {"a": {2, 3}, "b": set(), "c": {0, 1}}
