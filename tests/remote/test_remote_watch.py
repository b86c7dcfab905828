"""Remote death watch: stop, unwatch, node shutdown, quarantine, and the failure detector."""

from __future__ import annotations

import pytest
from remote_support import (
    FAST,
    DeadLetters,
    MakeSystem,
    Num,
    Recorder,
    Watcher,
    connected,
    watched_by,
)

from casty.actors import Behaviors, EventStreamSubscribe, Terminated
from casty.errors import ConnectFailed, HandshakeFailed
from casty.remote import PeerLost, RemoteDeadLetterReason
from casty.testing import FakeNetwork, wait_until


async def test_watch_fires_when_the_remote_actor_stops(make_system: MakeSystem) -> None:
    a, b = await make_system(), await make_system()
    target = b.spawn(Behaviors.ignore(), "target")
    watcher = Watcher(a, "watcher")
    remote = a.resolve(target.address)
    await watcher.watch(remote)
    await wait_until(lambda: watched_by(b) == 1)
    await b.stop(target)
    await wait_until(lambda: watcher.terminated() == [Terminated(remote)])
    assert a.remote_statistics().peers[0].watching == 0


async def test_terminated_comes_after_the_messages_sent_before_stopping(
    make_system: MakeSystem,
) -> None:
    a, b = await make_system(), await make_system()
    watcher = Watcher(a, "watcher")

    def chatty(ctx, msg):  # type: ignore[no-untyped-def]
        for n in range(50):
            msg.tell(Num(n))
        return Behaviors.stopped()

    target = b.spawn(Behaviors.receive(chatty), "chatty")
    remote = a.resolve(target.address)
    await watcher.watch(remote)
    await wait_until(lambda: watched_by(b) == 1)
    target.tell(b.resolve(watcher.ref.address))
    await wait_until(lambda: len(watcher.terminated()) == 51)
    assert watcher.terminated() == [*(Num(n) for n in range(50)), Terminated(remote)]


async def test_watching_an_actor_that_does_not_exist_fires_at_once(
    make_system: MakeSystem,
) -> None:
    a, b = await make_system(), await make_system()
    watcher = Watcher(a, "watcher")
    remote = a.resolve(b.address + "/user/ghost")
    await watcher.watch(remote)
    await wait_until(lambda: watcher.terminated() == [Terminated(remote)])


async def test_unwatch_stops_the_notice(make_system: MakeSystem) -> None:
    a, b = await make_system(), await make_system()
    target = b.spawn(Behaviors.ignore(), "target")
    sentinel = b.spawn(Behaviors.ignore(), "sentinel")
    watcher = Watcher(a, "watcher")
    remote, remote_sentinel = a.resolve(target.address), a.resolve(sentinel.address)
    await watcher.watch(remote)
    await watcher.unwatch(remote)
    await watcher.watch(remote_sentinel)
    await wait_until(lambda: watched_by(b) == 1)
    await b.stop(target)
    await b.stop(sentinel)
    # The sentinel's notice travels behind anything the target's stop could have sent.
    await wait_until(lambda: watcher.terminated() == [Terminated(remote_sentinel)])


async def test_watch_fires_when_the_remote_node_shuts_down(make_system: MakeSystem) -> None:
    a, b = await make_system(), await make_system()
    lost = Recorder(a, "lost")
    a.event_stream.tell(EventStreamSubscribe(event_type=PeerLost, handler=lost.ref))
    target = b.spawn(Behaviors.ignore(), "target")
    watcher = Watcher(a, "watcher")
    remote = a.resolve(target.address)
    await watcher.watch(remote)
    await wait_until(lambda: watched_by(b) == 1)
    await b.shutdown()
    await wait_until(lambda: watcher.terminated() == [Terminated(remote)])
    await lost.wait_count(1)
    event = lost.messages[0]
    assert (event.address, event.incarnation, event.quarantined) == (
        b.node_address,
        b.incarnation,
        True,
    )
    assert event.reason.startswith(RemoteDeadLetterReason.PEER_SHUT_DOWN)


@pytest.mark.slow
async def test_watch_fires_when_the_node_stays_unreachable(make_system: MakeSystem) -> None:
    network = FakeNetwork()
    a = await make_system(host="node-a", transport=network.transport("node-a"))
    b = await make_system(host="node-b", transport=network.transport("node-b"))
    target = b.spawn(Behaviors.ignore(), "target")
    watcher = Watcher(a, "watcher")
    remote = a.resolve(target.address)
    await watcher.watch(remote)
    await wait_until(lambda: watched_by(b) == 1)
    network.partition("node-a", "node-b")
    network.sever("node-a", "node-b")  # the connection breaks and reconnects are refused
    await wait_until(lambda: watcher.terminated() == [Terminated(remote)], 3 * FAST.failure_timeout)
    assert a.is_quarantined(b.node_address, b.incarnation)
    # B gave up on A's watch too, and refuses A's incarnation after healing.
    await wait_until(lambda: watched_by(b) == 0, 3.0)
    network.heal()
    with pytest.raises(HandshakeFailed, match="quarantined"):
        await a.associate(b.node_address, timeout=2.0)


@pytest.mark.slow
async def test_failure_detector_fires_when_a_connected_peer_goes_silent(
    make_system: MakeSystem,
) -> None:
    network = FakeNetwork()
    a = await make_system(host="node-a", transport=network.transport("node-a"))
    b = await make_system(host="node-b", transport=network.transport("node-b"))
    target = b.spawn(Behaviors.ignore(), "target")
    watcher = Watcher(a, "watcher")
    remote = a.resolve(target.address)
    await watcher.watch(remote)
    await wait_until(lambda: watched_by(b) == 1)
    await wait_until(lambda: connected(a))
    # Frames are dropped but no connection breaks: only heartbeats can tell.
    network.partition("node-a", "node-b")
    await wait_until(lambda: watcher.terminated() == [Terminated(remote)], 3.0)
    assert a.is_quarantined(b.node_address, b.incarnation)


async def test_quarantine_fires_watches_and_refuses_the_incarnation(
    make_system: MakeSystem, dead_letters: DeadLetters
) -> None:
    a, b = await make_system(), await make_system()
    target = b.spawn(Behaviors.ignore(), "target")
    watcher = Watcher(a, "watcher")
    remote = a.resolve(target.address)
    await watcher.watch(remote)
    await wait_until(lambda: watched_by(b) == 1)
    a.quarantine(b.node_address, reason="downed by the cluster")
    await wait_until(lambda: watcher.terminated() == [Terminated(remote)])
    assert a.is_quarantined(b.node_address, b.incarnation)
    # Both directions now refuse: B cannot reach A, A does not accept B's incarnation.
    with pytest.raises(HandshakeFailed, match="quarantined"):
        await b.associate(a.node_address, timeout=2.0)
    with pytest.raises(HandshakeFailed, match="quarantined"):
        await a.associate(b.node_address, timeout=2.0)
    dropped = dead_letters(a)
    remote.tell(Num(1))
    await dropped.wait_count(1)
    assert dropped.messages[0].reason in (
        RemoteDeadLetterReason.PEER_QUARANTINED,
        RemoteDeadLetterReason.HANDSHAKE_REFUSED,
    )


async def test_a_message_told_in_the_turn_of_the_quarantine_becomes_a_dead_letter(
    make_system: MakeSystem, dead_letters: DeadLetters
) -> None:
    a, b = await make_system(), await make_system()
    sink = Recorder(b, "sink")
    remote = a.resolve(sink.ref.address)
    remote.tell(Num(0))
    await sink.wait_count(1)  # connected, and the writer idle again
    dropped = dead_letters(a)
    a.quarantine(b.node_address, reason="downed by the cluster")
    remote.tell(Num(1))  # same loop turn: the cancelled writer has not run yet
    await dropped.wait_count(1)
    assert [(d.message, d.reason) for d in dropped.messages] == [
        (Num(1), RemoteDeadLetterReason.PEER_QUARANTINED)
    ]
    assert sink.messages == [Num(0)]


async def test_associate_fails_for_an_address_nobody_listens_on(make_system: MakeSystem) -> None:
    a = await make_system()
    with pytest.raises(ConnectFailed):
        await a.associate("127.0.0.1:1", timeout=0.2)


async def test_a_node_that_dials_a_quarantined_peer_tells_it_why(make_system: MakeSystem) -> None:
    a, b = await make_system(), await make_system()
    await a.associate(b.node_address)
    a.quarantine(b.node_address, reason="downed by the cluster")
    lost = Recorder(b, "lost")
    b.event_stream.tell(EventStreamSubscribe(event_type=PeerLost, handler=lost.ref))
    with pytest.raises(HandshakeFailed, match="quarantined"):
        await a.associate(b.node_address, timeout=2.0)  # B accepts, A says why and leaves
    [event] = await lost.wait_count(1)
    assert event.address == a.node_address and "quarantined this node" in event.reason
