"""Subscribing to membership events after start: initial state as events, then live changes."""

from __future__ import annotations

import asyncio

import pytest
from cluster_harness import Recorder, free_ports

from casty import EventStreamSubscribe
from casty.cluster import ClusteredActorSystem, LeaderChanged, MemberUp, TopologySnapshot
from casty.errors import ConfigurationError
from casty.testing import wait_until


@pytest.mark.slow
async def test_a_late_subscriber_gets_the_current_members_as_events_then_each_change_once() -> None:
    """The spec's start: three workers, each listing the others, ``required_quorum=3``; the
    subscription is made after ``async with`` returned."""
    ports = free_ports(3)
    workers = [
        ClusteredActorSystem(
            "task-queue",
            port=port,
            node_id=f"worker-{i}",
            seed_nodes=[("127.0.0.1", p) for p in ports if p != port],
            required_quorum=3,
        )
        for i, port in enumerate(ports)
    ]
    late = ClusteredActorSystem(
        "task-queue", node_id="worker-3", seed_nodes=[("127.0.0.1", ports[0])]
    )
    try:
        await asyncio.gather(*(w.__aenter__() for w in workers))
        system = workers[0]
        initial = Recorder(system, "with-initial-state")
        plain = Recorder(system, "plain")
        system.cluster.subscribe(initial.ref, MemberUp, LeaderChanged, initial_state_as_events=True)
        system.event_stream.tell(EventStreamSubscribe(MemberUp, plain.ref))
        await wait_until(lambda: len(initial.of(MemberUp)) == 3, 5.0)
        assert {e.member.node_id for e in initial.of(MemberUp)} == {
            "worker-0",
            "worker-1",
            "worker-2",
        }
        assert initial.of(LeaderChanged) == [LeaderChanged(system.cluster.leader)]
        assert plain.of(MemberUp) == []  # a plain subscription sees later changes only
        await late.__aenter__()
        await wait_until(lambda: len(plain.of(MemberUp)) == 1, 10.0)
        await wait_until(lambda: len(initial.of(MemberUp)) == 4, 5.0)
        ups = [e.member.node_id for e in initial.of(MemberUp)]
        assert sorted(ups) == ["worker-0", "worker-1", "worker-2", "worker-3"]  # each once
        assert ups[-1] == "worker-3"  # the initial events came first
        assert [e.member.node_id for e in plain.of(MemberUp)] == ["worker-3"]
        assert not initial.of(TopologySnapshot)
    finally:
        await asyncio.gather(*(s.shutdown(leave=False) for s in [*workers, late]))


async def test_subscribe_checks_its_event_types() -> None:
    async with ClusteredActorSystem("test") as system:
        recorder = Recorder(system)
        with pytest.raises(ConfigurationError, match="cluster event"):
            system.cluster.subscribe(recorder.ref, str)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="initial_state_as_events"):
            system.cluster.subscribe(recorder.ref, initial_state_as_events=True)
        system.cluster.subscribe(recorder.ref)  # no event types: topology snapshots, as before
        await wait_until(lambda: bool(recorder.of(TopologySnapshot)), 5.0)
