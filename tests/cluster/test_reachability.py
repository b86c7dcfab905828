"""Per-observer reachability: only observers change their rows; merges keep the newest row."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casty.abc import Address
from casty.cluster.member import UniqueAddress
from casty.cluster.reachability import Reachability, ReachabilityStatus

R = ReachabilityStatus


def node(port: int) -> UniqueAddress:
    return UniqueAddress(Address("10.0.0.1", port), 1)


A, B, C, D = node(1), node(2), node(3), node(4)
ALL = [A, B, C, D]


def test_unreachability_is_per_observer() -> None:
    r = Reachability().unreachable(A, C)
    assert r.status(A, C) is R.UNREACHABLE
    assert r.status(B, C) is R.REACHABLE
    assert not r.is_reachable(C) and r.is_reachable_by(B, C)
    assert r.all_unreachable_or_terminated() == {C}
    assert r.observers_of(C) == {A}
    assert r.version(A) == 1 and r.version(B) == 0


def test_changes_bump_the_observer_version_and_repeats_are_no_ops() -> None:
    r = Reachability().unreachable(A, C)
    assert r.unreachable(A, C) is r
    r2 = r.reachable(A, C)
    assert r2.version(A) == 2 and r2.is_all_reachable
    assert r2.reachable(A, C) is r2


def test_aggregated_status_is_the_worst_observation() -> None:
    r = Reachability().unreachable(A, C).terminated(B, C)
    assert r.aggregated_status(C) is R.TERMINATED
    assert r.aggregated_status(D) is R.REACHABLE


def test_terminated_is_final() -> None:
    r = Reachability().terminated(A, C)
    assert r.reachable(A, C) is r
    assert r.unreachable(A, C) is r


def test_an_all_reachable_row_is_dropped_but_its_version_stays() -> None:
    r = Reachability().unreachable(A, C).unreachable(A, D).reachable(A, C).reachable(A, D)
    assert list(r.rows()) == []
    assert r.version(A) == 4


def test_merge_keeps_the_row_with_the_higher_version() -> None:
    old = Reachability().unreachable(A, C)
    new = old.reachable(A, C)  # A saw C come back
    assert old.merge(ALL, new) == new
    assert new.merge(ALL, old) == new


def test_merge_combines_different_observers() -> None:
    x = Reachability().unreachable(A, C)
    y = Reachability().unreachable(B, D)
    merged = x.merge(ALL, y)
    assert merged.status(A, C) is R.UNREACHABLE and merged.status(B, D) is R.UNREACHABLE


def test_merge_drops_observers_and_subjects_outside_the_members() -> None:
    r = Reachability().unreachable(A, C).unreachable(A, D).unreachable(D, B)
    merged = r.merge([A, B, C], Reachability())
    assert merged.status(A, C) is R.UNREACHABLE
    assert merged.status(A, D) is R.REACHABLE
    assert merged.version(D) == 0


def test_remove_forgets_nodes_as_observers_and_subjects() -> None:
    r = Reachability().unreachable(A, C).unreachable(C, B).unreachable(B, A)
    removed = r.remove([C])
    assert removed.status(A, C) is R.REACHABLE
    assert removed.version(C) == 0
    assert removed.status(B, A) is R.UNREACHABLE


def test_remove_observers_keeps_other_observations() -> None:
    r = Reachability().unreachable(A, C).unreachable(B, C)
    assert r.remove_observers([A]).observers_of(C) == {B}


# Random histories: each observer changes only its own row, as in a real cluster.
changes = st.lists(
    st.tuples(st.sampled_from(ALL), st.sampled_from(ALL), st.sampled_from(list(R))), max_size=12
)


def _apply(base: Reachability, steps: list[tuple[UniqueAddress, UniqueAddress, R]]) -> Reachability:
    r = base
    for observer, subject, status in steps:
        if status is R.UNREACHABLE:
            r = r.unreachable(observer, subject)
        elif status is R.REACHABLE:
            r = r.reachable(observer, subject)
        else:
            r = r.terminated(observer, subject)
    return r


@pytest.mark.slow
@given(changes, changes, changes, changes)
def test_merge_is_commutative_associative_and_idempotent(
    common: list[tuple[UniqueAddress, UniqueAddress, R]],
    x_steps: list[tuple[UniqueAddress, UniqueAddress, R]],
    y_steps: list[tuple[UniqueAddress, UniqueAddress, R]],
    z_steps: list[tuple[UniqueAddress, UniqueAddress, R]],
) -> None:
    # Concurrent histories from a common ancestor, each observer writing on one branch only,
    # so that equal versions mean equal rows.
    base = _apply(Reachability(), common)
    x = _apply(base, [s for s in x_steps if s[0] in (A, B)])
    y = _apply(base, [s for s in y_steps if s[0] == C])
    z = _apply(base, [s for s in z_steps if s[0] == D])
    assert x.merge(ALL, y) == y.merge(ALL, x)
    assert x.merge(ALL, y).merge(ALL, z) == x.merge(ALL, y.merge(ALL, z))
    assert x.merge(ALL, x) == x
    merged = x.merge(ALL, y).merge(ALL, z)
    for observer, branch in ((A, x), (B, x), (C, y), (D, z)):
        assert merged.version(observer) == branch.version(observer)
        for subject in ALL:
            assert merged.status(observer, subject) is branch.status(observer, subject)
