"""Joining through imperfect seeds, on real TCP: seeds that exit, refuse, or are missing."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest
from cluster_harness import free_ports

from casty.abc import Address
from casty.cluster import ClusterConfig, ClusteredActorSystem, JoinConfig, MemberStatus
from casty.errors import JoinRefused, QuorumNotReached
from casty.testing import wait_until

QUICK = ClusterConfig(
    join=JoinConfig(
        retry_interval=0.05, max_retry_interval=0.2, seed_node_timeout=0.3, log_interval=0.3
    )
)


def said(caplog: pytest.LogCaptureFixture, *parts: str) -> list[str]:
    """The messages logged by the cluster layer that contain every one of ``parts``."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "casty.cluster" and all(p in r.getMessage() for p in parts)
    ]


@pytest.mark.slow
async def test_a_joiner_nacked_by_an_exiting_seed_says_so_keeps_asking_and_joins_it_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="casty.cluster")
    (port,) = free_ports(1)
    address = Address("127.0.0.1", port)
    seed = ClusteredActorSystem("s", port=port, node_id="seed", config=QUICK)
    joiner = ClusteredActorSystem("s", node_id="joiner", seed_nodes=[address], config=QUICK)
    reborn = ClusteredActorSystem("s", port=port, node_id="seed-again", config=QUICK)
    release = asyncio.Event()
    try:
        await seed.__aenter__()
        seed.cluster.add_exit_hook(release.wait)  # keeps the seed exiting until released
        async with asyncio.TaskGroup() as tasks:
            leaving = tasks.create_task(seed.leave())
            await seed.cluster.wait_until(lambda c: c.self_status is MemberStatus.EXITING, 5.0)
            joining = tasks.create_task(joiner.__aenter__())
            # The exiting seed answers "alive, not a member": the joiner says it waits for it.
            await wait_until(
                lambda: bool(said(caplog, "still joining", f"{address} answered that it is not")),
                10.0,
            )
            release.set()
            assert await leaving
            # The removed seed answers nothing any more: its old answer expires.
            await wait_until(
                lambda: bool(said(caplog, "still joining", f"no answer from {address}")), 10.0
            )
            assert not joining.done()
            await seed.shutdown()
            await reborn.__aenter__()  # a new cluster at the seed's address: the joiner joins it
            await joining
        assert joiner.cluster.is_up
        await joiner.cluster.wait_until(lambda c: len(c.up_members) == 2, 10.0)
        assert {m.node_id for m in joiner.cluster.members} == {"seed-again", "joiner"}
    finally:
        release.set()
        await asyncio.gather(*(s.shutdown(leave=False) for s in (joiner, reborn, seed)))
    # Calm: at most one line per log interval (0.3 s), not one per round (0.05 to 0.2 s).
    times = [r.created for r in caplog.records if "still joining" in r.getMessage()]
    assert all(b - a >= 0.25 for a, b in itertools.pairwise(times))


@pytest.mark.slow
async def test_a_seed_of_another_system_is_skipped_and_the_join_goes_through_another(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with (
        ClusteredActorSystem("other", node_id="stranger") as stranger,
        ClusteredActorSystem("s", node_id="seed") as seed,
    ):
        seeds = [stranger.node_address, seed.node_address]
        async with ClusteredActorSystem(
            "s", node_id="joiner", seed_nodes=seeds, config=QUICK
        ) as joiner:
            await joiner.cluster.wait_until(lambda c: len(c.up_members) == 2, 10.0)
            assert {m.node_id for m in joiner.cluster.members} == {"seed", "joiner"}
        assert [m.node_id for m in stranger.cluster.members] == ["stranger"]
    skipped = said(caplog, f"skipping seed {stranger.node_address}")
    assert len(skipped) == 1
    # Worded from the joiner's side: this node is the connecting one, of system 's'.
    assert "this node (actor system 's')" in skipped[0]
    assert "the connecting node is 's', the accepting node is 'other'" in skipped[0]


@pytest.mark.slow
async def test_join_refused_only_when_every_reachable_seed_refuses() -> None:
    (nobody,) = free_ports(1)
    async with ClusteredActorSystem("alpha", node_id="stranger") as stranger:
        seeds = [stranger.node_address, Address("127.0.0.1", nobody)]
        joiner = ClusteredActorSystem("beta", seed_nodes=seeds, config=QUICK)
        with pytest.raises(JoinRefused) as refused:
            await joiner.__aenter__()
    message = str(refused.value)
    assert f"seed {stranger.node_address} refused the handshake of this node" in message
    assert f"127.0.0.1:{nobody}: unreachable" in message
    assert "this node is 'alpha'" not in message  # not the seed's point of view


@pytest.mark.slow
async def test_an_explicitly_empty_seed_list_keeps_retrying_and_says_so_calmly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="casty.cluster")
    config = ClusterConfig(
        join=JoinConfig(retry_interval=0.05, max_retry_interval=0.2, log_interval=60.0),
        join_timeout=0.4,
    )
    system = ClusteredActorSystem("test", seed_nodes=[], config=config)
    with pytest.raises(QuorumNotReached):
        await system.__aenter__()
    assert len(said(caplog, "no seed nodes known")) == 1


async def test_omitted_seeds_found_a_one_node_cluster_at_once() -> None:
    async with ClusteredActorSystem("test", node_id="alone") as system:
        assert system.cluster.is_up
        assert [m.node_id for m in system.cluster.members] == ["alone"]
