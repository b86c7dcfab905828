"""The bounded monitoring ring, the heartbeat sender's state, and the reaper."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casty.abc import Address
from casty.cluster.failure_detector import FailureDetectorRegistry, PhiAccrualFailureDetector
from casty.cluster.gossip import Gossip
from casty.cluster.heartbeat import HeartbeatSender, MonitoringRing, reap_unreachable
from casty.cluster.member import Member, MemberStatus, UniqueAddress
from casty.errors import ConfigurationError


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def node(i: int) -> UniqueAddress:
    return UniqueAddress(Address(f"10.0.{i // 250}.{i % 250 + 1}", 25520), 1000 + i)


@pytest.mark.parametrize("n", range(1, 13))
@pytest.mark.parametrize("k", [1, 2, 5])
def test_all_reachable_every_node_monitors_and_is_monitored_by_exactly_k(n: int, k: int) -> None:
    nodes = [node(i) for i in range(n)]
    ring = MonitoringRing(nodes, monitored_by_nr_of_members=k)
    for x in nodes:
        assert len(ring.receivers(x)) == min(k, n - 1)
        assert x not in ring.receivers(x)
        assert len(ring.monitors_of(x)) == min(k, n - 1)


def test_thirty_nodes_with_defaults_cost_five_heartbeat_links_per_node() -> None:
    nodes = [node(i) for i in range(30)]
    ring = MonitoringRing(nodes)
    links = sum(len(ring.receivers(x)) for x in nodes)
    assert links == 30 * 5  # not 30 * 29
    assert all(len(ring.monitors_of(x)) == 5 for x in nodes)


@pytest.mark.slow
@given(st.integers(2, 20), st.integers(1, 6), st.data())
def test_with_unreachable_nodes_the_bound_holds_and_everyone_stays_watched(
    n: int, k: int, data: st.DataObject
) -> None:
    nodes = [node(i) for i in range(n)]
    unreachable = data.draw(st.sets(st.sampled_from(nodes)))
    ring = MonitoringRing(nodes, unreachable, k)
    reachable = [x for x in nodes if x not in unreachable]
    for x in nodes:
        monitors = ring.monitors_of(x)
        reachable_monitors = [m for m in monitors if m not in unreachable]
        others = len([r for r in reachable if r != x])
        if x in unreachable:
            assert monitors  # somebody still probes it, so it can come back
            assert len(reachable_monitors) <= k
        else:
            assert len(reachable_monitors) == min(k, others)
        assert len(ring.receivers(x)) <= 2 * k


def test_ring_order_is_the_same_for_any_input_order() -> None:
    nodes = [node(i) for i in range(12)]
    shuffled = nodes[:]
    random.Random(3).shuffle(shuffled)
    a, b = MonitoringRing(nodes), MonitoringRing(shuffled)
    assert a.nodes == b.nodes
    assert all(a.receivers(x) == b.receivers(x) for x in nodes)


def test_receivers_of_a_node_not_on_the_ring_are_well_defined() -> None:
    ring = MonitoringRing([node(i) for i in range(8)], monitored_by_nr_of_members=3)
    outsider = node(99)
    assert len(ring.receivers(outsider)) == 3
    assert outsider not in ring.receivers(outsider)


def test_invalid_bound_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        MonitoringRing([node(1)], monitored_by_nr_of_members=0)


Registry = FailureDetectorRegistry[UniqueAddress]


def _sender(clock: FakeClock, me: UniqueAddress, k: int = 5) -> tuple[HeartbeatSender, Registry]:
    registry: Registry = FailureDetectorRegistry(lambda: PhiAccrualFailureDetector(clock=clock))
    return HeartbeatSender(me, registry, monitored_by_nr_of_members=k, clock=clock), registry


def test_a_node_that_never_answers_is_still_detected() -> None:
    clock = FakeClock()
    me, silent = node(0), node(1)
    sender, registry = _sender(clock, me)
    sender.update([me, silent], [])
    assert sender.tick() == {silent}
    assert not registry.is_monitoring(silent)
    clock.now += 0.5  # expected_response_after: the detector starts without an answer
    sender.tick()
    assert registry.is_monitoring(silent)
    clock.now += 2.3
    assert registry.is_available(silent)
    clock.now += 0.1  # seeded history: mean 0.5 s, deviation 0.125 s: 0.5 + 1.2 + 5.23 * 0.125
    assert not registry.is_available(silent)


def test_answers_feed_the_detectors_and_strangers_are_ignored() -> None:
    clock = FakeClock()
    me, peer, stranger = node(0), node(1), node(2)
    sender, registry = _sender(clock, me)
    sender.update([me, peer], [])
    for _ in range(10):
        clock.now += 0.5
        sender.tick()
        sender.heartbeat_response(peer)
        sender.heartbeat_response(stranger)
    assert registry.monitored() == {peer}
    assert registry.is_available(peer)


def test_a_lost_receiver_stays_monitored_until_it_answers_again() -> None:
    clock = FakeClock()
    nodes = [node(i) for i in range(6)]
    me = nodes[0]
    sender, registry = _sender(clock, me, k=1)
    sender.update(nodes, [])
    (lost,) = sender.active_receivers
    for _ in range(4):
        clock.now += 0.5
        sender.heartbeat_response(lost)
    clock.now += 3.0  # silence: the detector gives up on it
    assert not registry.is_available(lost)
    sender.update(nodes, [lost])
    assert lost in sender.active_receivers  # met on the way, so still probed
    # A newcomer lands between us and the lost node: the ring no longer leads to it...
    newcomer = next(
        c
        for c in (node(i) for i in range(6, 500))
        if MonitoringRing([*nodes, c], [lost], 1).receivers(me) == {c}
    )
    sender.update([*nodes, newcomer], [lost])
    assert sender.active_receivers == {newcomer, lost}  # ...yet we keep probing it
    sender.heartbeat_response(lost)  # it is back
    assert sender.active_receivers == {newcomer}
    assert registry.is_available(lost) and not registry.is_monitoring(lost)


def test_removed_members_are_forgotten() -> None:
    clock = FakeClock()
    me, peer = node(0), node(1)
    sender, registry = _sender(clock, me)
    sender.update([me, peer], [])
    sender.heartbeat_response(peer)
    sender.update([me], [])
    assert sender.active_receivers == frozenset()
    assert registry.monitored() == frozenset()


def test_reaper_records_this_nodes_verdicts_in_the_gossip() -> None:
    members = [Member(node(i), f"n{i}", MemberStatus.UP, frozenset(), i + 1) for i in range(3)]
    me, lost = node(0), node(2)
    g = Gossip(members)
    down = reap_unreachable(g, me, lambda n: n != lost)
    assert down.reachability.status(me, lost).value == "unreachable"
    assert reap_unreachable(down, me, lambda n: n != lost) is down
    back = reap_unreachable(down, me, lambda n: True)
    assert back.reachability.is_reachable(lost)
    assert reap_unreachable(g, me, lambda n: n != me) is g  # a node never suspects itself
