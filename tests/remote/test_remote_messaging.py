"""Tell, ask and refs across nodes, over real TCP connections on loopback."""

from __future__ import annotations

import asyncio
import logging
import struct
from functools import partial
from typing import Any

import pytest
from remote_support import (
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
    connected,
    echo_behavior,
    hello,
)

from casty.actors import (
    ActorContext,
    Behavior,
    Behaviors,
    DeadLetterReason,
    SupervisorStrategy,
)
from casty.errors import AskTimeout, ConfigurationError, FrameTooLarge, ResourceClosed
from casty.remote import (
    RemoteActorRef,
    RemoteActorSystem,
    RemoteDeadLetterReason,
    RemoteSettings,
)
from casty.remote.envelope import FRAME_ENVELOPES, encode_handshake
from casty.serializers import MsgpackSerializer
from casty.testing import FakeNetwork, wait_until
from casty.transports import TCPTransport
from casty.transports.memory import MemoryRawPeer


async def test_address_reflects_the_bound_port(make_system: MakeSystem) -> None:
    system = await make_system()
    port = system.node_address.port
    assert port > 0
    assert system.address == f"casty://t@127.0.0.1:{port}"
    ref = system.spawn(Behaviors.ignore(), "a")
    assert ref.address == f"casty://t@127.0.0.1:{port}/user/a"
    assert system.resolve(ref.address) is ref
    assert 0 <= system.incarnation < 2**64


async def test_incarnation_is_random_per_start_unless_given(make_system: MakeSystem) -> None:
    first, second = await make_system(), await make_system()
    assert first.incarnation != second.incarnation
    fixed = await make_system(incarnation=42)
    assert fixed.incarnation == 42


async def test_tells_arrive_in_order(make_system: MakeSystem) -> None:
    a, b = await make_system(), await make_system()
    recorder = Recorder(b, "sink")
    ref = a.resolve(b.address + "/user/sink")
    assert isinstance(ref, RemoteActorRef)
    for n in range(2000):
        ref.tell(Num(n))
    messages = await recorder.wait_count(2000)
    assert messages == [Num(n) for n in range(2000)]
    peer = a.remote_statistics().peers[0]
    assert peer.connected and peer.address == b.node_address and peer.incarnation == b.incarnation


async def test_ask_across_nodes(make_system: MakeSystem) -> None:
    a, b = await make_system(), await make_system()
    b.spawn(echo_behavior(), "echo")
    echo = a.resolve(b.address + "/user/echo")
    for text in ("one", "two", "three"):
        assert await a.ask(echo, partial(Echo, text), timeout=5.0) == Reply(text)


async def test_many_asks_in_flight(make_system: MakeSystem) -> None:
    a, b = await make_system(), await make_system()
    b.spawn(echo_behavior(), "echo")
    echo = a.resolve(b.address + "/user/echo")
    replies = await asyncio.gather(
        *(a.ask(echo, partial(Echo, str(i)), timeout=5.0) for i in range(300))
    )
    assert replies == [Reply(str(i)) for i in range(300)]


async def test_ask_times_out_when_the_remote_actor_does_not_answer(
    make_system: MakeSystem,
) -> None:
    a, b = await make_system(), await make_system()
    silent = Recorder(b, "silent")
    ref = a.resolve(b.address + "/user/silent")
    with pytest.raises(AskTimeout):
        await a.ask(ref, lambda reply_to: Echo("hello?", reply_to), timeout=0.2)
    # The request did arrive: the reply ref is just never used.
    await silent.wait_count(1)


async def test_refs_inside_messages_resolve_on_arrival(make_system: MakeSystem) -> None:
    a, b, c = await make_system(), await make_system(), await make_system()
    relay = b.spawn(echo_behavior(), "relay")
    on_a = Recorder(a, "on-a")
    on_c = Recorder(c, "on-c")
    to_relay = a.resolve(relay.address)
    # A ref naming the receiving node arrives as that node's local ref...
    to_relay.tell(Forward(on_a.ref, Num(1)))
    assert await on_a.wait_count(1) == [Num(1)]
    # ...and a ref naming a third node as a remote ref: B tells C directly.
    to_relay.tell(Forward(c.resolve(on_c.ref.address), Num(2)))
    to_relay.tell(Forward(a.resolve(on_c.ref.address), Num(3)))
    assert await on_c.wait_count(2) == [Num(2), Num(3)]
    peers = {p.address for p in b.remote_statistics().peers}
    assert peers == {a.node_address, c.node_address}


async def test_refs_of_another_system_in_the_process_keep_their_node(
    make_system: MakeSystem,
) -> None:
    # A's own refs travel as bare paths read relative to A; refs of system C, handed to A
    # directly (same process), must still name C on arrival, not A.
    a, b, c = await make_system(), await make_system(), await make_system()
    relay = b.spawn(echo_behavior(), "relay")
    on_a, on_c = Recorder(a, "probe"), Recorder(c, "probe")
    to_relay = a.resolve(relay.address)
    to_relay.tell(Forward(on_c.ref, Num(1)))
    to_relay.tell(Forward(on_a.ref, Num(2)))
    assert await on_c.wait_count(1) == [Num(1)]
    assert await on_a.wait_count(1) == [Num(2)]
    # An ask of C whose request A sends: the reply goes back to C's promise.
    reply = await c.ask(to_relay, lambda reply_to: Echo("via a", reply_to), timeout=WAIT)
    assert reply == Reply("via a")


async def test_a_ref_of_the_sender_arrives_as_one_cached_remote_ref(
    make_system: MakeSystem,
) -> None:
    a, b = await make_system(), await make_system()
    on_b = Recorder(b, "on-b")
    probe = Recorder(a, "probe")
    to_b = a.resolve(on_b.ref.address)
    to_b.tell(Forward(probe.ref, None))
    to_b.tell(Forward(probe.ref, None))
    first, second = [m.target for m in await on_b.wait_count(2)]
    assert type(first) is RemoteActorRef
    assert first is second
    assert first.address == probe.ref.address
    assert first is b.resolve(probe.ref.address)


async def test_a_ref_decoded_twice_is_the_same_object(make_system: MakeSystem) -> None:
    a, b = await make_system(), await make_system()
    first = a.resolve(b.address + "/user/x")
    assert a.resolve(b.address + "/user/x") is first
    assert first == a.resolve(b.address + "/user/x")
    assert first != a.resolve(b.address + "/user/y")
    assert first.path == "/user/x"


async def test_unknown_recipient_becomes_a_dead_letter_on_the_receiving_node(
    make_system: MakeSystem, dead_letters: DeadLetters
) -> None:
    a, b = await make_system(), await make_system()
    dropped = dead_letters(b)
    sink = Recorder(b, "sink")
    a.resolve(b.address + "/user/nobody").tell(Num(1))
    a.resolve(sink.ref.address).tell(Num(2))  # the connection keeps working
    await sink.wait_count(1)
    await dropped.wait_count(1)
    letter = dropped.messages[0]
    assert letter.message == Num(1)
    assert letter.reason == DeadLetterReason.UNKNOWN_RECIPIENT
    assert letter.recipient.path == "/user/nobody"


async def test_message_to_a_stopped_remote_actor_is_a_dead_letter_there(
    make_system: MakeSystem, dead_letters: DeadLetters
) -> None:
    a, b = await make_system(), await make_system()
    dropped = dead_letters(b)
    sink = Recorder(b, "sink")
    ref = a.resolve(sink.ref.address)
    ref.tell(Num(1))
    await sink.wait_count(1)
    await b.stop(sink.ref)
    ref.tell(Num(2))
    await dropped.wait_count(1)
    assert (dropped.messages[0].message, dropped.messages[0].reason) == (
        Num(2),
        DeadLetterReason.RECIPIENT_STOPPED,
    )


async def test_undecodable_message_is_dropped_and_the_connection_stays(
    make_system: MakeSystem, dead_letters: DeadLetters, caplog: pytest.LogCaptureFixture
) -> None:
    strict = MsgpackSerializer(strict=True)
    strict.register(Num)
    a, b = await make_system(), await make_system(serializer=strict)
    dropped = dead_letters(b)
    sink = Recorder(b, "sink")
    ref = a.resolve(sink.ref.address)
    with caplog.at_level(logging.WARNING, "casty.remote"):
        ref.tell(Num(1))
        ref.tell(Secret("not registered on b"))
        ref.tell(Num(2))
        assert await sink.wait_count(2) == [Num(1), Num(2)]
        await dropped.wait_count(1)
    letter = dropped.messages[0]
    assert letter.reason == RemoteDeadLetterReason.UNDECODABLE
    assert isinstance(letter.message, bytes) and b"not registered on b" in letter.message
    assert "undecodable message" in caplog.text
    assert a.remote_statistics().peers[0].connected


async def test_unencodable_message_is_a_dead_letter_at_the_sender(
    make_system: MakeSystem, dead_letters: DeadLetters, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await make_system(), await make_system()
    dropped = dead_letters(a)
    sink = Recorder(b, "sink")
    ref = a.resolve(sink.ref.address)
    ref.tell(Num(0))
    await sink.wait_count(1)
    with caplog.at_level(logging.ERROR, "casty.remote"):
        for n in range(1, 4):
            ref.tell(Num(n))
            ref.tell(object())  # no wire form
        await dropped.wait_count(3)
    assert {d.reason for d in dropped.messages} == {RemoteDeadLetterReason.CANNOT_ENCODE}
    assert await sink.wait_count(4) == [Num(n) for n in range(4)]
    assert "cannot send" in caplog.text


@pytest.mark.parametrize(
    "own_limit", [64 * 1024, 1024 * 1024], ids=["same limits", "the peer's limit is smaller"]
)
async def test_a_message_over_the_frame_limit_is_a_dead_letter_here(
    make_system: MakeSystem, dead_letters: DeadLetters, own_limit: int
) -> None:
    # Each node sends nothing over the smaller of the two limits (the peer announces its own in
    # the handshake): before, a peer with a smaller limit dropped the whole connection and the
    # message was lost without a word.
    a = await make_system(transport=TCPTransport(max_frame_size=own_limit))
    b = await make_system(transport=TCPTransport(max_frame_size=64 * 1024))
    dropped = dead_letters(a)
    sink = Recorder(b, "sink")
    ref = a.resolve(sink.ref.address)
    ref.tell(Num(0))
    await sink.wait_count(1)
    ref.tell(Blob(b"x" * 100_000))
    for _ in range(1, 200):  # many small ones in one batch: they are split across frames
        ref.tell(Blob(b"y" * 1000))
    await dropped.wait_count(1)
    assert dropped.messages[0].reason == RemoteDeadLetterReason.MESSAGE_TOO_LARGE
    assert len(await sink.wait_count(200)) == 200
    with pytest.raises(FrameTooLarge):
        await a.ask(ref, lambda r: Forward(r, Blob(b"z" * 100_000)), timeout=30.0)
    assert a.remote_statistics().peers[0].connected
    assert b.remote_statistics().peers[0].connected


async def test_pickle_serializer_works_across_nodes(make_system: MakeSystem) -> None:
    a, b = await make_system(serializer="pickle"), await make_system(serializer="pickle")
    b.spawn(echo_behavior(), "echo")
    echo = a.resolve(b.address + "/user/echo")
    assert await a.ask(echo, lambda r: Echo("pickled", r), timeout=5.0) == Reply("pickled")


async def test_simultaneous_sends_share_one_connection(make_system: MakeSystem) -> None:
    a, b = await make_system(), await make_system()
    on_a, on_b = Recorder(a, "sink"), Recorder(b, "sink")
    to_b, to_a = a.resolve(on_b.ref.address), b.resolve(on_a.ref.address)
    for n in range(100):  # both nodes dial each other in the same loop turn
        to_b.tell(Num(n))
        to_a.tell(Num(n))
    assert await on_a.wait_count(100) == [Num(n) for n in range(100)]
    assert await on_b.wait_count(100) == [Num(n) for n in range(100)]
    await wait_until(lambda: all(p.connected for p in a.remote_statistics().peers))
    # One connection survives: each side sees exactly one association, connected.
    assert [p.address for p in a.remote_statistics().peers] == [b.node_address]
    assert [p.address for p in b.remote_statistics().peers] == [a.node_address]
    assert a.remote_statistics().peers[0].connected and b.remote_statistics().peers[0].connected


async def test_foreign_and_malformed_addresses_lead_to_dead_letters(
    make_system: MakeSystem, dead_letters: DeadLetters
) -> None:
    a = await make_system()
    dropped = dead_letters(a)
    other_system = a.resolve("casty://other@127.0.0.1:1/user/x")
    garbage = a.resolve("casty://t@no-port/user/x")
    assert not isinstance(other_system, RemoteActorRef)
    assert not isinstance(garbage, RemoteActorRef)
    other_system.tell(Num(1))
    garbage.tell(Num(2))
    await dropped.wait_count(2)
    assert {d.reason for d in dropped.messages} == {DeadLetterReason.UNKNOWN_RECIPIENT}


async def test_bad_constructor_arguments_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        RemoteActorSystem("t", port=70000)
    with pytest.raises(ConfigurationError):
        RemoteActorSystem("t", host="")
    with pytest.raises(ConfigurationError):
        RemoteActorSystem("t", incarnation=-1)
    with pytest.raises(ConfigurationError):
        RemoteSettings(outbound_queue_size=0)
    with pytest.raises(ConfigurationError):
        RemoteSettings(failure_timeout=float("nan"))
    with pytest.raises(ConfigurationError):
        RemoteSettings(min_backoff=2.0, max_backoff=1.0)


async def test_associate_needs_a_started_system() -> None:
    system = RemoteActorSystem("t")
    with pytest.raises(ResourceClosed):
        await system.associate("127.0.0.1:1")
    await system.shutdown()


async def test_tell_after_shutdown_is_a_dead_letter(make_system: MakeSystem) -> None:
    a, b = await make_system(), await make_system()
    ref: Any = a.resolve(b.address + "/user/x")
    await a.shutdown()
    before = a.statistics().dead_letters
    ref.tell(Num(1))
    assert a.statistics().dead_letters == before + 1


async def test_a_tell_leaves_at_once_after_each_answer_and_a_burst_in_one_frame(
    make_system: MakeSystem,
) -> None:
    a, b = await make_system(), await make_system()
    b.spawn(echo_behavior(), "echo")
    answers = Recorder(a, "answers")
    echo = a.resolve(b.address + "/user/echo")
    await a.ask(echo, lambda reply_to: Echo("connect", reply_to), timeout=WAIT)

    def frames_sent() -> int:
        (peer,) = a.remote_statistics().peers
        return peer.frames_sent

    for n in range(3):
        # Each answer from the peer re-arms the direct send: every request is written at once.
        before = frames_sent()
        echo.tell(Echo(str(n), answers.ref))
        assert frames_sent() == before + 1
        assert await answers.wait_count(n + 1) == [Reply(str(i)) for i in range(n + 1)]
    # Told in one turn: the first at once, the others queued, then one frame for all of them.
    before = frames_sent()
    for n in range(3, 10):
        echo.tell(Echo(str(n), answers.ref))
    assert frames_sent() == before + 1
    assert await answers.wait_count(10) == [Reply(str(n)) for n in range(10)]
    assert frames_sent() == before + 2


async def test_a_request_is_handled_within_the_callback_that_delivers_it(
    make_system: MakeSystem,
) -> None:
    # A memory raw peer delivers bytes synchronously: by the time `write` returns, the frame
    # was dispatched from the read callback and its actor ran, with no loop turn between.
    network = FakeNetwork()
    b = await make_system(host="node-b", transport=network.transport("node-b"))
    probe = Recorder(b, "probe")
    handled = probe.messages
    raw = await greeted_raw_peer(network, b)
    for n in range(3):
        raw.write(framed(b._envelopes.encode([FRAME_ENVELOPES, "/user/probe", Num(n)])))
        assert handled == [Num(i) for i in range(n + 1)]
    await raw.aclose()


async def test_actors_run_from_the_network_handle_one_message_at_a_time(
    make_system: MakeSystem,
) -> None:
    # Frames delivered in one read run their actor inline, after the whole batch is queued: in
    # order, never re-entered, and what the actor tells a local actor waits for the loop.
    network = FakeNetwork()
    b = await make_system(host="node-b", transport=network.transport("node-b"))
    seen: list[Any] = []
    running = [False]
    reentered = [False]
    later = Recorder(b, "later")

    def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        reentered[0] |= running[0]
        running[0] = True
        seen.append(msg)
        if type(msg) is Num:
            ctx.self.tell(("again", msg.n))
            later.ref.tell(msg.n)
        running[0] = False
        return Behaviors.same()

    b.spawn(Behaviors.receive(receive), "probe")
    raw = await greeted_raw_peer(network, b)
    frames = [b._envelopes.encode([FRAME_ENVELOPES, "/user/probe", Num(n)]) for n in range(3)]
    raw.write(b"".join(framed(frame) for frame in frames))
    assert seen == [Num(0), Num(1), Num(2), ("again", 0), ("again", 1), ("again", 2)]
    assert not reentered[0]
    assert later.messages == []  # queued: it runs on a later loop turn
    assert await later.wait_count(3) == [0, 1, 2]
    await raw.aclose()


def framed(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


async def greeted_raw_peer(network: FakeNetwork, b: RemoteActorSystem) -> MemoryRawPeer:
    """A raw memory connection from host "node-r" to ``b``, past the handshake: what it writes
    reaches ``b``'s dispatch synchronously."""
    raw = await network.raw_connect(b.node_address, source="node-r")
    raw.write(framed(encode_handshake(hello(b.node_address, host="node-r", incarnation=5))))
    await wait_until(lambda: connected(b))
    return raw


async def test_a_lone_request_to_an_idle_actor_runs_at_once_as_a_run_of_it_would(
    make_system: MakeSystem, caplog: pytest.LogCaptureFixture
) -> None:
    # A frame holding one message for an idle actor runs the actor without a trip through its
    # mailbox (a remote ask's hot path), with everything a run does: what the actor tells
    # itself waits for its next run, a new behavior takes over, a failure is supervised, a
    # handler that suspends finishes on a task, and it is never re-entered.
    network = FakeNetwork()
    b = await make_system(host="node-b", transport=network.transport("node-b"))
    seen: list[Any] = []
    running = [False]
    reentered = [False]
    starts: list[int] = []

    def worker() -> Behavior[Any]:
        def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
            starts.append(len(starts))

            def shouting(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
                seen.append(("shouting", msg))
                return Behaviors.same()

            async def waiting(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
                await asyncio.sleep(0)
                seen.append(("waited", msg))
                return Behaviors.same()

            def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
                reentered[0] |= running[0]
                running[0] = True
                try:
                    seen.append(msg)
                    if msg in (Num(0), Num(4)):
                        ctx.self.tell(Num(10))
                    elif msg == Num(1):
                        raise ValueError("boom")
                    elif msg == Num(2):
                        return Behaviors.receive(waiting)
                    return Behaviors.same()
                finally:
                    running[0] = False

            return Behaviors.receive(receive)

        return Behaviors.setup(setup)

    caplog.set_level(logging.CRITICAL, logger="casty.actors")
    probe = b.spawn(Behaviors.supervise(worker(), SupervisorStrategy.restart()), "probe")
    raw = await greeted_raw_peer(network, b)

    def request(n: int) -> None:
        raw.write(framed(b._envelopes.encode([FRAME_ENVELOPES, "/user/probe", Num(n)])))

    request(0)
    assert seen == [Num(0), Num(10)]  # within the delivery; its own tell next, in the run
    await wait_until(lambda: b._local_refs.get("/user/probe") is probe)
    request(4)  # sent to a known, idle actor: the direct path
    assert seen == [Num(0), Num(10), Num(4), Num(10)]
    request(1)
    assert seen[-1] == Num(1)
    await wait_until(lambda: len(starts) == 2)  # restarted by its supervisor
    request(2)
    assert seen[-1] == Num(2)
    await wait_until(lambda: not b._local_refs["/user/probe"]._cell._scheduled)  # idle again
    request(3)  # the new behavior suspends: the rest of the run goes on in a task
    assert seen[-1] == Num(2)
    await wait_until(lambda: seen[-1] == ("waited", Num(3)))
    assert not reentered[0]
    assert starts == [0, 1]
    (peer,) = b.remote_statistics().peers
    assert peer.messages_received == 5
    await raw.aclose()
