"""Unique addresses, statuses and members: ordering, age, lifecycle transitions, validation."""

from __future__ import annotations

import random

import pytest

from casty.abc import Address
from casty.cluster.member import Member, MemberStatus, UniqueAddress, oldest
from casty.errors import ClusterError, ConfigurationError

S = MemberStatus


def node(port: int, incarnation: int = 1, host: str = "10.0.0.1") -> UniqueAddress:
    return UniqueAddress(Address(host, port), incarnation)


def test_unique_addresses_order_by_host_then_port_then_incarnation() -> None:
    nodes = [
        node(2552, 7, "10.0.0.2"),
        node(2553, 1),
        node(2552, 9),
        node(2552, 3),
        node(80, 5, "10.0.0.2"),
    ]
    shuffled = nodes[:]
    random.Random(4).shuffle(shuffled)
    assert sorted(shuffled) == [
        node(2552, 3),
        node(2552, 9),
        node(2553, 1),
        node(80, 5, "10.0.0.2"),
        node(2552, 7, "10.0.0.2"),
    ]


def test_unique_address_key_names_address_and_incarnation() -> None:
    assert node(2552, 42).key == "10.0.0.1:2552#42"
    assert UniqueAddress(Address("::1", 7), 1).key == "[::1]:7#1"


@pytest.mark.parametrize("incarnation", [-1, 2**64, True, 1.0])
def test_incarnation_out_of_range_is_refused(incarnation: object) -> None:
    with pytest.raises(ConfigurationError):
        UniqueAddress(Address("h", 1), incarnation)  # type: ignore[arg-type]


def test_member_exposes_address_node_id_status_and_roles() -> None:
    m = Member(node(1), "worker-1", S.UP, frozenset({"a"}), 3)
    assert m.address == Address("10.0.0.1", 1)
    assert (m.node_id, m.status, m.roles, m.up_number) == ("worker-1", S.UP, frozenset({"a"}), 3)
    assert m.has_role("a") and m.has_role(None) and not m.has_role("b")


def test_roles_given_as_any_iterable_become_a_frozenset() -> None:
    m = Member(node(1), "n", roles={"x", "y"})  # type: ignore[arg-type]
    assert m.roles == frozenset({"x", "y"})
    with pytest.raises(ConfigurationError):
        Member(node(1), "n", roles=frozenset({1}))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Member(node(1), "n", up_number=-1)


def test_status_precedence_is_the_documented_chain() -> None:
    chain = [S.JOINING, S.WEAKLY_UP, S.UP, S.LEAVING, S.EXITING, S.DOWN, S.REMOVED]
    assert sorted(S, key=lambda s: s.precedence) == chain


@pytest.mark.parametrize(
    ("start", "allowed"),
    [
        (S.JOINING, {S.WEAKLY_UP, S.UP, S.LEAVING, S.DOWN, S.REMOVED}),
        (S.WEAKLY_UP, {S.UP, S.LEAVING, S.DOWN, S.REMOVED}),
        (S.UP, {S.LEAVING, S.DOWN, S.REMOVED}),
        (S.LEAVING, {S.EXITING, S.DOWN, S.REMOVED}),
        (S.EXITING, {S.DOWN, S.REMOVED}),
        (S.DOWN, {S.REMOVED}),
        (S.REMOVED, set()),
    ],
)
def test_lifecycle_transitions(start: MemberStatus, allowed: set[MemberStatus]) -> None:
    m = Member(node(1), "n", start)
    for target in S:
        if target is start:
            assert m.with_status(target) is m
        elif target in allowed:
            assert m.with_status(target).status is target
        else:
            with pytest.raises(ClusterError):
                m.with_status(target)


def test_age_is_by_up_number_with_ties_and_never_up_members_last() -> None:
    a = Member(node(3), "a", S.UP, up_number=1)
    b = Member(node(1), "b", S.UP, up_number=2)
    c = Member(node(2), "c", S.UP, up_number=2)
    fresh = Member(node(0), "d", S.JOINING)
    assert a.is_older_than(b) and not b.is_older_than(a)
    assert b.is_older_than(c)  # same up number: lower address is older
    assert c.is_older_than(fresh)
    assert oldest([fresh, c, b, a]) == a
    assert oldest([]) is None
