"""Finding the cluster: the seed process (pure), the settings, and joining over TCP."""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

import pytest
from cluster_harness import free_ports

from casty.abc import Address
from casty.cluster import ClusterConfig, ClusteredActorSystem, JoinConfig
from casty.cluster.config import DowningConfig, FailureDetectorConfig, GossipConfig
from casty.cluster.seeds import SeedProcess
from casty.errors import ConfigurationError, QuorumNotReached

A, B, C, D = (Address("10.0.0.1", 7000), Address("10.0.0.2", 7000),
              Address("10.0.0.3", 7000), Address("10.0.0.4", 7000))  # fmt: skip
CONFIG = JoinConfig(retry_interval=0.2, max_retry_interval=1.0, seed_node_timeout=5.0)


def test_the_first_seed_founds_once_every_other_seed_answered_no() -> None:
    process = SeedProcess(A, CONFIG, started_at=0.0)
    process.resolved([A, B, C])
    assert process.is_first_seed
    plan = process.plan(0.0)
    assert not plan.found and plan.ask == {B, C}
    process.nack(B, [A, B, C], 0.0)
    assert not process.should_found(0.1)
    process.nack(C, [A, B, C], 0.2)
    assert process.should_found(0.2)
    assert process.plan(0.2).found


def test_the_first_seed_founds_alone_after_the_seed_node_timeout() -> None:
    process = SeedProcess(A, CONFIG, started_at=0.0)
    process.resolved([A, B])
    assert not process.should_found(4.9)
    # The round wakes up at the deadline instead of a whole backoff later.
    assert process.plan(4.9).next_round_in == pytest.approx(0.1)
    assert process.should_found(5.0)


def test_other_seeds_never_found_and_back_off_while_nobody_answers() -> None:
    process = SeedProcess(B, CONFIG, started_at=0.0)
    process.resolved([A, B, C])
    assert not process.is_first_seed
    waits = [process.plan(t).next_round_in for t in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)]
    assert waits[0] == pytest.approx(0.2)
    assert waits == sorted(waits) and waits[-1] == pytest.approx(1.0)
    process.nack(A, [A, B, C], 100.0)
    process.nack(C, [A, B, C], 100.0)
    assert not process.should_found(100.0)
    # An answer brings the interval back to the base.
    assert process.plan(100.0).next_round_in == pytest.approx(0.2)


def test_nodes_listing_only_the_others_agree_on_the_lowest_as_first() -> None:
    """The spec's configuration: each node lists the other nodes as its seeds."""
    processes = {me: SeedProcess(me, CONFIG, 0.0) for me in (A, B, C)}
    for me, process in processes.items():
        process.resolved({A, B, C} - {me})
    # Before anyone answered, nobody knows it is a seed itself.
    assert not any(p.is_first_seed for p in processes.values())
    for me, process in processes.items():
        for other in {A, B, C} - {me}:
            process.nack(other, {A, B, C} - {other}, 0.0)
    assert [me for me, p in processes.items() if p.should_found(0.0)] == [A]


def test_a_node_that_is_no_seed_never_founds() -> None:
    process = SeedProcess(Address("10.0.0.0", 7000), CONFIG, 0.0)  # lower than every seed
    process.resolved([B, C, D])
    process.nack(B, [B, C, D], 0.0)
    process.nack(C, [B, C, D], 0.0)
    process.nack(D, [B, C, D], 0.0)
    assert not process.is_first_seed and not process.should_found(100.0)


def test_settings_are_checked() -> None:
    for build in (
        lambda: FailureDetectorConfig(heartbeat_interval=0),
        lambda: FailureDetectorConfig(threshold=-1.0),
        lambda: FailureDetectorConfig(monitored_by_nr_of_members=0),
        lambda: FailureDetectorConfig(acceptable_heartbeat_pause=float("inf")),
        lambda: GossipConfig(fanout=0),
        lambda: GossipConfig(different_view_probability=1.5),
        lambda: DowningConfig(strategy="keep-majority"),  # type: ignore[arg-type]
        lambda: DowningConfig(down_all_when_unstable=-1.0),
        lambda: JoinConfig(retry_interval=1.0, max_retry_interval=0.5),
        lambda: ClusterConfig(join_timeout=0.0),
        lambda: ClusterConfig(gossip=None),  # type: ignore[arg-type]
    ):
        with pytest.raises(ConfigurationError):
            build()
    defaults = ClusterConfig()
    assert defaults.failure_detector.heartbeat_interval == 0.5
    assert defaults.failure_detector.acceptable_heartbeat_pause == 1.2
    assert defaults.gossip.interval == 0.25
    assert defaults.downing.stable_after == 1.0


@pytest.mark.slow
async def test_an_empty_seed_list_keeps_retrying_with_backoff_and_logs_calmly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="casty.cluster")
    calls: list[float] = []

    def no_seeds() -> list[Any]:
        calls.append(time.monotonic())
        return []

    config = ClusterConfig(
        join=JoinConfig(retry_interval=0.05, max_retry_interval=0.2, log_interval=60.0),
        join_timeout=1.0,
    )
    system = ClusteredActorSystem("test", discovery=no_seeds, config=config)
    with pytest.raises(QuorumNotReached, match=r"not up within 1\.0 s"):
        await system.__aenter__()
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert len(calls) >= 5  # kept asking
    assert gaps[-1] > gaps[0]  # with backoff
    said = [r.getMessage() for r in caplog.records if "no seed nodes known" in r.getMessage()]
    assert len(said) == 1  # once per log interval, not once per round


@pytest.mark.slow
async def test_the_first_seed_founds_after_the_timeout_when_another_seed_is_silent() -> None:
    low, high = sorted(free_ports(2))
    config = ClusterConfig(join=JoinConfig(seed_node_timeout=0.5))
    seeds = [("127.0.0.1", low), ("127.0.0.1", high)]
    async with ClusteredActorSystem("test", port=low, seed_nodes=seeds, config=config) as first:
        assert first.cluster.is_up
        assert [m.address for m in first.cluster.members] == [Address("127.0.0.1", low)]


@pytest.mark.slow
async def test_a_seed_that_is_not_first_waits_for_the_first() -> None:
    low, high = sorted(free_ports(2))
    config = ClusterConfig(join=JoinConfig(seed_node_timeout=0.2), join_timeout=1.0)
    seeds = [("127.0.0.1", low), ("127.0.0.1", high)]
    system = ClusteredActorSystem("test", port=high, seed_nodes=seeds, config=config)
    with pytest.raises(QuorumNotReached):
        await system.__aenter__()


def test_a_nack_counts_for_the_seed_node_timeout_then_the_seed_is_silent_again() -> None:
    """A seed that answered "not a member" and then stopped answering (it exited, crashed or
    joined elsewhere) is silent again once its answer is ``seed_node_timeout`` old."""
    process = SeedProcess(B, CONFIG, started_at=0.0)
    process.resolved([A, B])
    process.nack(A, [A, B], 0.0)
    assert process.silent_at(0.1) == frozenset()
    assert process.answered_no_at(0.1) == {A}
    assert process.silent_at(5.1) == {A}
    assert process.answered_no_at(5.1) == frozenset()
    process.nack(A, [A, B], 5.2)  # answering again renews it
    assert process.silent_at(5.2) == frozenset()


def test_the_search_explains_itself_from_this_node_s_side() -> None:
    process = SeedProcess(C, CONFIG, started_at=0.0)
    process.resolved([A, B, C])
    process.nack(B, [A, B, C], 0.5)
    said = process.explain(1.0)
    assert f"no answer from {A}" in said
    assert f"{B} answered that it is not a member" in said
    assert f"waiting for the first seed {A}" in said


def test_a_refusing_seed_is_dropped_and_the_others_carry_on() -> None:
    process = SeedProcess(C, CONFIG, started_at=0.0)
    process.resolved([A, B])  # C is no seed: it can only join
    assert process.refuse(A, "another system") is True
    assert process.refuse(A, "another system") is False  # reported once
    assert process.known_seeds == {B}
    assert process.plan(0.0).ask == {B}
    process.learn(D, [A, B])  # another node reporting A does not bring it back
    assert A not in process.known_seeds
    assert not process.refused_by_all()  # B may still let it in
    process.unreachable(B)
    assert process.refused_by_all()
    assert process.refusals == {A: "another system"}
    process.reachable(B)
    assert not process.refused_by_all()


def test_a_node_that_is_a_seed_itself_is_never_refused_by_all() -> None:
    process = SeedProcess(A, CONFIG, started_at=0.0)
    process.resolved([A, B])
    process.refuse(B, "another system")
    assert not process.refused_by_all()
    assert process.should_found(0.0)  # the only seed left is this node: it founds
