"""Asks whose request is dropped (here or on the remote node) fail at once, not at their timeout."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import msgpack
import pytest
from remote_support import (
    FAST,
    WAIT,
    Blob,
    DeadLetters,
    Echo,
    Forward,
    MakeSystem,
    Num,
    Recorder,
    Reply,
    Secret,
    echo_behavior,
)

from casty.abc import Address, Connection
from casty.actors import ActorContext, ActorRef, Behavior, Behaviors, DeadLetterReason
from casty.errors import (
    ActorStopped,
    AskTimeout,
    CastyError,
    DecodeError,
    EncodeError,
    FrameTooLarge,
    MailboxFull,
    UnhandledMessage,
)
from casty.remote import RemoteActorSystem
from casty.serializers import MsgpackSerializer
from casty.testing import wait_until
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


async def test_an_ask_forwarded_on_by_a_lost_node_still_gets_the_reply(
    make_system: MakeSystem,
) -> None:
    # B hands the reply ref on to C and is then lost: C's reply must still end the ask (a
    # version that failed asks in flight with the target's node broke this).
    a, b, c = await make_system(), await make_system(), await make_system()
    forwarder = b.spawn(echo_behavior(), "forwarder")
    holder = Recorder(c, "holder")
    held = b.resolve(holder.ref.address)
    waiting = asyncio.ensure_future(
        a.ask(a.resolve(forwarder.address), lambda r: Forward(held, Echo("?", r)), timeout=NEVER)
    )
    [request] = await holder.wait_count(1)
    a.quarantine(b.node_address, reason="downed by the cluster")
    request.reply_to.tell(Reply("from C"))
    async with asyncio.timeout(WAIT):
        assert await waiting == Reply("from C")


async def test_a_remote_reply_after_the_ask_ended_is_a_late_ask_reply(
    make_system: MakeSystem, dead_letters: DeadLetters
) -> None:
    a, b = await make_system(), await make_system()
    holder = Recorder(b, "holder")
    with pytest.raises(AskTimeout):
        await a.ask(a.resolve(holder.ref.address), lambda r: Echo("?", r), timeout=0.1)
    dropped = dead_letters(a)
    [request] = await holder.wait_count(1)
    request.reply_to.tell(Reply("too late"))
    await dropped.wait_count(1)
    letter = dropped.messages[0]
    assert (letter.message, letter.reason) == (Reply("too late"), DeadLetterReason.LATE_ASK_REPLY)


async def test_a_failure_notice_over_the_frame_limit_is_logged_as_an_operation(
    make_system: MakeSystem, caplog: pytest.LogCaptureFixture
) -> None:
    # A notice naming a long recipient path outgrows a tiny frame limit where the request still
    # fits; its log line named the control operation as if it were a path
    # ("casty://t@127.0.0.1:43039" + "7"). The path length that does this depends on the
    # addresses, so the test grows the path until the notice, not the request, is too large.
    a = await make_system(transport=TCPTransport(max_frame_size=400))
    b = await make_system(transport=TCPTransport(max_frame_size=400))
    line = f"dropping operation 7 to {a.address}"
    with caplog.at_level(logging.ERROR, "casty.remote"):
        for length in range(300, 380, 2):
            nobody = a.resolve(b.address + "/user/" + "x" * length)
            try:
                await a.ask(nobody, lambda r: Echo("?", r), timeout=0.3)
            except ActorStopped:
                continue  # the notice fitted: try a longer path
            except FrameTooLarge:
                break  # the request itself no longer fits
            except AskTimeout:
                await wait_until(lambda: line in caplog.text)
                return
    pytest.fail("no path length made the notice, and only the notice, too large")


class RecordingTCPTransport(TCPTransport):
    """TCP whose dialled connections keep a copy of every frame they receive."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[bytes] = []

    async def connect(self, address: Address, timeout: float | None = None) -> Connection:
        conn = await super().connect(address, timeout)
        deliver = conn.receive_into

        async def receive_into(handler: Callable[[list[bytes]], None]) -> None:
            def record(frames: list[bytes]) -> None:
                self.received.extend(frames)
                handler(frames)

            await deliver(record)

        conn.receive_into = receive_into  # type: ignore[method-assign]
        return conn


async def test_what_follows_a_dropped_reply_stays_behind_its_failure_notice(
    make_system: MakeSystem,
) -> None:
    # Per-connection order covers control operations: B drops a reply (no wire form), which
    # queues the failure notice (operation 7) for A, then tells A's sink. Before, that tell
    # was written at once, ahead of the notice.
    recording = RecordingTCPTransport()
    a, b = await make_system(transport=recording), await make_system()
    sink = Recorder(a, "sink")
    remote_sink = b.resolve(sink.ref.address)

    def replier_receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        msg.reply_to.tell(object())
        remote_sink.tell(Num(1))
        return Behaviors.same()

    replier = a.resolve(b.spawn(Behaviors.receive(replier_receive), "replier").address)
    await a.associate(b.node_address)  # A dials: B's frames reach A on the recorded connection
    error = await failure_of(a, replier, lambda r: Echo("?", r))
    assert isinstance(error, EncodeError)
    await sink.wait_count(1)
    frames = [msgpack.unpackb(f, ext_hook=msgpack.ExtType) for f in recording.received]
    recipients = [recipient for frame in frames for recipient in frame[1::2]]
    assert recipients.index(7) < recipients.index("/user/sink")
