"""`RemoteActorSystem`: an actor system whose actors are reachable from other nodes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Final, final

from casty._calm_log import CalmLog
from casty.abc import Address, Connection, Listener, RefCodec, Serializer, Transport
from casty.actors.ask import PromiseRef, request_fields
from casty.actors.cell import _TERMINATED, LocalActorRef
from casty.actors.events import DeadLetterReason
from casty.actors.ref import ActorRef
from casty.actors.system import ActorSystem
from casty.clock import Cancellable, Clock
from casty.errors import (
    ActorStopped,
    CastyError,
    ConfigurationError,
    ConnectFailed,
    ConnectionBroken,
    DecodeError,
    EncodeError,
    FrameTooLarge,
    HandshakeFailed,
    MailboxFull,
    ResourceClosed,
    StashOverflow,
    TransportError,
    UnhandledMessage,
)
from casty.remote.address import SCHEME, ActorAddress
from casty.remote.association import Association, Refusal
from casty.remote.envelope import (
    FRAME_ENVELOPES,
    OP_QUARANTINED,
    Accept,
    EnvelopeCodec,
    Hello,
    Refuse,
    Undecodable,
    decode_handshake,
    encode_handshake,
)
from casty.remote.events import RemoteDeadLetterReason, RemoteStatistics
from casty.remote.ref import RemoteActorRef
from casty.remote.settings import RemoteSettings
from casty.serializers import as_serializer
from casty.transports import as_transport

__all__ = ["RemoteActorSystem"]

log = logging.getLogger("casty.remote")

#: Bounds of the lookup caches (entries); reaching one clears it.
_LOCAL_CACHE_SIZE: Final = 4096
_REMOTE_CACHE_SIZE: Final = 16384
_MAX_INCARNATION: Final = 2**64 - 1
#: Seconds shutdown lets connections close once the flush budget is spent (drained ones close
#: within a round trip; the others are aborted).
_CLOSE_GRACE: Final = 0.1
_SCHEME_LENGTH: Final = len(SCHEME)


#: The error an ask fails with when its request was dropped for a reason (a dead-letter reason,
#: possibly from another node); `ActorStopped` for the reasons not listed.
_ASK_FAILURES: Final[dict[str, type[CastyError]]] = {
    DeadLetterReason.UNHANDLED: UnhandledMessage,
    DeadLetterReason.MAILBOX_FULL: MailboxFull,
    DeadLetterReason.STASH_OVERFLOW: StashOverflow,
    RemoteDeadLetterReason.OUTBOUND_QUEUE_FULL: MailboxFull,
    RemoteDeadLetterReason.HANDSHAKE_REFUSED: HandshakeFailed,
    RemoteDeadLetterReason.HANDSHAKE_FAILED: HandshakeFailed,
    RemoteDeadLetterReason.CANNOT_ENCODE: EncodeError,
    RemoteDeadLetterReason.MESSAGE_TOO_LARGE: FrameTooLarge,
}
#: Reasons after which no ask is failed: the dropped message is a reply, or unreadable.
_NOT_A_REQUEST: Final = frozenset(
    {DeadLetterReason.LATE_ASK_REPLY, RemoteDeadLetterReason.UNDECODABLE}
)


def _ask_failure(reason: str, text: str) -> CastyError:
    error = _ASK_FAILURES.get(reason, ActorStopped)
    if error is HandshakeFailed:  # only a lasting handshake failure drops a request
        return HandshakeFailed(text, permanent=True)
    return error(text)


def _unreachable(message: object) -> None:
    raise AssertionError("no recipient yet")  # the first entry never matches `last = None`


@final
class _RemoteRefCodec(RefCodec):
    """`ActorRefCodec` with a shortcut for what a node decodes most: refs of other nodes, and
    the one-off ``/temp/`` reply refs of asks that arrive in requests."""

    ref_type: ClassVar[type] = ActorRef

    def __init__(self, system: RemoteActorSystem) -> None:
        self._system = system

    def to_wire(self, ref: Any) -> str:
        return str(ref.address)

    def from_wire(self, address: str) -> ActorRef[Any]:
        system = self._system
        ref = system._remote_refs.get(address)
        if ref is not None:
            return ref
        slash = address.find("/temp/", _SCHEME_LENGTH)
        if slash > 0 and address.startswith(SCHEME):
            association = system._by_root.get(address[:slash])
            if association is not None:  # a peer's root (never this node's own)
                return RemoteActorRef(association, address[slash:], address)
        return system.resolve(address)


@final
class _WireRefCodec(RefCodec):
    """The ref codec of envelope frames (protocol 3): a ref to an actor of the sending node
    travels as its path alone (``/temp/$7``), read by the receiving node relative to the peer
    whose frame it decodes (`peer`); any other ref travels as its full address, read as
    `_RemoteRefCodec` reads it. The common case, an ask's ``reply_to``, then costs neither side
    an address string, and 30-odd bytes less on the wire."""

    ref_type: ClassVar[type] = ActorRef

    def __init__(self, system: RemoteActorSystem, full: _RemoteRefCodec) -> None:
        self._system = system
        self._full = full
        #: The association whose frame is being decoded (set by `_dispatch` before decoding).
        self.peer: Association | None = None

    def to_wire(self, ref: Any) -> str:
        kind = type(ref)
        if kind is PromiseRef:
            if ref._system is self._system:
                return ref.path  # type: ignore[no-any-return]
        elif kind is RemoteActorRef:
            return ref._address  # type: ignore[no-any-return]
        elif kind is LocalActorRef and ref._cell._system is self._system:
            return ref._path  # type: ignore[no-any-return]
        return str(ref.address)

    def from_wire(self, address: str) -> ActorRef[Any]:
        if not address.startswith("/"):
            return self._full.from_wire(address)
        peer = self.peer
        if peer is None:  # never while `_dispatch` decodes: a bug guard
            raise DecodeError(f"actor path {address!r} outside of a peer's frame")
        full = peer.root + address
        if address.startswith("/temp/"):
            return RemoteActorRef(peer, address, full)  # an ask's reply ref: used once
        ref = self._system._remote_refs.get(full)
        return ref if ref is not None else self._system.resolve(full)


class RemoteActorSystem(ActorSystem):
    """An `ActorSystem` that listens on a transport and talks to other nodes.

    Its actors' addresses read ``casty://name@host:port/user/...`` once started; an address of
    another node (from `resolve`, or a ref inside a received message such as ``reply_to``)
    gives a `RemoteActorRef`. Tell, `ask` and ``ctx.watch`` work across nodes::

        async with RemoteActorSystem("shop", host="10.0.0.1", port=25520) as system:
            cart = system.resolve("casty://shop@10.0.0.2:25520/user/cart")
            total = await system.ask(cart, lambda reply_to: GetTotal(reply_to), timeout=5.0)

    Nodes keep one connection per pair, opened by whoever first has something to send, after a
    handshake that checks the protocol version, the system name, the serializer, the address
    the initiator meant to reach and the peer's incarnation (refusals are logged on both sides;
    `associate` raises `HandshakeFailed`). Delivery is at most once and in order per pair of
    nodes; what cannot be delivered becomes a `DeadLetter` with a `RemoteDeadLetterReason`.
    An ask whose request is dropped, on this node or on the remote one, fails at once rather
    than at its timeout: `MailboxFull` (outbound queue or remote mailbox full), `ActorStopped`
    (peer lost or quarantined, no such remote actor, actor stopped), `UnhandledMessage`,
    `HandshakeFailed`, `EncodeError` or `FrameTooLarge`.
    See ``docs/remoting.md`` and `RemoteSettings` for the timeouts, bounds and backoff.

    Args:
        name: the system's name; every node of a cluster uses the same one.
        host: the host to bind and to advertise in addresses (a name or IP peers can reach).
        port: the port to bind; 0 picks a free one, and `address` reports it after `start`.
        transport: a `Transport` or its URL (``"tcp://"``, ``"tls://?cert=...&key=...&ca=..."``,
            ``"memory://"``); a host and port in the URL are ignored (``host``/``port`` rule).
        serializer: a `Serializer` or its name (``"msgpack"``, ``"pickle"``); peers must use
            the same one.
        incarnation: this start's identity, in 0..2**64-1; ``None`` draws a random one at each
            `start`. Peers refuse an incarnation they quarantined, and tell a restart from a
            reconnect by it: give a different one to every start (a fixed value is for
            tests), or a restarted node is taken for its previous run.
        settings: queue bounds, timeouts and backoff (`RemoteSettings`).
        clock: the clock of timers, ask timeouts, backoff, heartbeats and failure timeouts.
        throughput: as for `ActorSystem`.

    Raises:
        ConfigurationError: a bad argument; `start` raises `ConnectFailed` when the address
            cannot be bound.

    Extending (for the cluster layer): `quarantine` declares a node lost or downed; the
    event stream carries `PeerConnected`, `PeerDisconnected` and `PeerLost`.
    """

    def __init__(
        self,
        name: str = "casty",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        transport: Transport | str = "tcp://",
        serializer: Serializer | str = "msgpack",
        incarnation: int | None = None,
        settings: RemoteSettings | None = None,
        clock: Clock | None = None,
        throughput: int = 300,
    ) -> None:
        super().__init__(name, clock=clock, throughput=throughput)
        if not isinstance(host, str) or not host:
            raise ConfigurationError(f"host must be a non-empty string, got {host!r}")
        if type(port) is not int or not 0 <= port <= 65535:
            raise ConfigurationError(f"port must be an int within 0..65535, got {port!r}")
        if incarnation is not None and (
            type(incarnation) is not int or not 0 <= incarnation <= _MAX_INCARNATION
        ):
            raise ConfigurationError(f"incarnation must be within 0..2**64-1, got {incarnation!r}")
        if settings is not None and not isinstance(settings, RemoteSettings):
            raise ConfigurationError(f"settings must be a RemoteSettings, got {settings!r}")
        self._settings = settings or RemoteSettings()
        self._transport = as_transport(transport)
        self._serializer = as_serializer(serializer)
        self._remote_codec = _RemoteRefCodec(self)
        self._wire_codec = _WireRefCodec(self, self._remote_codec)
        self._envelopes = EnvelopeCodec(self._serializer, self._wire_codec)
        self._host = host
        self._port = port
        self._node = Address(host, port)
        self._fixed_incarnation = incarnation
        self._incarnation = 0
        self._random = random.Random()
        self._listener: Listener | None = None
        self._serving = False  # bound and not shutting down: connectors may run
        # Connections that never handshake (port scans, TCP health probes): 1 line per 10 s.
        self._stray_log = CalmLog(log, self.clock.monotonic, 10.0)
        self._associations: dict[Address, Association] = {}
        self._by_root: dict[str, Association | None] = {}
        self._remote_refs: dict[str, RemoteActorRef[Any]] = {}
        self._local_refs: dict[str, LocalActorRef[Any]] = {}
        self._quarantined: set[tuple[Address, int]] = set()
        self._remote_tasks: set[asyncio.Task[Any]] = set()
        self._ticker: Cancellable | None = None

    # ---- public API ---------------------------------------------------------------------------

    @property
    def settings(self) -> RemoteSettings:
        """The remoting settings in force."""
        return self._settings

    @property
    def node_address(self) -> Address:
        """This node's network address (the bound port once started)."""
        return self._node

    @property
    def incarnation(self) -> int:
        """This start's incarnation (0 before `start`)."""
        return self._incarnation

    @property
    def ref_codec(self) -> RefCodec:
        """The `RefCodec` serializers use to write and read refs (of this node and of others)."""
        return self._remote_codec

    @property
    def transport(self) -> Transport:
        """The transport connections are made with."""
        return self._transport

    @property
    def serializer(self) -> Serializer:
        """The serializer messages are written with."""
        return self._serializer

    async def associate(
        self, node: Address | str, *, timeout: float = 5.0, fail_fast: bool = False
    ) -> int:
        """Connect to ``node`` now (if not connected yet) and return its incarnation.

        Sending does not need this (the first message connects); it tells a caller that a
        node is reachable and accepts this one.

        Args:
            node: an `Address`, ``"host:port"`` or ``"casty://system@host:port"``.
            timeout: seconds to keep trying (> 0); attempts back off as in `RemoteSettings`.
            fail_fast: give up at the first failed connection attempt (refused, unreachable)
                instead of retrying until ``timeout``.

        Raises:
            HandshakeFailed: the peer refused the handshake (the reason is in the message and
                in both nodes' logs), or the TLS handshake failed.
            ConnectFailed: no connection within ``timeout``, the peer was declared lost, or
                (``fail_fast``) an attempt failed; the message says which.
            ResourceClosed: the system is not started or is shutting down.
            ConfigurationError: a malformed ``node`` or ``timeout``, or a ``casty://`` address
                of another system.

        Cancelling the caller stops waiting; the connection attempt goes on in the background
        only while there is other work for the peer.
        """
        if not self._serving:
            raise ResourceClosed(f"{self!r} is not serving (start it first)")
        if not 0 < timeout < float("inf"):
            raise ConfigurationError(f"timeout must be positive and finite, got {timeout!r}")
        association = self._association(self._node_of(node))
        waiter: asyncio.Future[int] = self._loop.create_future()
        association.add_waiter(waiter, fail_fast=fail_fast)
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        except TimeoutError:
            raise ConnectFailed(f"no connection to {association.root} within {timeout} s") from None
        finally:
            association.remove_waiter(waiter)

    def quarantine(
        self, node: Address | str, *, incarnation: int | None = None, reason: str = "quarantined"
    ) -> None:
        """Declare ``node`` lost (the cluster layer calls this for a downed member).

        The incarnation (the given one, else the one currently connected) is refused from now
        on, in both directions; watches on the node's actors fire `Terminated`; messages
        queued for it become dead letters ("peer quarantined"); its connection is closed; a
        `PeerLost` event is published. A later incarnation at the same address is accepted.
        Idempotent. When ``incarnation`` names one that is not the connected one, only the
        refusal is recorded.

        Raises:
            ConfigurationError: a malformed ``node``.
        """
        address = self._node_of(node)
        association = self._associations.get(address)
        known = association.incarnation if association is not None else None
        target = incarnation if incarnation is not None else known
        if target is not None:
            self._quarantined.add((address, target))
        if association is not None and (incarnation is None or incarnation == known):
            association.declare_lost(RemoteDeadLetterReason.PEER_QUARANTINED, reason)

    def is_quarantined(self, node: Address | str, incarnation: int) -> bool:
        """Whether ``incarnation`` of ``node`` is refused."""
        return (self._node_of(node), incarnation) in self._quarantined

    def remote_statistics(self) -> RemoteStatistics:
        """A snapshot of every association (see `RemoteStatistics`)."""
        peers = tuple(
            self._associations[address].statistics() for address in sorted(self._associations)
        )
        return RemoteStatistics(self._address_prefix, self._incarnation, peers)

    # ---- ActorSystem hooks --------------------------------------------------------------------

    async def _start_services(self) -> None:
        self._incarnation = (
            self._fixed_incarnation
            if self._fixed_incarnation is not None
            else self._random.getrandbits(64)
        )
        listener = await self._transport.listen(Address(self._host, self._port), self._accept)
        self._listener = listener
        self._node = Address(self._host, listener.address.port)
        self._address_prefix = ActorAddress.of_node(self.name, self._node).root
        self._serving = True
        log.info("%s listening (incarnation %d)", self._address_prefix, self._incarnation)
        for association in self._associations.values():
            if association.wants_connection():
                association.ensure_connector()

    async def _after_stop_actors(self) -> None:
        if self._listener is None:
            return
        self._serving = False
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        connections: list[Connection] = []
        for association in self._associations.values():
            conn = association.begin_shutdown()
            if conn is not None:
                connections.append(conn)
        deadline = self._loop.time() + self.settings.shutdown_flush_timeout
        if connections:
            try:
                async with asyncio.timeout_at(deadline):
                    await asyncio.gather(
                        *(conn.drain() for conn in connections), return_exceptions=True
                    )
            except TimeoutError:
                log.warning("%s: queued frames did not leave in time", self._address_prefix)
        for association in self._associations.values():
            association.finish_shutdown()
        while self._remote_tasks:
            tasks = list(self._remote_tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._remote_tasks.difference_update(tasks)
        # Together, and within the flush budget: a close still waiting for a peer that does not
        # read is cancelled, which aborts its socket (a drained one closes at once).
        try:
            async with asyncio.timeout_at(max(deadline, self._loop.time() + _CLOSE_GRACE)):
                await asyncio.gather(*(c.aclose() for c in connections), return_exceptions=True)
        except TimeoutError:
            pass
        await self._listener.aclose()
        await self._transport.aclose()

    def _resolve_foreign(self, address: str) -> ActorRef[Any]:
        ref = self._remote_refs.get(address)
        if ref is not None:
            return ref
        if address.startswith(SCHEME):
            slash = address.find("/", len(SCHEME))
            if slash > 0:
                root, path = address[:slash], address[slash:]
                if root in self._by_root:
                    association = self._by_root[root]
                else:
                    association = self._association_at(root)
                if association is not None:
                    ref = RemoteActorRef(association, path, address)
                    if not path.startswith("/temp/"):  # ask replies are used once
                        if len(self._remote_refs) >= _REMOTE_CACHE_SIZE:
                            self._remote_refs.clear()
                        self._remote_refs[address] = ref
                    return ref
        return super()._resolve_foreign(address)

    # ---- internals ----------------------------------------------------------------------------

    def _node_of(self, node: Address | str) -> Address:
        if isinstance(node, Address):
            return node
        if isinstance(node, str):
            if node.startswith(SCHEME):
                address = ActorAddress.parse(node)
                if address.system != self.name:
                    # A node of another system would refuse the handshake anyway.
                    raise ConfigurationError(
                        f"{node!r} is a node of system {address.system!r}, not {self.name!r}"
                    )
                if address.node is not None:
                    return address.node
            else:
                try:
                    return Address.parse(node)
                except ValueError as exc:
                    raise ConfigurationError(str(exc)) from exc
        raise ConfigurationError(
            f"expected an Address, 'host:port' or a node address, got {node!r}"
        )

    def _association(self, address: Address) -> Association:
        association = self._associations.get(address)
        if association is None:
            association = self._associations[address] = Association(self, address)
        return association

    def _association_at(self, root: str) -> Association | None:
        """The association an address root names, or ``None`` when it is not a peer of ours."""
        try:
            parsed = ActorAddress.parse(root)
        except ConfigurationError:
            parsed = None
        node = parsed.node if parsed is not None and parsed.system == self.name else None
        association = None if node is None or node == self._node else self._association(node)
        if len(self._by_root) >= _REMOTE_CACHE_SIZE:
            self._by_root.clear()
        self._by_root[root] = association
        return association

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in a task owned by remoting (cancelled and awaited at shutdown)."""
        task = self._loop.create_task(coro)
        self._remote_tasks.add(task)
        task.add_done_callback(self._remote_task_done)
        return task

    def _remote_task_done(self, task: asyncio.Task[Any]) -> None:
        self._remote_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("remoting task of %r failed", self, exc_info=task.exception())

    def _watching_changed(self) -> None:
        if self._ticker is None and self._serving:
            self._ticker = self.clock.call_later(self.settings.heartbeat_interval, self._tick)

    def _tick(self) -> None:
        self._ticker = None
        watching = False
        for association in list(self._associations.values()):
            if association.watching:
                watching = True
                association.heartbeat_tick()
        if watching:
            self._watching_changed()

    # ---- asks whose request was dropped -------------------------------------------------------

    def _dead_letter(
        self,
        message: object,
        recipient: ActorRef[Any],
        reason: str,
        error: CastyError | None = None,
    ) -> None:
        """Publish a dropped message and fail the asks waiting for a reply to it at once.

        A local ask's promise among the message's top-level fields fails here when remoting
        dropped the request (its reasons name the error precisely); an ask of another node
        (a ``/temp/`` ref of a peer) is told with `OP_ASK_FAILED` (`Association.ask_failed`),
        whatever dropped the request on this node. So is a peer's ask whose reply remoting
        dropped here (no wire form, over the frame limit).
        """
        if reason not in _NOT_A_REQUEST:
            for value in request_fields(message):
                if type(value) is PromiseRef:
                    if type(reason) is RemoteDeadLetterReason:
                        text = f"the request to {recipient.address} was dropped: {reason}"
                        value.fail(_ask_failure(reason, text))
                elif type(value) is RemoteActorRef and value.path.startswith("/temp/"):
                    value._association.ask_failed(
                        value.path, reason, f"the request to {recipient.address}"
                    )
            if (
                type(recipient) is RemoteActorRef
                and type(reason) is RemoteDeadLetterReason
                and recipient.path.startswith("/temp/")
            ):
                recipient._association.ask_failed(recipient.path, reason, "the reply")
        super()._dead_letter(message, recipient, reason, error)

    def _peer_dropped_request(
        self, association: Association, path: str, reason: str, what: str
    ) -> None:
        """A peer dropped ``what`` (a request whose reply ref is our ``path``, or the reply):
        fail that ask now."""
        promise = self._temp.get(path)
        if promise is not None:
            promise.fail(_ask_failure(reason, f"{association.root} dropped {what}: {reason}"))

    # ---- inbound frames -----------------------------------------------------------------------

    def _dispatch_frames(self, association: Association, frames: list[bytes]) -> None:
        """Dispatch a batch of frames, then run the actors it woke, before returning.

        That saves a request the loop iteration between its arrival and its handling (see
        `ActorSystem._run_woken`). A one-entry frame (a request or a reply, most often) is
        decoded and delivered here, without a call per frame (a remote ask's hot path); other
        frames go to `_dispatch_entries`.

        Raises:
            DecodeError: a protocol violation; the caller drops the connection (the runs
                collected before it go to the loop).
        """
        association.frames_received += len(frames)
        association.bytes_received += sum(map(len, frames))
        association.resume_direct()
        outer = self._woken
        woken: list[Any] = []
        self._woken = woken
        decode = self._envelopes.decode
        direct: LocalActorRef[Any] | None = None
        direct_message: object = None
        try:
            for frame in frames:
                self._wire_codec.peer = association
                items, clean = decode(frame)
                if len(frames) == 1 and len(items) == 3 and clean:
                    ref = self._local_refs.get(items[1])
                    if ref is not None and ref._cell._idle_running():
                        # The batch's only message, to an idle actor: it runs at once below,
                        # without a trip through the mailbox (a remote ask's hot path).
                        association.received += 1
                        direct, direct_message = ref, items[2]
                        continue
                self._dispatch_entries(association, items, clean)
        except BaseException:
            self._woken = outer
            self._schedule_woken(woken)
            raise
        self._woken = outer
        if direct is not None:
            self._run_now(direct, direct_message)
        elif woken:
            self._run_woken(woken)

    def _dispatch_entries(self, association: Association, items: list[Any], clean: bool) -> None:
        """Deliver the entries of a decoded envelope frame (``clean``: no `Undecodable` among
        them), in order.

        Raises:
            DecodeError: a protocol violation; the caller drops the connection.
        """
        association.received += len(items) >> 1
        cache = self._local_refs
        temp = self._temp
        entries = iter(items)
        next(entries)  # the tag
        # Runs of messages to one recipient (the common case) skip the lookup: no actor can
        # start or stop while this loop runs, so the ref found first stays right.
        last: str | None = None
        tell: Callable[[Any], None] = _unreachable
        for recipient, message in zip(entries, entries, strict=True):
            if recipient == last:
                tell(message)
            elif type(recipient) is str:
                if type(message) is Undecodable:
                    self._undecodable(association, recipient, message)
                    continue
                ref = cache.get(recipient)
                if ref is not None and ref._cell._status != _TERMINATED:
                    tell = ref.tell
                else:
                    # An ask's reply goes straight to the waiting future; no actor runs.
                    promise = temp.get(recipient)
                    tell = (promise or self._local_ref(recipient, ref)).tell
                if clean:  # an unclean frame may hold an Undecodable later in the run
                    last = recipient
                tell(message)
            else:
                last = None
                association.control(recipient, message)

    def _local_ref(self, path: str, stale: LocalActorRef[Any] | None) -> ActorRef[Any]:
        found = self._find(path)
        if type(found) is LocalActorRef:
            cache = self._local_refs
            if len(cache) >= _LOCAL_CACHE_SIZE:
                cache.clear()
            cache[path] = found
            return found
        if found is not None:
            return found  # an ask's reply ref, dead letters
        if stale is not None:
            return stale  # the actor stopped: its dead letters say "recipient stopped"
        return self.resolve(path)  # "unknown recipient"

    def _undecodable(self, association: Association, path: str, message: Undecodable) -> None:
        log.warning("undecodable message from %s to %s: %s", association.root, path, message.reason)
        promise = self._temp.get(path)
        if promise is not None:  # the reply to an ask: end the ask with the reason
            promise.fail(
                DecodeError(f"the reply from {association.root} is undecodable: {message.reason}")
            )
        self._dead_letter(
            message.payload,
            self._local_ref(path, None),
            RemoteDeadLetterReason.UNDECODABLE,
        )

    # ---- handshake ----------------------------------------------------------------------------

    async def _dial(self, address: Address) -> tuple[Connection, Accept]:
        """Connect to ``address`` and run the initiator's side of the handshake.

        Returns the connection and the peer's answer (its incarnation and frame limit).

        Raises:
            ConnectFailed: no connection.
            HandshakeFailed: the TLS or Casty handshake failed (`Refusal` when answered).
        """
        conn = await self._transport.connect(address)
        try:
            conn.send(
                encode_handshake(
                    Hello(
                        self.name,
                        self._node.host,
                        self._node.port,
                        self._incarnation,
                        address.host,
                        address.port,
                        self._serializer.name,
                        conn.max_frame_size,
                    )
                )
            )
            timeout = self.settings.handshake_timeout
            try:
                async with asyncio.timeout(timeout):
                    frame = await conn.receive()
                answer = decode_handshake(frame)
            except TimeoutError:
                raise HandshakeFailed(
                    f"{address} sent no handshake answer within {timeout} s"
                ) from None
            except (ConnectionBroken, FrameTooLarge) as exc:
                raise HandshakeFailed(
                    f"{address} closed the connection during the handshake: {exc} (a node "
                    "stopping, or one using TLS, which closes a peer speaking plain TCP)"
                ) from exc
            except DecodeError as exc:
                raise HandshakeFailed(
                    f"{address} answered the handshake with garbage: {exc}", permanent=True
                ) from exc
            if isinstance(answer, Refuse):
                raise self._refusal(address, answer)
            if not isinstance(answer, Accept):
                raise HandshakeFailed(
                    f"{address} answered the handshake with a HELLO", permanent=True
                )
            if answer.system != self.name:
                raise Refusal(
                    f"{address} is system {answer.system!r}, not {self.name!r}",
                    reason=RemoteDeadLetterReason.HANDSHAKE_REFUSED,
                )
            if (answer.host, answer.port) != (address.host, address.port):
                raise Refusal(
                    f"dialled {address} but reached {Address(answer.host, answer.port)}",
                    reason=RemoteDeadLetterReason.HANDSHAKE_REFUSED,
                )
            if (address, answer.incarnation) in self._quarantined:
                why = f"incarnation {answer.incarnation} of {address} is quarantined"
                goodbye = [FRAME_ENVELOPES, OP_QUARANTINED, why]
                with contextlib.suppress(TransportError):  # so that the peer learns why
                    conn.send(self._envelopes.encode(goodbye))
                raise Refusal(why, reason=RemoteDeadLetterReason.PEER_QUARANTINED)
            if answer.max_frame_size < 1:
                raise HandshakeFailed(
                    f"{address} announced a frame limit of {answer.max_frame_size} bytes",
                    permanent=True,
                )
        except BaseException:
            await conn.aclose()
            raise
        return conn, answer

    @staticmethod
    def _refusal(address: Address, answer: Refuse) -> Refusal:
        transient = answer.transient
        return Refusal(
            f"{address} refused the handshake: {answer.reason}",
            transient=transient,
            reason=None if transient else RemoteDeadLetterReason.HANDSHAKE_REFUSED,
        )

    async def _accept(self, conn: Connection) -> None:
        """The listener's handler: the acceptor's side of the handshake, then the reader."""
        peer = conn.remote_address
        timeout = self.settings.handshake_timeout
        try:
            async with asyncio.timeout(timeout):
                frame = await conn.receive()
        except TimeoutError:
            message = "refused a connection from %s: no handshake within %s s"
            self._stray_log.warning("timeout", message, peer, timeout)
            return
        except TransportError as exc:
            self._stray_log.warning(
                type(exc).__name__, "refused a connection from %s: %s", peer, exc
            )
            return
        try:
            hello = decode_handshake(frame)
        except HandshakeFailed as exc:
            self._refuse(conn, str(exc))
            return
        except DecodeError as exc:
            self._refuse(conn, str(exc))
            return
        if not isinstance(hello, Hello):
            self._refuse(conn, f"expected a HELLO, got {type(hello).__name__.upper()}")
            return
        if not self._serving:
            self._refuse(conn, "this node is shutting down", transient=True)
            return
        problem = self._check_hello(hello)
        if problem is not None:
            self._refuse(conn, problem)
            return
        association = self._association(Address(hello.host, hello.port))
        known = association.incarnation
        # Another connection claims a connected peer. It is the peer's restart (another
        # incarnation) or reconnect (the same) only if the old connection has gone quiet: while
        # that one answers, a second node claims the address (a misconfiguration, or a spoof).
        if (
            association.conn is not None
            and known is not None
            and await association.answers(self.settings.handshake_timeout / 2)
        ):
            if known != hello.incarnation:
                alive = f"{association.root} is alive as incarnation {known}"
                self._refuse(conn, alive + " (does another node claim its address?)")
                return
            conflict: str | None = "a connection with this incarnation is established and answers"
        else:
            conflict = association.admit(
                conn, hello.incarnation, initiated=False, frame_limit=hello.max_frame_size
            )
        if conflict is not None:
            log.debug("superseded a connection from %s: %s", association.root, conflict)
            self._answer(conn, Refuse(conflict, transient=True))
            return
        node = self._node
        accept = Accept(self.name, node.host, node.port, self._incarnation, conn.max_frame_size)
        self._answer(conn, accept)
        await association.run(conn)

    def _check_hello(self, hello: Hello) -> str | None:
        if hello.system != self.name:
            # Worded so that it reads right in both nodes' logs (the reason goes to the peer).
            return (
                f"system name mismatch: the connecting node is {hello.system!r}, "
                f"the accepting node is {self.name!r}"
            )
        if hello.serializer != self._serializer.name:
            return (
                f"serializer mismatch: the connecting node uses {hello.serializer!r}, "
                f"the accepting node uses {self._serializer.name!r}"
            )
        if (hello.to_host, hello.to_port) != (self._node.host, self._node.port):
            meant = Address(hello.to_host, hello.to_port)
            return f"the peer meant to reach {meant}, but this node is {self._node}"
        if (Address(hello.host, hello.port), hello.incarnation) in self._quarantined:
            return f"incarnation {hello.incarnation} of {hello.host}:{hello.port} is quarantined"
        if hello.max_frame_size < 1:
            return f"the connecting node announced a frame limit of {hello.max_frame_size} bytes"
        return None

    def _refuse(self, conn: Connection, reason: str, *, transient: bool = False) -> None:
        level = logging.INFO if transient else logging.WARNING
        log.log(level, "refused a connection from %s: %s", conn.remote_address, reason)
        self._answer(conn, Refuse(reason, transient))

    @staticmethod
    def _answer(conn: Connection, message: Accept | Refuse) -> None:
        try:
            conn.send(encode_handshake(message))
        except TransportError:
            pass  # the peer is gone; its reader (or nobody) notices
