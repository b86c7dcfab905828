"""Split brain resolver strategies on partitions, indirectly connected nodes, and stability."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casty.abc import Address
from casty.cluster.downing import (
    Decision,
    DecisionKind,
    DownAll,
    DowningStrategy,
    DowningView,
    KeepMajority,
    KeepOldest,
    SplitBrainResolver,
    StaticQuorum,
    decide,
)
from casty.cluster.gossip import Gossip
from casty.cluster.member import Member, MemberStatus, UniqueAddress
from casty.errors import ConfigurationError

S = MemberStatus
K = DecisionKind


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def node(port: int) -> UniqueAddress:
    return UniqueAddress(Address("10.0.0.1", port), 1)


def member(
    port: int,
    up: int | None = None,
    status: MemberStatus = S.UP,
    roles: frozenset[str] = frozenset(),
) -> Member:
    return Member(node(port), f"n{port}", status, roles, port if up is None else up)


A, B, C, D, E = (node(p) for p in (1, 2, 3, 4, 5))
FIVE = tuple(member(p) for p in (1, 2, 3, 4, 5))


def view(
    me: UniqueAddress, members: tuple[Member, ...], unreachable: set[UniqueAddress]
) -> DowningView:
    return DowningView(me, members, frozenset(unreachable))


def both_sides(
    strategy: DowningStrategy, members: tuple[Member, ...], side: set[UniqueAddress]
) -> tuple[Decision, Decision]:
    """The decisions of a node on ``side`` and of a node on the other side."""
    other = {m.unique_address for m in members} - side
    mine = decide(strategy, view(min(side), members, other))
    theirs = decide(strategy, view(min(other), members, side))
    assert mine is not None and theirs is not None
    return mine, theirs


def test_keep_majority_keeps_the_three_and_downs_the_two() -> None:
    majority, minority = both_sides(KeepMajority(), FIVE, {A, B, C})
    assert majority == Decision(K.DOWN_UNREACHABLE, frozenset({D, E}), False)
    assert minority == Decision(K.DOWN_REACHABLE, frozenset({D, E}), True)


def test_keep_majority_tie_keeps_the_side_with_the_lowest_address() -> None:
    four = FIVE[:4]
    for side in ({A, D}, {B, C}):
        mine, theirs = both_sides(KeepMajority(), four, side)
        keeper = mine if A in side else theirs
        loser = theirs if A in side else mine
        assert not keeper.down_self and loser.down_self
        assert keeper.down == loser.down == {B, C}


def test_keep_majority_with_a_role_counts_only_that_role() -> None:
    db = frozenset({"db"})
    members = (member(1), member(2), member(3), member(4, roles=db), member(5, roles=db))
    mine, theirs = both_sides(KeepMajority(role="db"), members, {D, E})
    assert not mine.down_self and mine.down == {A, B, C}
    assert theirs.down_self


def test_static_quorum() -> None:
    majority, minority = both_sides(StaticQuorum(3), FIVE, {A, B, C})
    assert not majority.down_self and majority.down == {D, E}
    assert minority.down_self and minority.down == {D, E}
    # Both sides below the quorum: both go.
    small, other = both_sides(StaticQuorum(3), FIVE[:4], {A, B})
    assert small.down_self and other.down_self
    # Too many members for this quorum: nobody is safe.
    six = (*FIVE, member(6))
    assert decide(StaticQuorum(3), view(A, six, {E})) == Decision(
        K.DOWN_ALL, frozenset(m.unique_address for m in six), True
    )


def test_keep_oldest_keeps_the_oldest_side_even_as_minority() -> None:
    members = (member(1, up=5), member(2, up=1), member(3, up=2), member(4, up=3), member(5, up=4))
    oldest_side, rest = both_sides(KeepOldest(), members, {B, A})
    assert not oldest_side.down_self and oldest_side.down == {C, D, E}
    assert rest.down_self


@pytest.mark.parametrize("down_if_alone", [True, False])
def test_keep_oldest_when_the_oldest_is_alone(down_if_alone: bool) -> None:
    alone, rest = both_sides(KeepOldest(down_if_alone=down_if_alone), FIVE, {A})
    if down_if_alone:
        assert alone.down_self and alone.down == {A}
        assert not rest.down_self and rest.down == {A}
    else:
        assert not alone.down_self and alone.down == {B, C, D, E}
        assert rest.down_self


def test_keep_oldest_with_a_role_finds_the_oldest_of_that_role() -> None:
    members = (member(1, up=1), member(2, up=2, roles=frozenset({"x"})), member(3, up=3))
    mine, theirs = both_sides(KeepOldest(role="x", down_if_alone=False), members, {B})
    assert not mine.down_self and theirs.down_self


def test_down_all_downs_everyone() -> None:
    mine, theirs = both_sides(DownAll(), FIVE, {A, B, C})
    assert mine.down == theirs.down == {A, B, C, D, E}
    assert mine.down_self and theirs.down_self


def test_joining_members_do_not_count_but_go_with_their_side() -> None:
    members = (
        *FIVE[:3],
        member(4),
        member(5),
        member(6, status=S.JOINING),
        member(7, status=S.JOINING),
    )
    # 2 up + 2 joining against 3 up: the joining members do not tip the balance.
    minority = decide(KeepMajority(), view(D, members, {A, B, C}))
    assert minority is not None and minority.down == {D, E, node(6), node(7)}


def test_exiting_and_down_members_are_ignored() -> None:
    members = (member(1), member(2), member(3, status=S.EXITING), member(4, status=S.DOWN))
    assert decide(KeepMajority(), view(A, members, {C, D})) is None
    # One counted member a side: the tie goes to the lowest address; C and D play no part.
    decision = decide(KeepMajority(), view(A, members, {B, C, D}))
    assert decision == Decision(K.DOWN_UNREACHABLE, frozenset({B}), False)


def test_nothing_to_decide_when_all_is_reachable() -> None:
    assert decide(KeepMajority(), view(A, FIVE, set())) is None


partitions = st.integers(2, 9).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(st.booleans(), min_size=n, max_size=n).filter(lambda bits: 0 < sum(bits) < n),
        st.permutations(range(1, n + 1)),
    )
)


@pytest.mark.slow
@given(
    partitions,
    st.sampled_from(
        [
            KeepMajority(),
            StaticQuorum(1),
            StaticQuorum(3),
            StaticQuorum(5),
            KeepOldest(),
            KeepOldest(False),
            DownAll(),
        ]
    ),
)
def test_never_do_both_sides_of_a_clean_partition_survive(
    partition: tuple[int, list[bool], list[int]], strategy: DowningStrategy
) -> None:
    n, bits, ups = partition
    members = tuple(member(p, up=ups[p - 1]) for p in range(1, n + 1))
    side = {m.unique_address for m, bit in zip(members, bits, strict=True) if bit}
    mine, theirs = both_sides(strategy, members, side)
    assert mine.down_self or theirs.down_self
    if isinstance(strategy, KeepMajority | KeepOldest):
        assert mine.down_self != theirs.down_self  # exactly one side survives
        assert mine.down == theirs.down  # and both agree on who goes


def _gossip_with(
    *records: tuple[UniqueAddress, UniqueAddress], seen: tuple[UniqueAddress, ...] = ()
) -> Gossip:
    g = Gossip(FIVE)
    for observer, subject in records:
        g = g.mark_unreachable(subject, observer)
    for n in seen:
        g = g.with_seen(n)
    return g


def test_an_unreachable_observer_is_indirectly_connected_and_downed() -> None:
    # C lost D, and A lost C: C still talks to part of the cluster (its record reached us).
    v = DowningView.from_gossip(_gossip_with((C, D), (A, C)), A)
    assert v.indirectly_connected == {C}
    decision = decide(KeepMajority(), v)
    assert decision is not None and decision.down == {C, D} and not decision.down_self


def test_an_unreachable_node_that_saw_the_state_is_indirectly_connected() -> None:
    v = DowningView.from_gossip(_gossip_with((A, B), seen=(B,)), C)
    assert v.indirectly_connected == {A, B}
    decision = decide(KeepMajority(), v)
    assert decision == Decision(K.DOWN_INDIRECTLY_CONNECTED, frozenset({A, B}), False)


def test_view_from_gossip_ignores_downed_observers_and_members() -> None:
    g = Gossip((*FIVE[:4], member(5, status=S.DOWN))).mark_unreachable(A, E).mark_unreachable(E, B)
    v = DowningView.from_gossip(g, B)
    assert v.unreachable == frozenset() and v.indirectly_connected == frozenset()


# -- the stability timer ------------------------------------------------------------------


def test_decides_only_after_stable_after() -> None:
    clock = FakeClock()
    sbr = SplitBrainResolver(stable_after=1.0, clock=clock)
    sbr.update(view(A, FIVE, {D, E}))
    clock.now += 0.99
    assert sbr.decide() is None
    clock.now += 0.01
    decision = sbr.decide()
    assert decision is not None and decision.down == {D, E}
    assert sbr.decide() is None  # the timer restarted...
    clock.now += 1.0
    assert sbr.decide() == decision  # ...and an unapplied decision is repeated
    assert sbr.statistics().decisions == 2


def test_a_change_restarts_the_timer_but_joining_members_do_not() -> None:
    clock = FakeClock()
    sbr = SplitBrainResolver(stable_after=1.0, clock=clock)
    sbr.update(view(A, FIVE, {E}))
    clock.now += 0.6
    sbr.update(view(A, FIVE, {D, E}))
    clock.now += 0.6
    assert sbr.decide() is None
    sbr.update(view(A, (*FIVE, member(6, status=S.JOINING)), {D, E}))
    clock.now += 0.4
    decision = sbr.decide()
    assert decision is not None and decision.down == {D, E}


def test_no_decision_while_all_is_reachable_or_when_this_node_is_on_its_way_out() -> None:
    clock = FakeClock()
    sbr = SplitBrainResolver(clock=clock)
    assert sbr.decide() is None
    sbr.update(view(A, FIVE, set()))
    clock.now += 10
    assert sbr.decide() is None
    leaving = (member(1, status=S.EXITING), *FIVE[1:])
    sbr.update(view(A, leaving, {E}))
    clock.now += 10
    assert sbr.decide() is None


def test_down_all_when_unstable_for_too_long() -> None:
    clock = FakeClock()
    sbr = SplitBrainResolver(stable_after=1.0, clock=clock)  # unstable limit: 1 + 4 s
    flapping = [{D}, {D, E}]
    decisions = []
    for step in range(14):
        sbr.update(view(A, FIVE, flapping[step % 2]))
        clock.now += 0.5
        decisions.append(sbr.decide())
    first = next(i for i, d in enumerate(decisions) if d is not None)
    assert first == 9  # 5 s after the first unreachable member
    assert decisions[first] == Decision(K.DOWN_ALL, frozenset(m.unique_address for m in FIVE), True)


def test_down_all_when_unstable_can_be_disabled() -> None:
    clock = FakeClock()
    sbr = SplitBrainResolver(stable_after=1.0, down_all_when_unstable=False, clock=clock)
    for step in range(100):
        sbr.update(view(A, FIVE, [{D}, {D, E}][step % 2]))
        clock.now += 0.5
        assert sbr.decide() is None


@pytest.mark.parametrize(
    "build",
    [
        lambda: SplitBrainResolver(stable_after=0),
        lambda: SplitBrainResolver(down_all_when_unstable=-1.0),
        lambda: StaticQuorum(0),
        lambda: KeepMajority(role=""),
    ],
)
def test_invalid_settings_are_refused(build: object) -> None:
    with pytest.raises(ConfigurationError):
        build()  # type: ignore[operator]
