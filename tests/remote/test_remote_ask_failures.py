"""Asks whose request is dropped (here or on the remote node) fail at once, not at their timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from remote_support import FAST, WAIT, Echo, MakeSystem, Num, Recorder

from casty.actors import ActorRef, Behaviors
from casty.errors import (
    ActorStopped,
    CastyError,
    EncodeError,
    MailboxFull,
    UnhandledMessage,
)
from casty.remote import RemoteActorSystem

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
