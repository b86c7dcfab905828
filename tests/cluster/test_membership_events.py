"""Membership events from state diffs: each change once, in order; the topology snapshot."""

from __future__ import annotations

import itertools

from casty.abc import Address
from casty.cluster.events import (
    ClusterDomainEvent,
    LeaderChanged,
    MemberDowned,
    MemberEvent,
    MemberExited,
    MemberJoined,
    MemberLeft,
    MemberRemoved,
    MemberUp,
    MemberWeaklyUp,
    ReachabilityEvent,
    ReachableMember,
    TopologySnapshot,
    UnreachableMember,
    diff_events,
    topology_snapshot,
)
from casty.cluster.gossip import Gossip, Tombstone
from casty.cluster.member import Member, MemberStatus, UniqueAddress

S = MemberStatus


def node(port: int) -> UniqueAddress:
    return UniqueAddress(Address("10.0.0.1", port), 1)


def member(port: int, status: MemberStatus = S.UP, roles: frozenset[str] = frozenset()) -> Member:
    up = port if status not in (S.JOINING, S.WEAKLY_UP) else 0
    return Member(node(port), f"worker-{port}", status, roles, up)


A, B, C = node(1), node(2), node(3)


def kinds(events: list[ClusterDomainEvent]) -> list[tuple[type, int | None]]:
    out: list[tuple[type, int | None]] = []
    for e in events:
        m = getattr(e, "member", None)
        out.append((type(e), m.address.port if m is not None else None))
    return out


def test_no_change_no_events() -> None:
    g = Gossip([member(1), member(2)])
    assert diff_events(g, g, A) == []
    assert diff_events(Gossip(), Gossip(), A) == []


def test_first_state_reports_each_member_once_with_its_current_status() -> None:
    g = Gossip([member(1), member(2, S.JOINING), member(3, S.LEAVING)])
    assert kinds(diff_events(Gossip(), g, A)) == [
        (MemberUp, 1),
        (MemberJoined, 2),
        (MemberLeft, 3),
        (LeaderChanged, None),
    ]


def test_events_carry_the_member_as_after_the_change() -> None:
    before = Gossip([member(1), member(2, S.JOINING, frozenset({"db"}))])
    after = Gossip([member(1), Member(node(2), "worker-2", S.UP, frozenset({"db"}), 2)])
    (event,) = diff_events(before, after, A)
    match event:
        case MemberUp(member=m):
            assert m.address == Address("10.0.0.1", 2)
            assert (m.node_id, m.status, m.roles) == ("worker-2", S.UP, frozenset({"db"}))
        case _:
            raise AssertionError(event)
    assert isinstance(event, MemberEvent) and isinstance(event, ClusterDomainEvent)
    assert not issubclass(MemberUp, ReachabilityEvent)
    assert issubclass(UnreachableMember, ReachabilityEvent)
    assert not issubclass(UnreachableMember, MemberEvent)


def test_skipped_lifecycle_steps_are_each_reported_once() -> None:
    before = Gossip([member(1), member(2, S.JOINING)])
    after = Gossip([member(1), Member(node(2), "worker-2", S.EXITING, frozenset(), 2)])
    events = diff_events(before, after, A)
    assert kinds(events) == [(MemberUp, 2), (MemberLeft, 2), (MemberExited, 2)]
    statuses = [e.member.status for e in events if isinstance(e, MemberEvent)]
    assert statuses == [S.UP, S.LEAVING, S.EXITING]


def test_weakly_up_is_reported_only_when_it_is_the_status() -> None:
    before = Gossip([member(1), member(2, S.JOINING)])
    weakly = Gossip([member(1), member(2, S.WEAKLY_UP)])
    assert kinds(diff_events(before, weakly, A)) == [(MemberWeaklyUp, 2)]
    assert kinds(diff_events(weakly, Gossip([member(1), member(2)]), A)) == [(MemberUp, 2)]


def test_down_is_reported_alone() -> None:
    before = Gossip([member(1), member(2, S.JOINING)])
    after = Gossip([member(1), member(2, S.DOWN)])
    assert kinds(diff_events(before, after, A)) == [(MemberDowned, 2)]


def test_removal_reports_the_previous_status() -> None:
    before = Gossip([member(1), member(2, S.EXITING)])
    after = Gossip([member(1)], tombstones={B: Tombstone(5.0)})
    (event,) = diff_events(before, after, A)
    assert isinstance(event, MemberRemoved)
    assert event.member.status is S.REMOVED and event.previous_status is S.EXITING


def test_reachability_events_exclude_self_and_follow_the_aggregate() -> None:
    g = Gossip([member(1), member(2), member(3)])
    lost = g.mark_unreachable(C, A).mark_unreachable(A, B)
    assert kinds(diff_events(g, lost, A)) == [(UnreachableMember, 3)]
    also_lost_by_b = lost.mark_unreachable(C, B)
    assert diff_events(lost, also_lost_by_b, A) == []  # still unreachable: no new event
    back = also_lost_by_b.mark_reachable(C, A)
    assert diff_events(also_lost_by_b, back, A) == []  # B still cannot reach it
    assert kinds(diff_events(back, back.mark_reachable(C, B), A)) == [(ReachableMember, 3)]


def test_a_downed_observer_no_longer_makes_others_unreachable() -> None:
    g = Gossip([member(1), member(2), member(3)]).mark_unreachable(C, B)
    downed = g.mark_down(B, A)
    assert kinds(diff_events(g, downed, A)) == [(MemberDowned, 2), (ReachableMember, 3)]


def test_leader_changes_are_reported_with_the_address() -> None:
    g = Gossip([member(1), member(2)])
    events = diff_events(g, g.mark_unreachable(A, B), B)
    assert events[-1] == LeaderChanged(Address("10.0.0.1", 2))
    assert diff_events(Gossip([member(1)]), Gossip(), A)[-1] == LeaderChanged(None)


def test_a_chain_of_diffs_reports_each_status_once() -> None:
    chain = [
        Gossip(),
        Gossip([member(1, S.JOINING)]),
        Gossip([member(1), member(2, S.JOINING)]),
        Gossip([member(1), member(2)]),
        Gossip([member(1), member(2, S.LEAVING)]),
        Gossip([member(1), member(2, S.EXITING)]),
        Gossip([member(1)], tombstones={B: Tombstone(1.0)}),
    ]
    events = [e for old, new in itertools.pairwise(chain) for e in diff_events(old, new, A)]
    about_b = [
        type(e) for e in events if isinstance(e, MemberEvent) and e.member.unique_address == B
    ]
    assert about_b == [MemberJoined, MemberUp, MemberLeft, MemberExited, MemberRemoved]
    about_a = [
        type(e) for e in events if isinstance(e, MemberEvent) and e.member.unique_address == A
    ]
    assert about_a == [MemberJoined, MemberUp]
    assert [e for e in events if isinstance(e, LeaderChanged)] == [LeaderChanged(A.address)]


def test_topology_snapshot() -> None:
    g = Gossip([member(2), member(1), member(3, S.JOINING)]).mark_unreachable(B, C)
    snap = topology_snapshot(g, C)
    assert [m.unique_address for m in snap.members] == [A, B, C]
    assert snap.leader == A.address
    assert snap.unreachable == {B.address}
    assert snap.shard_allocations == {}
    allocations = {"tasks": {0: A.address, 1: B.address}}
    assert topology_snapshot(g, C, allocations).shard_allocations == allocations
    assert topology_snapshot(Gossip(), A) == TopologySnapshot((), None, frozenset())
