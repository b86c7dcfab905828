"""The gossip wire form: exact round trips through msgpack, and garbage refused as DecodeError."""

from __future__ import annotations

import copy
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casty.abc import Address
from casty.cluster.gossip import WIRE_FORMAT, Gossip, GossipStatus, Tombstone
from casty.cluster.member import Member, MemberStatus, UniqueAddress
from casty.cluster.reachability import Reachability, ReachabilityStatus
from casty.cluster.vclock import VectorClock
from casty.errors import DecodeError

S = MemberStatus

unique_addresses = st.builds(
    UniqueAddress,
    st.builds(
        Address, st.sampled_from(["10.0.0.1", "10.0.0.2", "::1", "node-ä"]), st.integers(0, 65535)
    ),
    st.integers(0, 2**64 - 1),
)
statuses = st.sampled_from([s for s in S if s is not S.REMOVED])
plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(max_size=5)
    | st.binary(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def gossips(draw: st.DrawFn) -> Gossip:
    nodes = draw(st.lists(unique_addresses, max_size=6, unique_by=lambda n: n))
    graves = draw(st.lists(unique_addresses, max_size=3, unique_by=lambda n: n))
    graves = [g for g in graves if g not in nodes]
    members = [
        Member(
            n,
            draw(st.text(max_size=6)),
            draw(statuses),
            frozenset(draw(st.lists(st.text(max_size=4), max_size=2))),
            draw(st.integers(0, 50)),
        )
        for n in nodes
    ]
    reach = Reachability()
    if nodes:
        for _ in range(draw(st.integers(0, 6))):
            observer, subject = draw(st.sampled_from(nodes)), draw(st.sampled_from(nodes))
            kind = draw(st.sampled_from(list(ReachabilityStatus)))
            if kind is ReachabilityStatus.UNREACHABLE:
                reach = reach.unreachable(observer, subject)
            elif kind is ReachabilityStatus.REACHABLE:
                reach = reach.reachable(observer, subject)
            else:
                reach = reach.terminated(observer, subject)
    seen = draw(st.sets(st.sampled_from(nodes))) if nodes else set()
    version = VectorClock(
        draw(st.dictionaries(st.sampled_from([n.key for n in nodes] or ["x"]), st.integers(1, 99)))
    )
    tombstones = {g: Tombstone(draw(st.floats(0, 2e9)), draw(st.integers(0, 9))) for g in graves}
    g = Gossip(members, reach, seen, version, tombstones)
    for key in draw(st.lists(st.text(max_size=4), max_size=2, unique=True)):
        g = g.with_extension(key, draw(plain), nodes[0] if nodes else draw(unique_addresses))
    return g


def _via_msgpack(wire: Any, use_list: bool) -> Any:
    return msgpack.unpackb(msgpack.packb(wire, use_bin_type=True), raw=False, use_list=use_list)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(gossips(), st.booleans())
def test_gossip_round_trips_through_msgpack(g: Gossip, use_list: bool) -> None:
    back = Gossip.from_wire(_via_msgpack(g.to_wire(), use_list))
    assert back == g
    assert back.seen_digest() == g.seen_digest()


@given(unique_addresses, st.dictionaries(st.text(max_size=8), st.integers(1, 2**40)), st.booleans())
def test_status_round_trips_through_msgpack(
    sender: UniqueAddress, versions: dict[str, int], use_list: bool
) -> None:
    status = GossipStatus(sender, VectorClock(versions), b"\x01" * 16)
    assert GossipStatus.from_wire(_via_msgpack(status.to_wire(), use_list)) == status


def test_status_is_small_and_linear_in_the_version() -> None:
    def size(n: int) -> int:
        clock = VectorClock(
            {f"10.0.{i // 256}.{i % 256}:25520#{2**62 + i}": 10**6 for i in range(n)}
        )
        status = GossipStatus(UniqueAddress(Address("10.0.0.1", 25520), 2**62), clock, bytes(16))
        return len(msgpack.packb(status.to_wire()))

    for n in (1, 10, 30, 100, 300):
        # bytes: a fixed header, then per entry the "host:port#incarnation" key and a counter
        assert size(n) <= 64 + 48 * n


garbage = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=4)
    | st.binary(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=8)
        | st.dictionaries(inner.filter(lambda x: isinstance(x, str | int)), inner, max_size=3)
    ),
    max_leaves=30,
)


@pytest.mark.slow
@given(garbage)
def test_garbage_gives_decode_error_and_nothing_else(data: object) -> None:
    for decode in (Gossip.from_wire, GossipStatus.from_wire):
        try:
            decode(data)
        except DecodeError:
            pass


def _paths(value: Any, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    out = [prefix]
    if isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*prefix, i))
    return out


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(gossips(), st.data(), garbage)
def test_a_corrupted_field_gives_decode_error_or_a_valid_state(
    g: Gossip, data: st.DataObject, replacement: object
) -> None:
    wire = g.to_wire()
    path = data.draw(st.sampled_from(_paths(wire)[1:]))
    corrupted = copy.deepcopy(wire)
    target = corrupted
    for i in path[:-1]:
        target = target[i]
    target[path[-1]] = replacement
    try:
        result = Gossip.from_wire(corrupted)
    except DecodeError:
        return
    assert isinstance(result, Gossip)  # the corruption happened to be a valid value


def _valid() -> list[Any]:
    a = Member(UniqueAddress(Address("h", 1), 1), "a", S.UP, frozenset(), 1)
    b = Member(UniqueAddress(Address("h", 2), 1), "b", S.UP, frozenset(), 2)
    g = Gossip(
        [a, b], Reachability().unreachable(a.unique_address, b.unique_address), [a.unique_address]
    )
    return g.to_wire()


def _set(wire: list[Any], path: tuple[int, ...], value: object) -> list[Any]:
    wire = copy.deepcopy(wire)
    target = wire
    for i in path[:-1]:
        target = target[i]
    target[path[-1]] = value
    return wire


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ((0,), 2, "wire format"),
        ((0,), True, "wire format"),
        ((1, 0, 4), 9, "status"),
        ((1, 0, 4), 6, "status"),  # removed members never travel
        ((1, 0, 1), 70000, "port"),
        ((1, 0, 2), -1, "incarnation"),
        ((1, 0, 6), -3, "up_number"),
        ((1, 1), [["h", 1, 1, "a", 2, [], 1]][0], "sorted"),  # duplicate member
        ((2, 0, 0), 5, "observer"),
        ((2, 0, 1), 0, "row version"),
        ((2, 0, 2, 0, 1), 0, "reachability status"),
        ((3,), [7], "seen index"),
        ((4,), [["k", 0]], "counter"),
        ((4,), [["k", 1], ["k", 2]], "duplicate key"),
        ((5,), [["h", 1, 1, 5.0, 0]], "tombstoned"),
        ((5,), [["h", 9, 1, float("nan"), 0]], "finite"),
        ((5,), [["h", 9, 1, 1.0, -1]], "counter"),
        ((6,), [["k", 1, object()]], "plain data"),
    ],
)
def test_specific_corruptions_are_refused_with_a_reason(
    path: tuple[int, ...], value: object, reason: str
) -> None:
    with pytest.raises(DecodeError, match=reason):
        Gossip.from_wire(_set(_valid(), path, value))


def test_wire_format_constant_leads_the_layout() -> None:
    assert _valid()[0] == WIRE_FORMAT == 1
    assert GossipStatus.from_wire([1, "h", 1, 1, [], bytes(16)]).version == VectorClock()
    with pytest.raises(DecodeError, match="16 bytes"):
        GossipStatus.from_wire([1, "h", 1, 1, [], b"short"])
