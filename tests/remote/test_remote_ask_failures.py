"""Asks whose request is dropped (here or on the remote node) fail at once, not at their timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from remote_support import FAST, WAIT, Blob, Echo, MakeSystem, Num, Recorder, Secret

from casty.actors import ActorContext, ActorRef, Behavior, Behaviors
from casty.errors import (
    ActorStopped,
    CastyError,
    DecodeError,
    EncodeError,
    FrameTooLarge,
    MailboxFull,
    UnhandledMessage,
)
from casty.remote import RemoteActorSystem
from casty.serializers import MsgpackSerializer
from casty.testing import FakeNetwork
from casty.transports import TCPTransport

#: An ask timeout no test may reach: a request that is dropped must fail the ask long before.
NEVER = 60.0


async def failure_of(
    system: RemoteActorSystem, target: ActorRef[Any], factory: Callable[[ActorRef[Any]], object]
) -> CastyError:
    """The error the ask raises, well within `WAIT` seconds (a timeout fails the test)."""
    with pytest.raises(CastyError) as info:
        async with asyncio.timeout(WAIT):
            await system.ask(target, factory, timeout=NEVER)
    return info.value


async def test_a_full_outbound_queue_fails_the_ask_with_mailbox_full(
    make_system: MakeSystem,
) -> None:
    a = await make_system(settings=replace(FAST, outbound_queue_size=1))
    nowhere = a.resolve("casty://t@127.0.0.1:1/user/x")  # nobody listens: the queue fills
    nowhere.tell(Num(0))
    error = await failure_of(a, nowhere, lambda reply_to: Echo("?", reply_to))
    assert isinstance(error, MailboxFull) and "outbound queue full" in str(error)


async def test_a_request_without_a_wire_form_fails_the_ask_with_encode_error(
    make_system: MakeSystem,
) -> None:
    a, b = await make_system(), await make_system()
    sink = Recorder(b, "sink")
    remote = a.resolve(sink.ref.address)
    error = await failure_of(a, remote, lambda reply_to: Echo(object(), reply_to))  # type: ignore[arg-type]
    assert isinstance(error, EncodeError)
    remote.tell(Num(1))  # the peer is still served
    assert await sink.wait_count(1) == [Num(1)]


async def test_a_request_to_a_just_quarantined_peer_fails_the_ask(make_system: MakeSystem) -> None:
    a, b = await make_system(), await make_system()
    sink = Recorder(b, "sink")
    remote = a.resolve(sink.ref.address)
    remote.tell(Num(0))
    await sink.wait_count(1)
    a.quarantine(b.node_address, reason="downed by the cluster")
    error = await failure_of(a, remote, lambda reply_to: Echo("?", reply_to))
    assert isinstance(error, ActorStopped) and "peer quarantined" in str(error)


@pytest.mark.slow
async def test_a_request_to_a_peer_that_stays_unreachable_fails_the_ask(
    make_system: MakeSystem,
) -> None:
    a = await make_system(settings=replace(FAST, failure_timeout=0.2))
    nowhere = a.resolve("casty://t@127.0.0.1:1/user/x")
    error = await failure_of(a, nowhere, lambda reply_to: Echo("?", reply_to))
    assert isinstance(error, ActorStopped) and "peer unreachable" in str(error)


async def test_a_request_to_an_unknown_remote_actor_fails_the_ask(make_system: MakeSystem) -> None:
    a, b = await make_system(), await make_system()
    nobody = a.resolve(b.address + "/user/nobody")
    error = await failure_of(a, nobody, lambda reply_to: Echo("?", reply_to))
    assert isinstance(error, ActorStopped)
    assert "unknown recipient" in str(error) and "/user/nobody" in str(error)


async def test_a_request_to_a_stopped_remote_actor_fails_the_ask(make_system: MakeSystem) -> None:
    a, b = await make_system(), await make_system()
    sink = Recorder(b, "sink")
    remote = a.resolve(sink.ref.address)
    remote.tell(Num(0))
    await sink.wait_count(1)
    await b.stop(sink.ref)
    error = await failure_of(a, remote, lambda reply_to: Echo("?", reply_to))
    assert isinstance(error, ActorStopped) and "recipient stopped" in str(error)


async def test_a_request_the_remote_actor_leaves_unhandled_fails_the_ask(
    make_system: MakeSystem,
) -> None:
    a, b = await make_system(), await make_system()
    picky = b.spawn(Behaviors.receive(lambda ctx, msg: Behaviors.unhandled()), "picky")
    error = await failure_of(a, a.resolve(picky.address), lambda reply_to: Echo("?", reply_to))
    assert isinstance(error, UnhandledMessage)


async def test_a_dropped_reply_does_not_fail_another_ask(make_system: MakeSystem) -> None:
    # The failure names one ask's reply ref: concurrent asks to the same node are untouched.
    a, b = await make_system(), await make_system()
    nobody = a.resolve(b.address + "/user/nobody")
    sink = Recorder(b, "sink")
    silent = a.resolve(sink.ref.address)
    waiting = asyncio.ensure_future(a.ask(silent, lambda r: Echo("hold", r), timeout=0.2))
    await failure_of(a, nobody, lambda reply_to: Echo("?", reply_to))
    await sink.wait_count(1)
    assert not waiting.done()
    with pytest.raises(CastyError, match="no reply"):
        await waiting


async def asked_and_delivered(a: RemoteActorSystem, b: RemoteActorSystem) -> asyncio.Future[object]:
    """An ask from ``a`` whose request reached a silent actor on ``b``: it waits for a reply."""
    sink = Recorder(b, "silent")
    waiting = asyncio.ensure_future(
        a.ask(a.resolve(sink.ref.address), lambda r: Echo("hold", r), timeout=NEVER)
    )
    await sink.wait_count(1)
    return waiting


async def failure_within_wait(waiting: asyncio.Future[object]) -> CastyError:
    with pytest.raises(CastyError) as info:
        async with asyncio.timeout(WAIT):
            await waiting
    return info.value


async def test_an_ask_in_flight_fails_when_its_peer_shuts_down(make_system: MakeSystem) -> None:
    a, b = await make_system(), await make_system()
    waiting = await asked_and_delivered(a, b)
    await b.shutdown()
    error = await failure_within_wait(waiting)
    assert isinstance(error, ActorStopped) and "peer shut down" in str(error)


async def test_an_ask_in_flight_fails_when_its_peer_is_lost(make_system: MakeSystem) -> None:
    # Nothing watches the peer: the ask alone makes the node reconnect, then give up on it.
    network = FakeNetwork()
    a = await make_system(host="node-a", transport=network.transport("node-a"))
    b = await make_system(host="node-b", transport=network.transport("node-b"))
    waiting = await asked_and_delivered(a, b)
    network.partition("node-a", "node-b")
    network.sever("node-a", "node-b")
    error = await failure_within_wait(waiting)
    assert isinstance(error, ActorStopped) and "peer unreachable" in str(error)


async def test_an_ask_in_flight_fails_when_its_peer_restarts(make_system: MakeSystem) -> None:
    network = FakeNetwork()
    a = await make_system(host="node-a", transport=network.transport("node-a"))
    b = await make_system(host="node-b", transport=network.transport("node-b"))
    waiting = await asked_and_delivered(a, b)
    port = b.node_address.port
    network.partition("node-b", "node-a", oneway=True)  # B's goodbye never reaches A
    await b.shutdown()
    network.heal()
    await make_system(host="node-b", port=port, transport=network.transport("node-b"))
    error = await failure_within_wait(waiting)
    assert isinstance(error, ActorStopped) and "restarted" in str(error)


def replying_with(reply: object) -> Behavior[Any]:
    def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        msg.reply_to.tell(reply)
        return Behaviors.same()

    return Behaviors.receive(receive)


@pytest.mark.parametrize(
    ("reply", "error_type", "words"),
    [
        (object(), EncodeError, "dropped the reply: cannot encode"),
        (Blob(b"x" * 100_000), FrameTooLarge, "dropped the reply: message too large"),
        (Secret("unknown to the asker"), DecodeError, "reply from"),
    ],
    ids=["no wire form", "over the frame limit", "undecodable by the asker"],
)
async def test_a_reply_that_cannot_reach_the_asker_fails_the_ask(
    make_system: MakeSystem, reply: object, error_type: type[CastyError], words: str
) -> None:
    strict = MsgpackSerializer(strict=True)  # knows nothing of Secret
    strict.register(Echo)
    strict.register(Blob)
    a = await make_system(serializer=strict, transport=TCPTransport(max_frame_size=64 * 1024))
    b = await make_system(transport=TCPTransport(max_frame_size=64 * 1024))
    replier = b.spawn(replying_with(reply), "replier")
    error = await failure_of(a, a.resolve(replier.address), lambda r: Echo("?", r))
    assert isinstance(error, error_type) and words in str(error)
