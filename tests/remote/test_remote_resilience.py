"""Reconnects, restarts, bounded queues and node loss (a subprocess node killed with SIGKILL)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from remote_support import (
    FAST,
    DeadLetters,
    Echo,
    MakeSystem,
    Num,
    Recorder,
    Reply,
    Watcher,
    connected,
    echo_behavior,
    incarnations,
    watched_by,
)

from casty.actors import Behaviors, EventStreamSubscribe, Terminated
from casty.remote import PeerConnected, PeerLost, RemoteActorSystem, RemoteDeadLetterReason
from casty.testing import FakeNetwork, wait_until

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


async def test_overflow_of_the_outbound_queue_goes_to_dead_letters(
    make_system: MakeSystem, dead_letters: DeadLetters
) -> None:
    a = await make_system(settings=replace(FAST, outbound_queue_size=10))
    dropped = dead_letters(a)
    nowhere = a.resolve("casty://t@127.0.0.1:1/user/x")  # nobody listens: queued meanwhile
    for n in range(15):
        nowhere.tell(Num(n))
    await dropped.wait_count(5)
    assert [d.message for d in dropped.messages[:5]] == [Num(n) for n in range(10, 15)]
    assert {d.reason for d in dropped.messages[:5]} == {RemoteDeadLetterReason.OUTBOUND_QUEUE_FULL}
    assert a.remote_statistics().peers[0].queued == 10


@pytest.mark.slow
async def test_queued_messages_become_dead_letters_when_the_peer_never_answers(
    make_system: MakeSystem, dead_letters: DeadLetters
) -> None:
    a = await make_system(settings=replace(FAST, failure_timeout=0.3))
    dropped = dead_letters(a)
    lost = Recorder(a, "lost")
    a.event_stream.tell(EventStreamSubscribe(event_type=PeerLost, handler=lost.ref))
    nowhere = a.resolve("casty://t@127.0.0.1:1/user/x")
    for n in range(3):
        nowhere.tell(Num(n))
    await dropped.wait_count(3)
    assert {d.reason for d in dropped.messages} == {RemoteDeadLetterReason.PEER_UNREACHABLE}
    await lost.wait_count(1)
    assert lost.messages[0].incarnation is None and not lost.messages[0].quarantined


async def test_messages_are_buffered_while_reconnecting_and_flushed_after(
    make_system: MakeSystem,
) -> None:
    network = FakeNetwork()
    settings = replace(FAST, failure_timeout=10.0)
    a = await make_system(host="node-a", transport=network.transport("node-a"), settings=settings)
    b = await make_system(host="node-b", transport=network.transport("node-b"), settings=settings)
    sink = Recorder(b, "sink")
    target = a.resolve(sink.ref.address)
    target.tell(Num(0))
    await sink.wait_count(1)
    network.partition("node-a", "node-b")
    network.sever("node-a", "node-b")
    await wait_until(lambda: not connected(a))
    for n in range(1, 5000):  # a backlog of several frames' worth, flushed in slices
        target.tell(Num(n))
    assert a.remote_statistics().peers[0].queued == 4999
    network.heal()
    assert await sink.wait_count(5000) == [Num(n) for n in range(5000)]
    assert not a.is_quarantined(b.node_address, b.incarnation)  # same incarnation came back


async def test_reconnects_to_a_restarted_peer(make_system: MakeSystem) -> None:
    a = await make_system()
    b = await make_system()
    port, first = b.node_address.port, b.incarnation
    events = Recorder(a, "events")
    a.event_stream.tell(EventStreamSubscribe(event_type=PeerConnected, handler=events.ref))
    a.event_stream.tell(EventStreamSubscribe(event_type=PeerLost, handler=events.ref))
    Recorder(b, "sink")
    target = a.resolve(b.address + "/user/sink")
    watcher = Watcher(a, "watcher")
    await watcher.watch(target)
    await wait_until(lambda: watched_by(b) == 1)
    await b.shutdown()
    await wait_until(lambda: watcher.terminated() == [Terminated(target)])
    restarted = await make_system(port=port)
    sink = Recorder(restarted, "sink")
    assert restarted.incarnation != first
    target.tell(Num(1))
    assert await sink.wait_count(1) == [Num(1)]
    await wait_until(lambda: incarnations(a) == [restarted.incarnation])
    kinds = [(type(e).__name__, e.incarnation) for e in events.messages]
    assert kinds[:3] == [
        ("PeerConnected", first),
        ("PeerLost", first),
        ("PeerConnected", restarted.incarnation),
    ]


async def test_a_peer_restart_behind_a_live_connection_fires_old_watches(
    make_system: MakeSystem,
) -> None:
    # B is replaced at the same address without telling A (no shutdown notice reaches A):
    # A learns of the new incarnation from the handshake and fires the old one's watches.
    network = FakeNetwork()
    a = await make_system(host="node-a", transport=network.transport("node-a"))
    b = await make_system(host="node-b", transport=network.transport("node-b"))
    b.spawn(Behaviors.ignore(), "target")
    lost = Recorder(a, "lost")
    a.event_stream.tell(EventStreamSubscribe(event_type=PeerLost, handler=lost.ref))
    watcher = Watcher(a, "watcher")
    target = a.resolve(b.address + "/user/target")
    await watcher.watch(target)
    await wait_until(lambda: watched_by(b) == 1)
    port, first = b.node_address.port, b.incarnation
    network.partition("node-b", "node-a", oneway=True)  # B's goodbye never reaches A
    await b.shutdown()
    network.heal()
    restarted = await make_system(host="node-b", port=port, transport=network.transport("node-b"))
    sink = Recorder(restarted, "sink")
    a.resolve(sink.ref.address).tell(Num(5))
    assert await sink.wait_count(1) == [Num(5)]
    await wait_until(lambda: watcher.terminated() == [Terminated(target)])
    assert a.is_quarantined(restarted.node_address, first)
    await lost.wait_count(1)
    assert (lost.messages[0].incarnation, lost.messages[0].reason) == (first, "peer restarted")


async def test_basic_tell_and_ask_over_memory_transport(make_system: MakeSystem) -> None:
    network = FakeNetwork()
    a = await make_system(host="node-a", transport=network.transport("node-a"))
    b = await make_system(host="node-b", transport=network.transport("node-b"))
    assert b.address.startswith("casty://t@node-b:")
    sink = Recorder(b, "sink")
    target = a.resolve(sink.ref.address)
    for n in range(100):
        target.tell(Num(n))
    assert await sink.wait_count(100) == [Num(n) for n in range(100)]
    b.spawn(echo_behavior(), "echo")
    echo = a.resolve(b.address + "/user/echo")
    assert await a.ask(echo, lambda r: Echo("hi", r), timeout=5.0) == Reply("hi")


NODE_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {here!r})
    from remote_support import Recorder
    from casty.remote import RemoteActorSystem

    async def main():
        async with RemoteActorSystem("t") as system:
            Recorder(system, "victim")
            print(system.node_address.port, flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())
    """
)


@pytest.mark.slow
async def test_watch_fires_when_a_node_process_is_killed(make_system: MakeSystem) -> None:
    a = await make_system(settings=replace(FAST, failure_timeout=0.5))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        NODE_SCRIPT.format(here=str(HERE)),
        stdout=asyncio.subprocess.PIPE,
        cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20.0):
            port = int(await process.stdout.readline())
        victim = a.resolve(f"casty://t@127.0.0.1:{port}/user/victim")
        watcher = Watcher(a, "watcher")
        await watcher.watch(victim)
        victim.tell(Num(1))
        await wait_until(lambda: connected(a))
        incarnation = a.remote_statistics().peers[0].incarnation
        assert incarnation is not None
        process.send_signal(signal.SIGKILL)
        await wait_until(lambda: watcher.terminated() == [Terminated(victim)], 5.0)
        assert a.is_quarantined(f"127.0.0.1:{port}", incarnation)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_remote_system_works_without_start_until_started() -> None:
    # Messages told before start are queued, and leave once the node listens.
    async with RemoteActorSystem("t", settings=FAST) as b:
        sink = Recorder(b, "sink")
        early = RemoteActorSystem("t", settings=FAST)
        target = early.resolve(sink.ref.address)
        target.tell(Num(1))
        async with early:
            assert await sink.wait_count(1) == [Num(1)]
