"""One peer node as this node sees it: its connection, outbound queue, watches and reconnects.

Sending. `tell` appends the recipient's path and the message to the outbound queue (a flat
list that already starts with the envelope tag, so a batch is encoded without copying). A
writer task per connection wakes once per event-loop turn with work, encodes the whole queue
in one serializer pass per frame (`EnvelopeCodec`), hands the frames to the connection and
awaits `Connection.drain`, which is the backpressure point: while it waits, the queue grows
up to ``outbound_queue_size`` and further messages become dead letters. A message to an idle
peer skips the queue and is encoded and sent at once, so a lone request or reply costs no extra
loop iteration. The messages after it go through the writer until its next flush, or until
the peer's frames arrive (`resume_direct`): a request/reply exchange sends every message at
once and schedules no callback, while a burst in one turn still leaves in one frame.

Connecting. Whoever has work for a peer (queued messages, watches in either direction, a
caller of `RemoteActorSystem.associate`) runs the association's connector task: connect,
handshake, read until the connection ends, then reconnect with exponential backoff and jitter.
Each association has its own connector, so a slow or dead peer never delays the others.
Simultaneous connects resolve deterministically: when both nodes dial each other at once, the
connection opened by the node with the lower address (`Address` order) is kept and the other
refused as transient, on both sides, so they agree without talking. A peer that stays
unreachable for ``failure_timeout`` is declared lost (`declare_lost`).

Death watch. A local watcher of a remote actor is recorded here and announced to the peer
(`OP_WATCH`), which leaves a `WatcherProxy` in its actor's watcher list; when that actor stops
the peer sends `OP_TERMINATED` behind everything the actor sent before. Watches are announced
again after every reconnect, since one in flight may have been lost with the old connection.
While this node watches actors of a peer, it heartbeats the peer and feeds a phi accrual
detector with the answers, so a peer that stops answering without closing its connection is
declared lost too.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING, Any, final

from casty.abc import Address, Connection
from casty.actors.ref import ActorRef
from casty.cluster.failure_detector import PhiAccrualFailureDetector
from casty.errors import (
    ConnectFailed,
    DecodeError,
    EncodeError,
    HandshakeFailed,
    ResourceClosed,
    TransportError,
)
from casty.remote.address import ActorAddress
from casty.remote.envelope import (
    FRAME_ENVELOPES,
    OP_ASK_FAILED,
    OP_HEARTBEAT,
    OP_HEARTBEAT_ACK,
    OP_QUARANTINED,
    OP_SHUTDOWN,
    OP_TERMINATED,
    OP_UNWATCH,
    OP_WATCH,
)
from casty.remote.events import (
    PeerConnected,
    PeerDisconnected,
    PeerLost,
    PeerStatistics,
    RemoteDeadLetterReason,
)
from casty.remote.ref import RemoteActorRef, WatcherProxy

if TYPE_CHECKING:
    from casty.remote.system import RemoteActorSystem

__all__ = ["Association", "Refusal"]

log = logging.getLogger("casty.remote")

#: Entries the writer encodes per event-loop turn at most.
_ENTRIES_PER_TURN = 2048

_KNOWN_OPS = frozenset(
    {
        OP_WATCH,
        OP_UNWATCH,
        OP_TERMINATED,
        OP_HEARTBEAT,
        OP_HEARTBEAT_ACK,
        OP_SHUTDOWN,
        OP_ASK_FAILED,
        OP_QUARANTINED,
    }
)


class Refusal(HandshakeFailed):
    """The peer (or this node's quarantine) refused a handshake.

    Attributes:
        transient: a refusal that does not last: a simultaneous-connect tie-break (the other
            connection is kept, nothing is wrong) or a peer shutting down (it may come back).
            Queued messages stay and the connector retries.
        reason: the dead-letter reason for the queued messages, or ``None`` to keep them.
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool = False,
        reason: RemoteDeadLetterReason | None = None,
    ) -> None:
        super().__init__(message, permanent=not transient)
        self.transient = transient
        self.reason = reason


@final
class _Watch:
    """The local watchers of one remote actor."""

    __slots__ = ("subject", "watchers")

    def __init__(self, subject: ActorRef[Any]) -> None:
        self.subject = subject
        self.watchers: dict[ActorRef[Any], object] = {}

    def notify(self) -> None:
        for watcher, notice in self.watchers.items():
            watcher._notify_terminated(self.subject, notice)


@final
class Association:
    """Everything this node holds about one peer node (see the module docstring)."""

    def __init__(self, system: RemoteActorSystem, address: Address) -> None:
        self.system = system
        self.address = address
        self.root = ActorAddress.of_node(system.name, address).root
        self.incarnation: int | None = None
        self.conn: Connection | None = None
        self._frame_limit = 0  # the smaller of ours and the peer's, set with `conn`
        self.watching: dict[str, _Watch] = {}  # remote path -> its local watchers
        self.watched_by: dict[str, WatcherProxy] = {}  # local path -> the peer's proxy
        self.detector: PhiAccrualFailureDetector | None = None
        self.sent = 0
        self.received = 0
        self.frames_sent = 0
        self.bytes_sent = 0
        self.frames_received = 0
        self.bytes_received = 0
        self._loop = system._loop
        self._capacity = system.settings.outbound_queue_size
        self._initiated = False  # whether `conn` was opened by this node
        # [FRAME_ENVELOPES, recipient, body, ...]: the next frame, ready to encode as it is.
        self._out: list[Any] = [FRAME_ENVELOPES]
        self._queued = 0  # user messages in _out (control entries are not bounded)
        self._direct = False  # the next tell may be sent at once (see the module docstring)
        self._wake: asyncio.Future[None] | None = None  # set while the writer waits idle
        self._writer: asyncio.Task[None] | None = None
        self._connector: asyncio.Task[None] | None = None
        self._dialing = False
        self._backing_off = False
        # Kept across connectors: one that runs out of work and the next share the backoff.
        self._attempt = 0  # failed dials since the last connection
        self._next_dial = 0.0  # clock reading before which no dial starts
        self._down_since: float | None = None  # clock reading when the peer became unreachable
        self._waiters: list[asyncio.Future[int]] = []
        self._fail_fast: set[asyncio.Future[int]] = set()  # waiters failed by a refused dial
        self._probes: list[asyncio.Future[bool]] = []  # `answers` calls awaiting a heartbeat ack
        self._closed = False

    # ---- sending -------------------------------------------------------------------------------

    def tell(self, ref: RemoteActorRef[Any], message: object) -> None:
        """Queue ``message`` for ``ref`` (or send it at once when the peer is idle)."""
        if self._direct:
            # Sent at once (a request, a reply), written out here: the hot path of an ask.
            conn = self.conn
            assert conn is not None
            self._direct = False
            path = ref._path
            try:
                frame = self.system._envelopes.encode_one(path, message)
            except EncodeError:
                frame = b""
            if not frame or len(frame) > self._frame_limit:
                # Encoding it again fails the same way, and drops it as a dead letter with the
                # reason; what that queues (an ask's failure notice) must not be overtaken.
                self._encode([FRAME_ENVELOPES, path, message], [], self._frame_limit)
                self.resume_direct()
                return
            try:
                conn.send(frame)
            except TransportError:
                self._requeue([path, message])  # the reader is about to notice and reconnect
                return
            self.sent += 1
            self.frames_sent += 1
            self.bytes_sent += len(frame)
            return
        if self._queued >= self._capacity:
            reason = (
                RemoteDeadLetterReason.REMOTING_SHUT_DOWN
                if self._closed
                else RemoteDeadLetterReason.OUTBOUND_QUEUE_FULL
            )
            self.system._dead_letter(message, ref, reason)
            return
        out = self._out
        out.append(ref._path)
        out.append(message)
        self._queued += 1
        if self._wake is not None or self.conn is None:
            self._kick()  # otherwise the writer is already due to flush

    def send_op(self, op: int, body: object) -> None:
        """Queue a control entry; never dropped for lack of room."""
        if self._closed:
            return
        self._out.append(op)
        self._out.append(body)
        self._kick()

    def _kick(self) -> None:
        wake = self._wake
        if wake is not None:
            self._wake = None
            self._direct = False  # a queued entry must not be overtaken
            wake.set_result(None)  # never done: `_detach` forgets the future it cancels
        elif self.conn is None:
            self.ensure_connector()

    def resume_direct(self) -> None:
        """The peer's frames arrived: the next tell may be sent at once, if the writer is idle
        with nothing queued (a turn boundary that costs no callback)."""
        if self._wake is not None and len(self._out) == 1:
            self._direct = True

    async def _write_loop(self, conn: Connection) -> None:
        """Flush the queue whenever it has entries; wait for drain between flushes."""
        loop = self._loop
        try:
            while True:
                if len(self._out) == 1:
                    wake = loop.create_future()
                    self._wake = wake
                    self._direct = True
                    try:
                        await wake
                    finally:
                        if self._wake is wake:  # else `_kick` or `_detach` took it
                            self._wake = None
                            self._direct = False
                    continue
                self.flush(conn)
                await conn.drain()
                if len(self._out) > 1:
                    await asyncio.sleep(0)  # a backlog: one slice per loop turn
        except TransportError:
            pass  # the reader sees the connection end and takes over

    def flush(self, conn: Connection, *, everything: bool = False) -> None:
        """Encode queued entries into frames and hand them to ``conn``: all of them with
        ``everything``, else at most `_ENTRIES_PER_TURN` entries (or one frame's worth), so
        a large backlog (after a reconnect) leaves in slices between which the loop runs.

        Raises:
            TransportError: the connection is gone; the entries it did not take are queued
                again, in order.
        """
        out = self._out
        per_frame = 2 * self.system.settings.frame_messages
        take = 2 * max(_ENTRIES_PER_TURN, self.system.settings.frame_messages)
        if everything or len(out) <= take + 1:
            self._out = [FRAME_ENVELOPES]
            self._queued = 0
        else:
            self._out = [FRAME_ENVELOPES, *out[take + 1 :]]
            del out[take + 1 :]
            self._queued -= sum(1 for recipient in out[1::2] if type(recipient) is str)
        chunks = (
            [out]
            if len(out) <= per_frame + 1
            else [[FRAME_ENVELOPES, *out[i : i + per_frame]] for i in range(1, len(out), per_frame)]
        )
        frames: list[tuple[bytes, list[Any]]] = []
        for chunk in chunks:
            self._encode(chunk, frames, self._frame_limit)
        for index, (frame, chunk) in enumerate(frames):
            try:
                conn.send(frame)
            except TransportError:
                self._requeue([entry for _, rest in frames[index:] for entry in rest[1:]])
                raise
            self.sent += len(chunk) >> 1
            self.frames_sent += 1
            self.bytes_sent += len(frame)

    def _encode(self, chunk: list[Any], frames: list[tuple[bytes, list[Any]]], limit: int) -> None:
        """Append ``chunk``'s frame(s) to ``frames``: split when over ``limit`` bytes, and with
        unencodable or oversized messages dropped as dead letters."""
        codec = self.system._envelopes
        try:
            frame = codec.encode(chunk)
        except EncodeError:
            chunk = self._without_unencodable(chunk)
            if len(chunk) == 1:
                return
            try:
                frame = codec.encode(chunk)
            except EncodeError as exc:  # each encodes alone but not together: give up on all
                log.error("cannot encode a frame for %s: %s", self.root, exc)
                for i in range(1, len(chunk), 2):
                    self._drop_entry(chunk, i, RemoteDeadLetterReason.CANNOT_ENCODE)
                return
        if len(frame) <= limit:
            frames.append((frame, chunk))
            return
        entries = (len(chunk) - 1) >> 1
        if entries == 1:
            recipient = chunk[1]
            log.error(
                "dropping %s to %s: %d bytes encoded, the frame limit is %d",
                f"a message to {recipient}" if type(recipient) is str else f"operation {recipient}",
                self.root,
                len(frame),
                limit,
            )
            self._drop_entry(chunk, 1, RemoteDeadLetterReason.MESSAGE_TOO_LARGE)
            return
        half = 1 + 2 * (entries >> 1)
        self._encode(chunk[:half], frames, limit)
        self._encode([FRAME_ENVELOPES, *chunk[half:]], frames, limit)

    def _without_unencodable(self, chunk: list[Any]) -> list[Any]:
        kept: list[Any] = [FRAME_ENVELOPES]
        for i in range(1, len(chunk), 2):
            recipient, body = chunk[i], chunk[i + 1]
            error = self.system._envelopes.check(body) if type(recipient) is str else None
            if error is None:
                kept += (recipient, body)
            else:
                log.error("cannot send %r to %s%s: %s", body, self.root, recipient, error)
                self._drop_entry(chunk, i, RemoteDeadLetterReason.CANNOT_ENCODE)
        return kept

    def _drop_entry(self, chunk: list[Any], i: int, reason: RemoteDeadLetterReason) -> None:
        recipient = chunk[i]
        if type(recipient) is str:
            self.system._dead_letter(chunk[i + 1], self.ref(recipient), reason)

    def _requeue(self, entries: list[Any]) -> None:
        self._out[1:1] = entries
        self._queued += sum(1 for recipient in entries[::2] if type(recipient) is str)

    def _drop_queue(self, reason: RemoteDeadLetterReason) -> None:
        out = self._out
        self._out = [FRAME_ENVELOPES]
        self._queued = 0
        for i in range(1, len(out), 2):
            self._drop_entry(out, i, reason)

    def ref(self, path: str) -> RemoteActorRef[Any]:
        """A ref to the actor at ``path`` on the peer."""
        return RemoteActorRef(self, path, self.root + path)

    # ---- watching ----------------------------------------------------------------------------

    def watch(self, subject: RemoteActorRef[Any], watcher: ActorRef[Any], notice: object) -> None:
        """``watcher`` receives ``notice`` once the peer's actor ``subject`` stops."""
        if self._closed:
            watcher._notify_terminated(subject, notice)
            return
        path = subject.path
        entry = self.watching.get(path)
        if entry is None:
            entry = self.watching[path] = _Watch(subject)
            self.send_op(OP_WATCH, path)
            self.system._watching_changed()
        entry.watchers[watcher] = notice

    def unwatch(self, subject: RemoteActorRef[Any], watcher: ActorRef[Any]) -> None:
        """Undo `watch`; harmless when not watching."""
        entry = self.watching.get(subject.path)
        if entry is None or entry.watchers.pop(watcher, None) is None:
            return
        if not entry.watchers:
            del self.watching[subject.path]
            self.send_op(OP_UNWATCH, subject.path)

    def ask_failed(self, path: str, reason: str, what: str) -> None:
        """Tell the peer that ``what`` (``"the request to <address>"`` carrying its ask reply
        ref ``path``, or ``"the reply"`` to it) was dropped here for ``reason``
        (`OP_ASK_FAILED`), so that the ask fails now.

        Skipped while the peer is not connected (a lost peer fails its asks by itself) and
        while its queue is full of messages (the notice would add to the overload): the ask
        then ends at its timeout.
        """
        if self.conn is not None and self._queued < self._capacity:
            self.send_op(OP_ASK_FAILED, [path, str(reason), what])

    def watched_actor_stopped(self, proxy: WatcherProxy) -> None:
        """A local actor the peer watches stopped: tell the peer, behind what it sent before."""
        if self.watched_by.get(proxy.path) is proxy:
            del self.watched_by[proxy.path]
            self.send_op(OP_TERMINATED, proxy.path)

    def control(self, op: int, body: object) -> None:
        """Handle a control entry from the peer.

        Raises:
            DecodeError: an unknown operation or a malformed body (a protocol violation).
        """
        if op not in _KNOWN_OPS:
            raise DecodeError(f"unknown control operation {op!r}")
        if op == OP_HEARTBEAT:
            self.send_op(OP_HEARTBEAT_ACK, 0)
            return
        if op == OP_HEARTBEAT_ACK:
            if self.detector is not None:
                self.detector.heartbeat()
            if self._probes:
                self._settle_probes(True)
            return
        if op == OP_SHUTDOWN:
            self.declare_lost(RemoteDeadLetterReason.PEER_SHUT_DOWN, "the peer shut down")
            return
        if op == OP_ASK_FAILED:
            if type(body) is not list or len(body) != 3 or set(map(type, body)) != {str}:
                raise DecodeError(f"control operation {op} needs three strings, got {body!r}")
            path, reason, what = body
            self.system._peer_dropped_request(self, path, reason, what)
            return
        if type(body) is not str:
            raise DecodeError(f"control operation {op} needs a string, got {body!r}")
        if op == OP_QUARANTINED:
            # The peer refuses this incarnation for good: nothing queued for it can leave.
            detail = f"it quarantined this node: {body}"
            self.declare_lost(RemoteDeadLetterReason.PEER_QUARANTINED, detail)
            return
        system = self.system
        if op == OP_WATCH:
            target = system._find(body)
            if target is None:
                self.send_op(OP_TERMINATED, body)
                return
            proxy = self.watched_by.get(body)
            if proxy is None:
                proxy = self.watched_by[body] = WatcherProxy(self, body)
            target._watch(proxy, None)
        elif op == OP_UNWATCH:
            proxy = self.watched_by.pop(body, None)
            target = system._find(body)
            if proxy is not None and target is not None:
                target._unwatch(proxy)
        else:  # OP_TERMINATED
            entry = self.watching.pop(body, None)
            if entry is not None:
                entry.notify()

    def heartbeat_tick(self) -> None:
        """Heartbeat the peer (this node watches its actors); declare it lost when the
        detector has given up on it."""
        if self.conn is None:
            return  # the failure timeout covers a peer without a connection
        detector = self.detector
        settings = self.system.settings
        if detector is None:
            detector = self.detector = PhiAccrualFailureDetector(
                threshold=settings.phi_threshold,
                acceptable_heartbeat_pause=settings.acceptable_heartbeat_pause,
                first_heartbeat_estimate=settings.heartbeat_interval,
                clock=self.system.clock.monotonic,
            )
            detector.heartbeat()  # silence from now on accrues suspicion
        elif not detector.is_available():
            self.declare_lost(
                RemoteDeadLetterReason.PEER_UNREACHABLE,
                f"no heartbeat answer (phi {detector.phi():.1f} >= {detector.threshold})",
            )
            return
        self.send_op(OP_HEARTBEAT, 0)

    async def answers(self, timeout: float) -> bool:
        """Whether the peer on the current connection answers a heartbeat within ``timeout``
        seconds (``False`` without a connection, or when it ends meanwhile)."""
        if self.conn is None or self._closed:
            return False
        probe: asyncio.Future[bool] = self._loop.create_future()
        self._probes.append(probe)
        self._out[1:1] = [OP_HEARTBEAT, 0]  # ahead of queued messages: a busy peer answers too
        self._kick()
        try:
            async with asyncio.timeout(timeout):
                return await probe
        except TimeoutError:
            return False
        finally:
            if probe in self._probes:
                self._probes.remove(probe)

    def _settle_probes(self, answered: bool) -> None:
        probes, self._probes = self._probes, []
        for probe in probes:
            if not probe.done():
                probe.set_result(answered)

    # ---- connections -------------------------------------------------------------------------

    def wants_connection(self) -> bool:
        """Whether this node has work for the peer (so it keeps reconnecting)."""
        return bool(len(self._out) > 1 or self.watching or self.watched_by or self._waiters)

    def ensure_connector(self) -> None:
        """Start the connector task unless it runs, or remoting is not serving."""
        if self._connector is None and not self._closed and self.system._serving:
            self._connector = self.system._spawn(self._connect_loop())

    def add_waiter(self, waiter: asyncio.Future[int], *, fail_fast: bool = False) -> None:
        """Resolve ``waiter`` with the peer's incarnation once connected (or fail it).

        With ``fail_fast``, a dial that fails (`ConnectFailed`: refused, unreachable) fails
        the waiter too, instead of leaving it to the retries.
        """
        if self.conn is not None and self.incarnation is not None:
            waiter.set_result(self.incarnation)
            return
        self._waiters.append(waiter)
        if fail_fast:
            self._fail_fast.add(waiter)
        self.ensure_connector()

    def remove_waiter(self, waiter: asyncio.Future[int]) -> None:
        self._fail_fast.discard(waiter)
        if waiter in self._waiters:
            self._waiters.remove(waiter)

    def _dial_failed(self, exc: ConnectFailed) -> None:
        for waiter in [w for w in self._waiters if w in self._fail_fast]:
            self.remove_waiter(waiter)
            if not waiter.done():
                waiter.set_exception(exc)

    def _settle_waiters(self, result: int | BaseException) -> None:
        waiters, self._waiters = self._waiters, []
        self._fail_fast.clear()
        for waiter in waiters:
            if waiter.done():
                continue
            if isinstance(result, BaseException):
                waiter.set_exception(result)
            else:
                waiter.set_result(result)

    async def _connect_loop(self) -> None:
        system = self.system
        settings = system.settings
        clock = system.clock
        try:
            while self.conn is None and not self._closed and self.wants_connection():
                wait = self._next_dial - clock.monotonic()
                if wait > 0:  # the backoff a previous connector left (it ran out of work)
                    await self._back_off(wait)
                    continue
                self._unreachable_since()
                self._dialing = True
                try:
                    conn, answer = await system._dial(self.address)
                except (ConnectFailed, HandshakeFailed) as exc:
                    error: Exception = exc
                    if isinstance(exc, HandshakeFailed):
                        self._refused(exc)
                    else:
                        self._dial_failed(exc)
                else:
                    self._dialing = False
                    try:
                        admitted = self.admit(
                            conn,
                            answer.incarnation,
                            initiated=True,
                            frame_limit=answer.max_frame_size,
                        )
                        if admitted is None:
                            await self.run(conn)
                    finally:
                        await conn.aclose()
                    continue
                finally:
                    self._dialing = False
                if self.connected:
                    continue  # a connection from the peer was accepted meanwhile
                since = self._unreachable_since()  # restarts when declared lost meanwhile
                remaining = since + settings.failure_timeout - clock.monotonic()
                if remaining <= 0:
                    # Quarantine only when someone was (or will be) told the peer died.
                    self.declare_lost(
                        RemoteDeadLetterReason.PEER_UNREACHABLE,
                        f"unreachable for {settings.failure_timeout} s: {error}",
                        quarantine=bool(self.watching or self.watched_by),
                    )
                    return
                exponent = min(self._attempt, 32)
                nominal = min(settings.max_backoff, settings.min_backoff * 2**exponent)
                self._attempt += 1
                delay = min(nominal * system._random.uniform(0.5, 1.0), remaining)
                self._next_dial = clock.monotonic() + delay
                await self._back_off(delay)
        finally:
            if self._connector is asyncio.current_task():
                self._connector = None

    async def _back_off(self, seconds: float) -> None:
        self._backing_off = True
        try:
            await self.system.clock.sleep(seconds)
        finally:
            self._backing_off = False

    @property
    def connected(self) -> bool:
        """Whether a connection with the peer is established."""
        return self.conn is not None

    def _unreachable_since(self) -> float:
        if self._down_since is None:
            self._down_since = self.system.clock.monotonic()
        return self._down_since

    def _refused(self, exc: HandshakeFailed) -> None:
        if isinstance(exc, Refusal) and exc.transient:
            log.debug("handshake with %s refused for now: %s", self.root, exc)
            return
        log.warning("handshake with %s failed: %s", self.root, exc)
        self._settle_waiters(exc)
        if exc.permanent:
            # Retrying continues (a certificate may be rotated), but nothing queued now should
            # wait for a configuration change.
            reason = exc.reason if isinstance(exc, Refusal) else None
            self._drop_queue(reason or RemoteDeadLetterReason.HANDSHAKE_FAILED)

    def admit(
        self, conn: Connection, incarnation: int, *, initiated: bool, frame_limit: int
    ) -> str | None:
        """Make ``conn`` (handshake done) the peer's connection, or say why not.

        ``frame_limit`` is the largest frame (bytes) the peer accepts, from its handshake.

        Returns ``None`` when attached, else the reason the other connection is kept (the
        simultaneous-connect tie-break, see the module docstring).
        """
        if self._closed:
            return "this node is shutting down"
        we_win = self.system.node_address < self.address
        if self.conn is not None:
            if self.incarnation == incarnation:
                if initiated:
                    return "a connection with the peer is already established"
                if self._initiated and we_win:
                    return "duplicate connection: keeping the one opened by the lower address"
            self._replace()
        elif not initiated and self._dialing and we_win:
            return "simultaneous connect: keeping the connection opened by the lower address"
        if self.incarnation is not None and self.incarnation != incarnation:
            self._peer_restarted(self.incarnation)
        self._attach(conn, incarnation, initiated, min(frame_limit, conn.max_frame_size))
        return None

    def _attach(self, conn: Connection, incarnation: int, initiated: bool, limit: int) -> None:
        self.conn = conn
        self._frame_limit = limit
        self._attempt = 0
        self._next_dial = 0.0
        self.incarnation = incarnation
        self._initiated = initiated
        self._down_since = None
        self.detector = None
        if self.watching:
            # A watch announced on a previous connection may have been lost with it.
            self._out[1:1] = [entry for path in self.watching for entry in (OP_WATCH, path)]
        self._writer = self.system._spawn(self._write_loop(conn))
        connector = self._connector
        if connector is not None and self._backing_off:
            connector.cancel()  # an inbound connection made the retry pointless
            self._connector = None
        log.info("connected to %s (incarnation %d)", self.root, incarnation)
        self._settle_waiters(incarnation)
        self.system.publish(PeerConnected(self.address, incarnation))

    def _detach(self) -> None:
        self.conn = None
        self._direct = False
        self._settle_probes(False)
        # The writer is cancelled below but runs only on a later loop turn: a tell in this turn
        # must not complete the future it waits on (it is cancelled), but start a connector.
        self._wake = None
        writer = self._writer
        self._writer = None
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()

    def _replace(self) -> None:
        old = self.conn
        self._detach()
        if old is not None:
            self.system._spawn(old.aclose())

    def _peer_restarted(self, old: int) -> None:
        log.info("%s restarted (incarnation %d replaced)", self.root, old)
        self.system._quarantined.add((self.address, old))
        self._forget_watches()
        self.system.publish(PeerLost(self.address, old, "peer restarted", True))

    def _forget_watches(self) -> None:
        """The peer incarnation is gone: fire its watches, drop its watches on our actors."""
        watching, self.watching = self.watching, {}
        for entry in watching.values():
            entry.notify()
        proxies, self.watched_by = self.watched_by, {}
        for path, proxy in proxies.items():
            target = self.system._find(path)
            if target is not None:
                target._unwatch(proxy)
        self.detector = None

    async def run(self, conn: Connection) -> None:
        """Dispatch ``conn``'s frames until it ends (the caller closes it).

        Frames are dispatched as they arrive, from the transport's read callback
        (`Connection.receive_into`, `RemoteActorSystem._dispatch_frames`): a request is
        handled without waking this task. Each batch is what one socket read (or one memory
        transport flush) delivered, so a large backlog is still dispatched in slices between
        which the loop runs timers and other peers.
        """
        reason = "closed by the peer"
        try:
            await conn.receive_into(functools.partial(self.system._dispatch_frames, self))
        except DecodeError as exc:
            reason = f"protocol violation: {exc}"
            log.warning(
                "dropping the connection with %s (from %s): %s",
                self.root,
                conn.remote_address,
                reason,
            )
        except TransportError as exc:
            reason = str(exc)
        finally:
            self._ended(conn, reason)

    def _ended(self, conn: Connection, reason: str) -> None:
        if conn is not self.conn:
            return  # replaced, superseded or declared lost already
        incarnation = self.incarnation
        self._detach()
        log.info("connection to %s ended: %s", self.root, reason)
        if incarnation is not None:
            self.system.publish(PeerDisconnected(self.address, incarnation, reason))
        self._down_since = self.system.clock.monotonic()
        if self.wants_connection():
            self.ensure_connector()

    def declare_lost(
        self, reason: RemoteDeadLetterReason, detail: str, *, quarantine: bool = True
    ) -> None:
        """Give up on the peer (see `PeerLost`): drop its queue as dead letters, fire its
        watches, close its connection, and, with ``quarantine``, refuse its incarnation from
        now on. Without it the same incarnation may come back (nothing watched it, so nobody
        was told it died)."""
        incarnation = self.incarnation
        if incarnation is None and not self.wants_connection():
            self._down_since = None  # the next work for the peer starts a new failure window
            return  # nothing known, nothing pending: nothing to lose
        level = logging.INFO if reason is RemoteDeadLetterReason.PEER_SHUT_DOWN else logging.WARNING
        log.log(level, "%s (incarnation %s) is lost: %s", self.root, incarnation, detail)
        quarantined = False
        if quarantine and incarnation is not None:
            self.system._quarantined.add((self.address, incarnation))
            self.incarnation = None
            quarantined = True
        if self.conn is not None:
            self._replace()
        self._down_since = None
        self._drop_queue(reason)
        self._settle_waiters(ConnectFailed(f"{self.root} is lost: {detail}"))
        self._forget_watches()
        connector = self._connector
        if connector is not None and connector is not asyncio.current_task():
            connector.cancel()
            self._connector = None
        self.system.publish(PeerLost(self.address, incarnation, f"{reason}: {detail}", quarantined))

    # ---- shutdown ----------------------------------------------------------------------------

    def begin_shutdown(self) -> Connection | None:
        """Refuse new messages; queue `OP_SHUTDOWN` and flush to the connection, if any.

        The connection stays recorded (its reader may still dispatch late frames) until
        `finish_shutdown`.
        """
        conn = self.conn
        if conn is not None:
            self.send_op(OP_SHUTDOWN, 0)
        self._closed = True
        self._capacity = 0
        self._detach()
        self.conn = conn
        if conn is not None:
            try:
                self.flush(conn, everything=True)
            except TransportError:
                pass
        return conn

    def finish_shutdown(self) -> None:
        """Drop what is still queued and forget the connection."""
        self.conn = None
        self._drop_queue(RemoteDeadLetterReason.REMOTING_SHUT_DOWN)
        self._settle_waiters(ResourceClosed(f"remoting of {self.system.address} shut down"))

    def statistics(self) -> PeerStatistics:
        return PeerStatistics(
            address=self.address,
            incarnation=self.incarnation,
            connected=self.conn is not None,
            queued=self._queued,
            messages_sent=self.sent,
            messages_received=self.received,
            watching=len(self.watching),
            watched_by=len(self.watched_by),
            frames_sent=self.frames_sent,
            bytes_sent=self.bytes_sent,
            frames_received=self.frames_received,
            bytes_received=self.bytes_received,
        )

    def __repr__(self) -> str:
        state = "connected" if self.conn is not None else "disconnected"
        return f"<Association {self.root} {state} queued={self._queued}>"
