"""Gossip: merge laws, convergence, leader choice, leader actions, joins, leaves, removal.

`Nodes` below is a network-free model of a cluster: each node holds its own `Gossip` and the
test moves states between nodes by calling `receive_gossip`, exactly as the topology actor will
do with what arrives from the transport. Every state change of a node goes through
`diff_events`, so the tests also see which events each node would publish.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casty.abc import Address
from casty.cluster.downing import DowningView, KeepMajority, decide
from casty.cluster.events import (
    ClusterDomainEvent,
    MemberDowned,
    MemberEvent,
    MemberExited,
    MemberJoined,
    MemberLeft,
    MemberRemoved,
    MemberUp,
    UnreachableMember,
    diff_events,
)
from casty.cluster.gossip import (
    Gossip,
    GossipOutcome,
    GossipStatus,
    JoinOutcome,
    ReceivedGossip,
    StatusAction,
    Tombstone,
    leader_actions,
    receive_gossip,
    select_gossip_targets,
    status_action,
)
from casty.cluster.heartbeat import reap_unreachable
from casty.cluster.member import Member, MemberStatus, UniqueAddress
from casty.cluster.reachability import Reachability
from casty.cluster.vclock import Ordering, VectorClock
from casty.errors import ClusterError

S = MemberStatus


def node(port: int, incarnation: int = 1) -> UniqueAddress:
    return UniqueAddress(Address("10.0.0.1", port), incarnation)


def member(port: int, status: MemberStatus = S.UP, up: int | None = None, inc: int = 1) -> Member:
    if up is None:
        up = port if status not in (S.JOINING, S.WEAKLY_UP) else 0
    return Member(node(port, inc), f"n{port}", status, frozenset(), up)


A, B, C, D, E = (node(p) for p in (1, 2, 3, 4, 5))


class Nodes:
    """Each node's own state, moved between nodes by direct calls (no network)."""

    def __init__(self) -> None:
        self.states: dict[UniqueAddress, Gossip] = {}
        self.events: dict[UniqueAddress, list[ClusterDomainEvent]] = {}
        self.stopped: set[UniqueAddress] = set()
        self.cut: set[frozenset[UniqueAddress]] = set()
        self.now = 1_000.0

    def _set(self, n: UniqueAddress, new: Gossip) -> None:
        old = self.states.get(n, Gossip())
        if new is not old:
            self.events.setdefault(n, []).extend(diff_events(old, new, n))
        self.states[n] = new

    def start(self, n: UniqueAddress) -> None:
        first, outcome = Gossip().add_joining(Member(n, f"n{n.address.port}"), n)
        assert outcome is JoinOutcome.ADDED
        self._set(n, first)

    def join(self, n: UniqueAddress, via: UniqueAddress) -> JoinOutcome:
        state, outcome = self.states[via].add_joining(Member(n, f"n{n.address.port}"), via)
        self._set(via, state)
        if outcome in (JoinOutcome.ADDED, JoinOutcome.ALREADY_MEMBER):
            self.stopped.discard(n)
            welcome = receive_gossip(self.states.get(n, Gossip()), state, n, from_node=via)
            self._set(n, welcome.gossip)
        return outcome

    def can_talk(self, a: UniqueAddress, b: UniqueAddress) -> bool:
        return (
            a != b
            and a in self.states
            and b in self.states
            and not {a, b} & self.stopped
            and frozenset((a, b)) not in self.cut
        )

    def send(self, src: UniqueAddress, dst: UniqueAddress) -> ReceivedGossip | None:
        """``src`` gossips its full state to ``dst``, which talks back when asked to."""
        if not self.can_talk(src, dst):
            return None
        got = receive_gossip(self.states[dst], self.states[src], dst, from_node=src)
        self._set(dst, got.gossip)
        if got.outcome is GossipOutcome.SELF_REMOVED:
            self.stopped.add(dst)
        elif got.talkback:
            back = receive_gossip(self.states[src], self.states[dst], src, from_node=dst)
            self._set(src, back.gossip)
            if back.outcome is GossipOutcome.SELF_REMOVED:
                self.stopped.add(src)
        return got

    def lead(self, n: UniqueAddress) -> list[ClusterDomainEvent]:
        if n in self.stopped:
            return []
        self.now += 1
        old = self.states[n]
        new, events = leader_actions(old, n, now=self.now)
        assert events == diff_events(old, new, n)
        self._set(n, new)
        if new.is_removed(n):
            self.stopped.add(n)  # the last member removed itself and stops
        return events

    def live(self) -> list[UniqueAddress]:
        return sorted(n for n in self.states if n not in self.stopped)

    def settle(self, rounds: int = 30) -> None:
        """Gossip between every pair and run leader actions everywhere, until nothing moves."""
        for _ in range(rounds):
            before = dict(self.states)
            for a, b in itertools.permutations(self.live(), 2):
                self.send(a, b)
            for n in self.live():
                self.lead(n)
            if all(self.states[n] is before.get(n) for n in self.states):
                return
        raise AssertionError("the model cluster did not settle")

    def apply(self, fn: str, n: UniqueAddress, *args: UniqueAddress) -> None:
        self._set(n, getattr(self.states[n], fn)(*args, n))


def formed(*nodes: UniqueAddress) -> Nodes:
    cluster = Nodes()
    cluster.start(nodes[0])
    cluster.settle()
    for n in nodes[1:]:
        assert cluster.join(n, nodes[0]) is JoinOutcome.ADDED
        cluster.settle()
    return cluster


def statuses(g: Gossip) -> dict[UniqueAddress, MemberStatus]:
    return {m.unique_address: m.status for m in g.members}


# -- construction and invariants -----------------------------------------------------------


def test_members_are_sorted_whatever_the_input_order() -> None:
    ms = [member(3), member(1), member(2)]
    assert [m.unique_address for m in Gossip(ms).members] == [A, B, C]


def test_invariants_are_enforced() -> None:
    with pytest.raises(ClusterError):
        Gossip([member(1), member(1)])
    with pytest.raises(ClusterError):
        Gossip([member(1, S.REMOVED)])
    with pytest.raises(ClusterError):
        Gossip([member(1)], tombstones={A: Tombstone(1.0)})


def test_seen_and_reachability_are_limited_to_members() -> None:
    reach = Reachability().unreachable(A, C).unreachable(B, A)
    g = Gossip([member(1), member(2)], reach, seen=[A, C])
    assert g.seen == {A}
    assert g.reachability.all_unreachable_or_terminated() == {A}


def test_local_changes_bump_own_version_and_reset_seen() -> None:
    g = Gossip([member(1), member(2)], seen=[A, B], version=VectorClock({A.key: 1}))
    changed = g.mark_leaving(B, A)
    assert changed.version.compare(g.version) is Ordering.AFTER
    assert changed.version.get(A.key) == 2
    assert changed.seen == {A}


def test_operations_that_change_nothing_return_the_same_state() -> None:
    g = Gossip([member(1), member(2, S.LEAVING), member(3, S.DOWN)])
    assert g.mark_leaving(B, A) is g
    assert g.mark_leaving(node(9), A) is g
    assert g.mark_down(C, A) is g
    assert g.mark_reachable(B, A) is g
    assert g.mark_unreachable(node(9), A) is g
    assert g.with_seen(node(9)) is g
    assert g.without_seen(B) is g


def test_a_seen_mark_can_be_withdrawn_without_a_new_version() -> None:
    g = Gossip([member(1), member(2)]).with_seen(A).with_seen(B)
    withdrawn = g.without_seen(B)
    assert withdrawn.seen == {A} and withdrawn.version == g.version
    assert withdrawn.without_seen(B) is withdrawn


# -- merge ---------------------------------------------------------------------------------


def test_merge_picks_the_status_with_higher_precedence() -> None:
    x = Gossip([member(1), member(2, S.LEAVING), member(3, S.UP)])
    y = Gossip([member(1), member(2, S.UP), member(3, S.DOWN)])
    assert statuses(x.merge(y)) == {A: S.UP, B: S.LEAVING, C: S.DOWN}


def test_merge_of_concurrent_versions_is_seen_by_nobody_and_same_version_unites_seen() -> None:
    base = Gossip([member(1), member(2), member(3)], version=VectorClock({A.key: 1}))
    x = base.mark_leaving(C, A)
    y = base.mark_unreachable(C, B)
    assert x.version.compare(y.version) is Ordering.CONCURRENT
    assert x.merge(y).seen == frozenset()
    assert x.merge(x.with_seen(B)).seen == {A, B}


def test_merge_does_not_resurrect_a_tombstoned_member() -> None:
    cluster = formed(A, B, C)
    stale = cluster.states[B]
    cluster.apply("mark_leaving", C, C)
    cluster.settle()
    assert cluster.states[A].member(C) is None
    assert cluster.states[A].is_removed(C)
    merged = cluster.states[A].merge(stale)
    assert merged.member(C) is None
    assert C.key not in merged.version.versions


# -- convergence and leader ----------------------------------------------------------------


def test_convergence_needs_every_up_and_leaving_member_to_have_seen_the_version() -> None:
    g = Gossip([member(1), member(2, S.LEAVING), member(3, S.JOINING)], seen=[A])
    assert not g.convergence(A)
    assert g.with_seen(B).convergence(A)  # the joining member need not have seen it
    assert g.convergence(A, exiting_confirmed=[B])


def test_an_unreachable_member_blocks_convergence_unless_down_or_exiting() -> None:
    ms = [member(1), member(2), member(3)]
    blocked = Gossip(ms, Reachability().unreachable(A, C), seen=[A, B, C])
    assert not blocked.convergence(A)
    assert blocked.convergence(C)  # a node never blocks its own convergence
    for status in (S.DOWN, S.EXITING):
        ms2 = [member(1), member(2), member(3, status)]
        assert Gossip(ms2, Reachability().unreachable(A, C), seen=[A, B]).convergence(A)


def test_observations_of_downed_members_do_not_count() -> None:
    ms = [member(1), member(2), member(3, S.DOWN)]
    g = Gossip(ms, Reachability().unreachable(C, B), seen=[A, B])
    assert g.convergence(A)
    assert g.unreachable_members() == ()


def test_leader_is_first_reachable_up_member_in_address_order() -> None:
    ms = [member(3), member(2), member(1, S.JOINING), member(4)]
    for perm in itertools.permutations(ms):
        assert Gossip(perm).leader(D) == B
    g = Gossip(ms, Reachability().unreachable(C, B))
    assert g.leader(D) == C  # B is unreachable
    assert g.leader(B) == B  # ... except in its own eyes
    assert Gossip([member(1, S.DOWN), member(2, S.LEAVING)]).leader(A) == B


def test_fresh_cluster_leader_falls_back_to_joining_members() -> None:
    g = Gossip([member(2, S.JOINING), member(1, S.EXITING), member(3, S.JOINING)])
    assert g.leader(A) == B
    assert Gossip([member(1, S.DOWN)]).leader(A) is None
    assert Gossip().leader(A) is None


# -- leader actions ------------------------------------------------------------------------


def test_leader_actions_happen_only_at_convergence() -> None:
    g = Gossip([member(1), member(2), member(3, S.JOINING)], seen=[A])
    assert leader_actions(g, A) == (g, [])  # B has not seen this version
    assert leader_actions(g.with_seen(B), B) == (g.with_seen(B), [])  # B is not the leader
    new, events = leader_actions(g.with_seen(B), A)
    assert statuses(new)[C] is S.UP
    assert new.member(C).up_number == 3  # type: ignore[union-attr]
    assert [type(e) for e in events] == [MemberUp]


def test_leader_moves_leaving_to_exiting_then_removes_and_prunes() -> None:
    version = VectorClock({A.key: 3, C.key: 2})
    g = Gossip([member(1), member(2), member(3, S.LEAVING)], version=version, seen=[A, B, C])
    g1, events1 = leader_actions(g, A, now=50.0)
    assert statuses(g1)[C] is S.EXITING
    assert [type(e) for e in events1] == [MemberExited]
    g2, _ = leader_actions(g1.with_seen(B).with_seen(C), A, now=60.0)
    assert g2.member(C) is None
    assert g2.tombstones == {C: Tombstone(60.0, counter=2)}
    assert C.key not in g2.version.versions


def test_exiting_member_waits_until_it_has_seen_the_state_or_confirmed() -> None:
    g = Gossip([member(1), member(2), member(3, S.EXITING)], seen=[A, B])
    assert leader_actions(g, A)[0] is g  # C is still handing its work off
    assert leader_actions(g, A, exiting_confirmed=[C])[0].member(C) is None
    assert leader_actions(g.with_seen(C), A)[0].member(C) is None


def test_down_member_is_removed_once_unreachable() -> None:
    g = Gossip([member(1), member(2), member(3, S.DOWN)], seen=[A, B])
    assert leader_actions(g, A)[0] is g  # still reachable: it will learn and stop itself
    unreachable = g.mark_unreachable(C, A).with_seen(B)
    new, events = leader_actions(unreachable, A)
    assert new.member(C) is None
    assert [(type(e), e.previous_status) for e in events if isinstance(e, MemberRemoved)] == [
        (MemberRemoved, S.DOWN)
    ]


def test_up_numbers_follow_address_order_and_continue_after_the_oldest() -> None:
    g = Gossip([member(1, up=7), member(3, S.JOINING), member(2, S.JOINING)], seen=[A])
    new, _ = leader_actions(g, A)
    assert {m.unique_address: m.up_number for m in new.members} == {A: 7, B: 8, C: 9}


# -- scenarios on the model cluster --------------------------------------------------------


def test_three_nodes_form_one_cluster_and_agree() -> None:
    cluster = formed(A, B, C)
    states = list(cluster.states.values())
    assert all(s == states[0] for s in states)
    assert statuses(states[0]) == {A: S.UP, B: S.UP, C: S.UP}
    assert sorted(m.up_number for m in states[0].members) == [1, 2, 3]
    assert all(s.leader(n) == A for n, s in cluster.states.items())
    assert all(s.convergence(n) for n, s in cluster.states.items())


def test_graceful_leave_goes_leaving_exiting_removed_with_each_event_once() -> None:
    cluster = formed(A, B, C)
    cluster.apply("mark_leaving", C, C)
    cluster.settle()
    assert statuses(cluster.states[A]) == {A: S.UP, B: S.UP}
    assert C in cluster.stopped  # it learned it was removed
    for observer in (A, B):
        about_c = [e for e in cluster.events[observer] if isinstance(e, MemberEvent)]
        about_c = [e for e in about_c if e.member.unique_address == C]
        kinds = [type(e) for e in about_c]
        assert kinds[-4:] == [MemberUp, MemberLeft, MemberExited, MemberRemoved]
        assert kinds[:-4] in ([], [MemberJoined])
        assert about_c[-1].previous_status is S.EXITING  # type: ignore[attr-defined]


def test_crashed_node_is_detected_downed_and_removed_on_every_survivor() -> None:
    cluster = formed(A, B, C)
    cluster.stopped.add(C)  # crash
    for n in (A, B):
        cluster._set(n, reap_unreachable(cluster.states[n], n, lambda x: x != C))
    cluster.settle()
    assert statuses(cluster.states[A])[C] is S.UP  # unreachable blocks the leader: no moves
    view = DowningView.from_gossip(cluster.states[A], A)
    decision = decide(KeepMajority(), view)
    assert decision is not None and decision.down == {C} and not decision.down_self
    cluster.apply("mark_down", A, C)
    cluster.settle()
    for n in (A, B):
        assert statuses(cluster.states[n]) == {A: S.UP, B: S.UP}
        kinds = Counter(
            type(e)
            for e in cluster.events[n]
            if getattr(e, "member", None) is not None and e.member.unique_address == C  # type: ignore[attr-defined]
        )
        assert kinds[UnreachableMember] == 1
        assert kinds[MemberDowned] == 1
        assert kinds[MemberRemoved] == 1


def test_restarted_node_replaces_its_old_incarnation() -> None:
    cluster = formed(A, B, C)
    cluster.stopped.add(C)  # the old process dies...
    c2 = node(3, incarnation=2)  # ...and comes back at the same address
    assert cluster.join(c2, A) is JoinOutcome.REPLACING
    old = cluster.states[A].member(C)
    assert old is not None and old.status is S.DOWN
    assert cluster.states[A].reachability.status(A, C).value == "terminated"
    cluster.settle()
    assert cluster.states[A].member(C) is None and cluster.states[B].member(C) is None
    assert cluster.join(c2, A) is JoinOutcome.ADDED
    cluster.settle()
    assert statuses(cluster.states[B]) == {A: S.UP, B: S.UP, c2: S.UP}
    assert cluster.states[c2] == cluster.states[A]
    removed = [e for e in cluster.events[B] if isinstance(e, MemberRemoved)]
    assert [e.member.unique_address for e in removed] == [C]


def test_removed_incarnation_cannot_join_again() -> None:
    cluster = formed(A, B, C)
    cluster.apply("mark_leaving", C, C)
    cluster.settle()
    assert cluster.states[A].add_joining(Member(C, "n3"), A)[1] is JoinOutcome.REFUSED_REMOVED
    assert cluster.states[A].add_joining(Member(A, "n1"), A)[1] is JoinOutcome.ALREADY_MEMBER


def test_changes_a_removed_node_made_after_its_removal_get_a_fresh_version() -> None:
    cluster = Nodes()
    cluster.start(A)
    cluster.join(B, A)
    cluster.join(C, A)
    cluster.apply("mark_leaving", A, A)
    cluster.lead(A)  # A exiting, B and C up
    for a, b in itertools.permutations([A, B, C], 2):
        cluster.send(a, b)
    cluster.lead(B)  # the new leader removes A, which has not heard of it yet...
    assert cluster.states[B].is_removed(A) and not cluster.states[A].is_removed(A)
    cluster.apply("mark_leaving", A, B)  # ...and asks B to leave.
    cluster.send(A, C)  # C adopts A's change; its merge with B's state prunes A's entry
    got = cluster.send(C, B)
    assert got is not None and got.outcome is GossipOutcome.MERGED
    merged = cluster.states[B]
    assert merged.member(B).status is S.LEAVING  # type: ignore[union-attr]
    # B's state before the merge was at B:1 with B up; the merge carries A's late change, so
    # it must not keep that version: B's entry moves on.
    assert merged.version.get(B.key) == 2
    cluster.settle()  # B's leave completes
    assert statuses(cluster.states[C]) == {C: S.UP} and cluster.states[C].is_removed(B)


# -- receiving gossip ----------------------------------------------------------------------


def test_receive_outcomes_by_version() -> None:
    base = Gossip([member(1), member(2), member(3)], seen=[A], version=VectorClock({A.key: 1}))
    newer = base.mark_leaving(C, A)
    assert receive_gossip(newer, base, B).outcome is GossipOutcome.OLDER
    got = receive_gossip(base, newer, B)
    assert got.outcome is GossipOutcome.NEWER and got.gossip.seen == {A, B} and got.talkback
    same = receive_gossip(newer.only_seen(C), newer, B)
    assert same.outcome is GossipOutcome.SAME and same.gossip.seen == {A, B, C}
    concurrent = receive_gossip(base.mark_unreachable(C, B), newer, B)
    assert concurrent.outcome is GossipOutcome.MERGED and concurrent.gossip.seen == {B}


def test_receive_ignores_strangers_and_states_without_us() -> None:
    g = Gossip([member(1), member(2)])
    assert receive_gossip(g, Gossip([member(1)]), B).outcome is GossipOutcome.IGNORED
    assert receive_gossip(g, g, B, from_node=node(9)).outcome is GossipOutcome.IGNORED


def test_mark_seen_false_keeps_the_node_out_of_seen() -> None:
    g = Gossip([member(1), member(2)], seen=[A], version=VectorClock({A.key: 1}))
    got = receive_gossip(Gossip(), g, B, mark_seen=False)
    assert got.outcome is GossipOutcome.NEWER and got.gossip.seen == {A}


# -- gossip target selection and status digests -------------------------------------------


def test_targets_exclude_self_and_nodes_we_lost() -> None:
    g = Gossip([member(p) for p in range(1, 6)]).mark_unreachable(C, A)
    rng = random.Random(1)
    for _ in range(50):
        targets = select_gossip_targets(g, A, 3, rng)
        assert len(targets) == len(set(targets)) == 3
        assert A not in targets and C not in targets
    assert select_gossip_targets(g, A, 0, rng) == []
    assert sorted(select_gossip_targets(g, A, 10, rng)) == [B, D, E]


def test_targets_prefer_nodes_that_have_not_seen_our_version() -> None:
    g = Gossip([member(p) for p in range(1, 6)], seen=[A, B, C, D])
    picks = Counter(select_gossip_targets(g, A, 1, random.Random(i))[0] for i in range(400))
    assert picks[E] > 300  # 0.8 + 0.2 / 4 of the time
    always = Counter(
        select_gossip_targets(g, A, 1, random.Random(i), different_view_probability=1.0)[0]
        for i in range(50)
    )
    assert always == {E: 50}


def test_status_digest_answers() -> None:
    base = Gossip([member(1), member(2)], seen=[A, B], version=VectorClock({A.key: 1}))
    at_rest = GossipStatus.of(base, B)
    assert status_action(base, at_rest) is StatusAction.NONE
    assert status_action(base.only_seen(A), at_rest) is StatusAction.SEND_GOSSIP
    newer = base.mark_leaving(B, A)
    assert status_action(newer, at_rest) is StatusAction.SEND_GOSSIP  # ours is newer
    assert status_action(base, GossipStatus.of(newer, A)) is StatusAction.SEND_STATUS
    stranger = GossipStatus(node(9), base.version, base.seen_digest())
    assert status_action(base, stranger) is StatusAction.NONE


def test_extensions_ride_along_and_merge_by_version() -> None:
    base = Gossip([member(1), member(2)])
    x = base.with_extension("coordinator", {"node": "10.0.0.1:1", "epoch": 3}, A)
    assert x.extensions["coordinator"].version == 1
    assert x.with_extension("coordinator", {"node": "10.0.0.1:1", "epoch": 3}, A) is x
    y = x.with_extension("coordinator", ("b", 4), B)
    assert y.extensions["coordinator"].value == ["b", 4]
    assert x.merge(y).extensions == y.extensions == y.merge(x).extensions
    with pytest.raises(ClusterError):
        base.with_extension("bad", object(), A)


def test_prune_tombstones_forgets_old_ones_only() -> None:
    g = Gossip([member(1)], tombstones={B: Tombstone(10.0), C: Tombstone(20.0)})
    assert g.prune_tombstones(15.0).tombstones == {C: Tombstone(20.0)}
    assert g.prune_tombstones(5.0) is g


# -- properties over random concurrent histories --------------------------------------------

POOL = [A, B, C, D, E, node(3, incarnation=2)]
OPS = [
    *("join", "join", "gossip", "gossip", "gossip", "lead", "round"),
    *("leave", "down", "unreach", "reach", "ext"),
]


def run_history(ops: Iterable[tuple[str, int, int]]) -> Nodes:
    """Replay ``ops``; indices pick among the nodes present (joins: among all of POOL)."""
    cluster = Nodes()
    cluster.start(A)
    for op, i, j in ops:
        present = cluster.live()
        x, y = present[i % len(present)], present[j % len(present)]
        if op == "join":
            if cluster.states[y].has_member(y):
                cluster.join(POOL[i % len(POOL)], y)
        elif op == "gossip":
            cluster.send(x, y)
        elif op == "lead":
            cluster.lead(x)
        elif op == "round":
            for a, b in itertools.permutations(present, 2):
                cluster.send(a, b)
            for n in cluster.live():
                cluster.lead(n)
        elif op == "leave":
            cluster.apply("mark_leaving", x, y)
        elif op == "down":
            cluster.apply("mark_down", x, y)
        elif op == "unreach":
            cluster.apply("mark_unreachable", x, y)
        elif op == "reach":
            cluster.apply("mark_reachable", x, y)
        else:
            cluster._set(x, cluster.states[x].with_extension("k", [i, j], x))
        if not cluster.live():
            break
    return cluster


histories = st.lists(
    st.tuples(st.sampled_from(OPS), st.integers(0, len(POOL) - 1), st.integers(0, len(POOL) - 1)),
    max_size=30,
)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(histories, st.data())
def test_merge_laws_hold_for_states_of_concurrent_histories(
    ops: list[tuple[str, int, int]], data: st.DataObject
) -> None:
    cluster = run_history(ops)
    states = list(cluster.states.values())
    x, y, z = (data.draw(st.sampled_from(states)) for _ in range(3))
    assert x.merge(y) == y.merge(x)
    assert x.merge(y).merge(z) == x.merge(y.merge(z))
    assert x.merge(x) == x
    merged = x.merge(y)
    for side in (x, y):
        # Entries of removed nodes are pruned; everything else only grows.
        unpruned = side.version.prune(n.key for n in merged.tombstones)
        assert unpruned.compare(merged.version) in (Ordering.BEFORE, Ordering.SAME)
        for m in side.members:
            kept = merged.member(m.unique_address)
            if kept is None:
                assert merged.is_removed(m.unique_address)
            else:
                assert kept.status.precedence >= m.status.precedence


@settings(max_examples=100, deadline=None)
@given(histories)
def test_every_history_settles_to_one_agreed_state_with_events_once(
    ops: list[tuple[str, int, int]],
) -> None:
    cluster = run_history(ops)
    cluster.cut.clear()
    # Lift every unreachability record, as heartbeats would once the network heals.
    for n in cluster.live():
        g = cluster.states[n]
        cluster._set(n, reap_unreachable(g, n, lambda _: True))
    cluster.settle()
    # Nodes that know each other agree. (A node welcomed by a seed that was removed before it
    # spread the news knows the others, but they never heard of it: its join must be retried.)
    live = [n for n in cluster.live() if cluster.states[n].has_member(n)]
    for x, y in itertools.combinations(live, 2):
        if cluster.states[x].has_member(y) and cluster.states[y].has_member(x):
            assert cluster.states[x] == cluster.states[y]
    for events in cluster.events.values():
        seen: Counter[tuple[UniqueAddress, type]] = Counter(
            (e.member.unique_address, type(e)) for e in events if isinstance(e, MemberEvent)
        )
        assert all(count == 1 for count in seen.values()), seen
