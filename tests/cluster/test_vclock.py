"""Vector clock laws: merge is a join (commutative, associative, idempotent), compare agrees."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casty.cluster.vclock import Ordering, VectorClock
from casty.errors import ConfigurationError

NODES = ["a", "b", "c", "d"]
clocks = st.dictionaries(st.sampled_from(NODES), st.integers(0, 5)).map(VectorClock)


def _le(x: VectorClock, y: VectorClock) -> bool:
    return all(x.get(n) <= y.get(n) for n in set(x) | set(y))


@given(clocks, clocks)
def test_merge_is_commutative(x: VectorClock, y: VectorClock) -> None:
    assert x.merge(y) == y.merge(x)


@given(clocks, clocks, clocks)
def test_merge_is_associative(x: VectorClock, y: VectorClock, z: VectorClock) -> None:
    assert x.merge(y).merge(z) == x.merge(y.merge(z))


@given(clocks)
def test_merge_is_idempotent(x: VectorClock) -> None:
    assert x.merge(x) == x


@given(clocks, clocks)
def test_merge_is_an_upper_bound_of_both(x: VectorClock, y: VectorClock) -> None:
    merged = x.merge(y)
    assert x.compare(merged) in (Ordering.BEFORE, Ordering.SAME)
    assert y.compare(merged) in (Ordering.BEFORE, Ordering.SAME)


@given(clocks, clocks)
def test_compare_matches_the_pointwise_order(x: VectorClock, y: VectorClock) -> None:
    le, ge = _le(x, y), _le(y, x)
    expected = {
        (True, True): Ordering.SAME,
        (True, False): Ordering.BEFORE,
        (False, True): Ordering.AFTER,
        (False, False): Ordering.CONCURRENT,
    }[(le, ge)]
    assert x.compare(y) is expected


@given(clocks, clocks)
def test_compare_is_antisymmetric(x: VectorClock, y: VectorClock) -> None:
    mirror = {
        Ordering.SAME: Ordering.SAME,
        Ordering.BEFORE: Ordering.AFTER,
        Ordering.AFTER: Ordering.BEFORE,
        Ordering.CONCURRENT: Ordering.CONCURRENT,
    }
    assert y.compare(x) is mirror[x.compare(y)]


@given(clocks, st.sampled_from(NODES))
def test_increment_moves_strictly_after(x: VectorClock, n: str) -> None:
    bumped = x.increment(n)
    assert bumped.compare(x) is Ordering.AFTER
    assert bumped.get(n) == x.get(n) + 1


def test_concurrent_increments_are_concurrent_and_merge_after_both() -> None:
    base = VectorClock().increment("a")
    left, right = base.increment("b"), base.increment("c")
    assert left.compare(right) is Ordering.CONCURRENT
    merged = left.merge(right)
    assert merged.compare(left) is Ordering.AFTER
    assert merged.compare(right) is Ordering.AFTER
    assert dict(merged.versions) == {"a": 1, "b": 1, "c": 1}


@given(clocks, st.sets(st.sampled_from(NODES)))
def test_prune_drops_exactly_the_given_nodes(x: VectorClock, gone: set[str]) -> None:
    pruned = x.prune(gone)
    assert set(pruned) == set(x) - gone
    assert all(pruned.get(n) == x.get(n) for n in pruned)


def test_zero_entries_are_dropped_so_equal_clocks_are_equal_and_hash_alike() -> None:
    assert VectorClock({"a": 0, "b": 2}) == VectorClock({"b": 2})
    assert hash(VectorClock({"a": 0, "b": 2})) == hash(VectorClock({"b": 2}))
    assert len(VectorClock({"a": 0})) == 0


@pytest.mark.parametrize("bad", [{"a": -1}, {"a": True}, {"a": 1.5}, {1: 1}])
def test_invalid_entries_are_refused(bad: dict[object, object]) -> None:
    with pytest.raises(ConfigurationError):
        VectorClock(bad)  # type: ignore[arg-type]
