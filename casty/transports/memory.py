"""An in-process network of frame connections, with partitions, delays, drops and severed links.

`MemoryTransport` is the reference implementation of the Transport contract and the network of
unit and cluster tests: it keeps TCP's semantics (ordered frames per connection, the frame limit
on both sides, close and reset, backpressure) without sockets, and its `MemoryNetwork` injects
faults between named hosts on command.
"""

from __future__ import annotations

import asyncio
import math
import random
import weakref
from collections import deque
from typing import Any, ClassVar, Self, final

from casty.abc import Address, Connection, ConnectionHandler, Listener, Transport
from casty.errors import ConfigurationError, ConnectFailed, ConnectionBroken, FrameTooLarge
from casty.registry import BackendURL
from casty.transports._framing import (
    DEFAULT_HIGH_WATER,
    HEADER_SIZE,
    FramedConnection,
    FrameParser,
    OptionReader,
    TaskListener,
    check_frame_limit,
    check_positive,
    logger,
)

__all__ = ["MemoryNetwork", "MemoryTransport"]

#: The first port handed out for port 0 and for the local end of connections.
FIRST_EPHEMERAL_PORT = 49152

Host = str | Address


def _host(value: Host) -> str:
    return value.host if isinstance(value, Address) else value


class _End:
    """What one end of an in-memory link needs from the other; this base ignores everything.

    A connection's peer is this detached base only between construction and pairing.
    """

    def _arrive(self, frames: list[bytes]) -> None:
        """Frames from the other end arrive."""

    def _arrive_eof(self) -> None:
        """The other end closed cleanly."""

    def _broken(self, reason: str) -> None:
        """The other end reset the connection."""

    def _unread_bytes(self) -> int:
        return 0

    def _consumed(self) -> None:
        """The other end took frames from its inbox."""


class MemoryConnection(FramedConnection, _End):
    """One end of an in-memory connection; the other end is ``_peer``."""

    def __init__(
        self,
        network: MemoryNetwork,
        local: Address,
        remote: Address,
        max_frame_size: int,
        high_water: int,
        identity: str | None,
    ) -> None:
        FramedConnection.__init__(self, max_frame_size, high_water)
        self._network = network
        self._local = local
        self._remote = remote
        self._identity = identity
        self._peer: _End = _End()
        # Delayed arrivals, oldest first: (due time, frames or None for end-of-stream, bytes).
        self._in_flight: deque[tuple[float, list[bytes] | None, int]] = deque()
        self._in_flight_bytes = 0
        self._pump_handle: asyncio.TimerHandle | None = None

    @property
    def local_address(self) -> Address:
        return self._local

    @property
    def remote_address(self) -> Address:
        return self._remote

    @property
    def peer_identity(self) -> str | None:
        return self._identity

    # ---- sending side ------------------------------------------------------------------------

    def _write_batch(self, frames: list[bytes]) -> None:
        self._network._transmit(self, frames)

    def _backlog(self) -> int:
        return self._peer._unread_bytes()

    def _pause_reading(self) -> None:
        """Nothing to pause: the sender's `drain` waits on this end's unread bytes instead."""

    def _resume_reading(self) -> None:
        """See `_pause_reading`."""

    async def _close(self) -> None:
        self._network._forget(self)
        if not self._lost:
            self._network._transmit_eof(self)
        self._feed_eof()

    def abort(self) -> None:
        self._network._forget(self)
        if not self._lost:
            self._peer._broken("connection reset by peer")
        self._fail(ConnectionBroken("connection aborted"))

    # ---- receiving side ----------------------------------------------------------------------

    def _schedule(self, frames: list[bytes] | None, delay: float) -> None:
        """Queue an arrival ``delay`` seconds from now, never ahead of an earlier one."""
        nbytes = sum(map(len, frames)) + HEADER_SIZE * len(frames) if frames else 0
        if delay <= 0 and not self._in_flight:
            self._land(frames, nbytes)
            return
        due = self._loop.time() + delay
        if self._in_flight:
            due = max(due, self._in_flight[-1][0])
        self._in_flight.append((due, frames, nbytes))
        self._in_flight_bytes += nbytes
        if self._pump_handle is None:
            self._pump_handle = self._loop.call_at(due, self._pump)

    def _pump(self) -> None:
        self._pump_handle = None
        now = self._loop.time()
        while self._in_flight and self._in_flight[0][0] <= now and not self._lost:
            _, frames, nbytes = self._in_flight.popleft()
            self._in_flight_bytes -= nbytes
            self._land(frames, nbytes)
        if self._in_flight and not self._lost:
            self._pump_handle = self._loop.call_at(self._in_flight[0][0], self._pump)

    def _land(self, frames: list[bytes] | None, nbytes: int) -> None:
        if self._lost:
            return
        if frames is None:
            self._network._forget(self)
            self._feed_eof()
            return
        limit = self.max_frame_size
        if max(map(len, frames)) > limit:
            cut = next(i for i, frame in enumerate(frames) if len(frame) > limit)
            error = FrameTooLarge(
                f"peer sent a {len(frames[cut])}-byte frame; the limit is {limit} bytes"
            )
            logger.warning("dropping connection from %s: %s", self._remote, error)
            if cut:
                self._deliver(frames[:cut], nbytes)
            self._network._forget(self)
            self._peer._broken("connection reset by peer")
            self._fail(error)
            return
        self._deliver(frames, nbytes)

    def _arrive(self, frames: list[bytes]) -> None:
        self._schedule(frames, 0.0)

    def _arrive_eof(self) -> None:
        self._schedule(None, 0.0)

    def _broken(self, reason: str) -> None:
        self._network._forget(self)
        self._in_flight.clear()
        self._fail(ConnectionBroken(reason))

    def _unread_bytes(self) -> int:
        return self._inbox_bytes + self._in_flight_bytes

    def _consumed(self) -> None:
        if self._drainers:
            self._wake_drainers()

    def _mark_lost(self) -> None:
        super()._mark_lost()
        if self._pump_handle is not None:
            self._pump_handle.cancel()
            self._pump_handle = None

    async def receive_many(self) -> list[bytes]:
        frames = await super().receive_many()
        self._peer._consumed()
        return frames

    def _frames_taken(self) -> None:
        self._peer._consumed()

    async def receive(self) -> bytes:
        frame = await super().receive()
        self._peer._consumed()
        return frame

    def __repr__(self) -> str:
        return f"<MemoryConnection {self._local} -> {self._remote}>"


class MemoryRawPeer(_End):
    """A test peer that writes raw bytes (headers included) to a memory listener.

    Made by `MemoryNetwork.raw_connect`, for contract tests of malformed input: the bytes are
    framed with the listening side's limit, exactly as a socket peer's bytes would be.
    """

    def __init__(self, server: MemoryConnection) -> None:
        self._server = server
        self._parser = FrameParser(server.max_frame_size)
        self._dropped = asyncio.Event()

    def write(self, data: bytes) -> None:
        """Send ``data`` as it is; a malformed header drops the connection, as on a socket."""
        if self._dropped.is_set():
            return
        try:
            frames = self._parser.feed(data)
        except FrameTooLarge as exc:
            logger.warning("dropping connection from %s: %s", self._server.remote_address, exc)
            if self._parser.salvage:
                self._server._arrive(self._parser.salvage)
            self._server._network._forget(self._server)
            self._server._fail(exc)
            self._dropped.set()
            return
        if frames:
            self._server._arrive(frames)

    async def aclose(self) -> None:
        """Close this end; a partial frame left behind breaks the server's connection."""
        if self._dropped.is_set():
            return
        if self._parser.pending:
            self._server._broken("peer closed the connection mid-frame")
        else:
            self._server._arrive_eof()
        self._dropped.set()

    async def wait_dropped(self) -> None:
        """Return once the listening side has dropped (or this end closed) the connection."""
        await self._dropped.wait()

    def _arrive(self, frames: list[bytes]) -> None:
        """Frames from the server are discarded."""

    def _arrive_eof(self) -> None:
        self._dropped.set()

    def _broken(self, reason: str) -> None:
        self._dropped.set()


class _MemoryListener(TaskListener):
    def __init__(self, transport: MemoryTransport, address: Address, handler: ConnectionHandler):
        super().__init__(handler)
        self.transport = transport
        self._network = transport.network
        self._address = address

    def _stop_accepting(self) -> None:
        self._network._unbind(self._address, self)

    async def _stopped(self) -> None:
        return None


class MemoryNetwork:
    """A named in-process network: listeners by `Address`, links between hosts, and faults.

    Hosts are names (``Address.host``). Fault rules hold per direction between two hosts and
    apply to frames written from then on:

    - `partition` drops every frame crossing the link and refuses new connections across it
      (closing and severing still reach the other end, so no connection hangs forever);
    - `delay` holds frames back by a number of seconds, keeping each connection's order;
    - `drop` loses each frame with a probability (seeded: ``MemoryNetwork(seed=...)``);
    - `sever` resets every live connection between two hosts at once;
    - `heal` removes partitions, delays and drops (all of them, a host's, or between two hosts).

    Instances with the same name are shared through `named` (what ``memory://name`` uses);
    a network lives as long as a transport or test holds it.
    """

    _named: ClassVar[weakref.WeakValueDictionary[str, MemoryNetwork]] = (
        weakref.WeakValueDictionary()
    )

    def __init__(self, name: str = "", *, seed: int | None = None) -> None:
        self.name = name
        self._listeners: dict[Address, _MemoryListener] = {}
        self._next_port: dict[str, int] = {}
        self._blocked: set[tuple[str, str]] = set()
        self._delays: dict[tuple[str, str], float] = {}
        self._drops: dict[tuple[str, str], float] = {}
        self._random = random.Random(seed)
        self._live: set[MemoryConnection] = set()

    @classmethod
    def named(cls, name: str) -> MemoryNetwork:
        """The shared network called ``name`` (created on first use)."""
        network = cls._named.get(name)
        if network is None:
            network = cls(name)
            cls._named[name] = network
        return network

    def transport(self, node: str, **options: Any) -> MemoryTransport:
        """A `MemoryTransport` on this network whose host name is ``node``.

        ``options`` are `MemoryTransport`'s keyword arguments.
        """
        return MemoryTransport(self, node=node, **options)

    # ---- fault injection ---------------------------------------------------------------------

    @staticmethod
    def _links(a: Host, b: Host, oneway: bool) -> list[tuple[str, str]]:
        src, dst = _host(a), _host(b)
        return [(src, dst)] if oneway else [(src, dst), (dst, src)]

    def partition(self, a: Host, b: Host, *, oneway: bool = False) -> None:
        """Cut the link from ``a`` to ``b`` (and back, unless ``oneway``)."""
        self._blocked.update(self._links(a, b, oneway))

    def delay(self, a: Host, b: Host, seconds: float, *, oneway: bool = False) -> None:
        """Delay frames from ``a`` to ``b`` (and back, unless ``oneway``) by ``seconds``.

        Raises:
            ConfigurationError: ``seconds`` is negative, NaN or infinite.
        """
        if not 0 <= seconds < math.inf:  # NaN fails both comparisons
            raise ConfigurationError(f"delay must be >= 0 seconds and finite, got {seconds}")
        for link in self._links(a, b, oneway):
            self._delays[link] = seconds

    def drop(self, a: Host, b: Host, probability: float, *, oneway: bool = False) -> None:
        """Lose each frame from ``a`` to ``b`` (and back, unless ``oneway``) with ``probability``.

        Raises:
            ConfigurationError: ``probability`` is outside 0..1.
        """
        if not 0.0 <= probability <= 1.0:
            raise ConfigurationError(f"drop probability must be within 0..1, got {probability}")
        for link in self._links(a, b, oneway):
            self._drops[link] = probability

    def heal(self, a: Host | None = None, b: Host | None = None) -> None:
        """Remove partition, delay and drop rules.

        ``heal()`` removes every rule; ``heal(a)`` only the rules of ``a``'s links (those
        from or to ``a``), leaving the rest of the network as it is; ``heal(a, b)`` only the
        rules between ``a`` and ``b``, both directions. A ``None`` argument is skipped, so
        ``heal(None, b)`` acts as ``heal(b)``.
        """
        given = [_host(host) for host in (a, b) if host is not None]
        if not given:
            self._blocked.clear()
            self._delays.clear()
            self._drops.clear()
            return
        if len(given) == 2:
            links = set(self._links(given[0], given[1], oneway=False))
        else:
            host = given[0]
            links = {
                link
                for rules in (self._blocked, self._delays, self._drops)
                for link in rules
                if host in link
            }
        for link in links:
            self._blocked.discard(link)
            self._delays.pop(link, None)
            self._drops.pop(link, None)

    def sever(self, a: Host, b: Host) -> int:
        """Reset every live connection between hosts ``a`` and ``b``; returns how many ends."""
        hosts = {_host(a), _host(b)}
        ends = [
            conn
            for conn in self._live
            if {conn.local_address.host, conn.remote_address.host} == hosts
        ]
        for conn in ends:
            conn._broken("connection severed")
        return len(ends)

    def is_partitioned(self, a: Host, b: Host) -> bool:
        """Whether frames from ``a`` to ``b`` are currently cut off."""
        return (_host(a), _host(b)) in self._blocked

    # ---- endpoints ---------------------------------------------------------------------------

    def _port(self, host: str) -> int:
        port = self._next_port.get(host, FIRST_EPHEMERAL_PORT)
        while Address(host, port) in self._listeners:
            port += 1
        self._next_port[host] = port + 1
        return port

    def _bind(self, address: Address, listener_factory: Any) -> _MemoryListener:
        if address.port == 0:
            address = Address(address.host, self._port(address.host))
        if address in self._listeners:
            raise ConnectFailed(f"cannot listen on {address}: address already in use")
        listener: _MemoryListener = listener_factory(address)
        self._listeners[address] = listener
        return listener

    def _unbind(self, address: Address, listener: _MemoryListener) -> None:
        if self._listeners.get(address) is listener:
            del self._listeners[address]

    def _listener_for(self, source: str, address: Address) -> _MemoryListener:
        listener = self._listeners.get(address)
        if listener is None:
            raise ConnectFailed(f"cannot connect to {address}: connection refused")
        if (source, address.host) in self._blocked or (address.host, source) in self._blocked:
            raise ConnectFailed(f"cannot connect to {address}: network partitioned")
        return listener

    async def _connect(
        self, client: MemoryTransport, source: str, address: Address, timeout: float
    ) -> MemoryConnection:
        listener = self._listener_for(source, address)
        round_trip = self._delays.get((source, address.host), 0.0) + self._delays.get(
            (address.host, source), 0.0
        )
        if round_trip:
            if round_trip > timeout:
                await asyncio.sleep(timeout)
                raise ConnectFailed(f"cannot connect to {address}: timed out")
            await asyncio.sleep(round_trip)
            listener = self._listener_for(source, address)
        server_transport = listener.transport
        local = Address(source, self._port(source))
        connection = MemoryConnection(
            self,
            local,
            address,
            client.max_frame_size,
            client.high_water,
            server_transport.identity,
        )
        accepted = MemoryConnection(
            self,
            address,
            local,
            server_transport.max_frame_size,
            server_transport.high_water,
            client.identity,
        )
        connection._peer, accepted._peer = accepted, connection
        self._live.update((connection, accepted))
        listener.spawn(listener.serve(accepted), accepted)
        return connection

    async def raw_connect(self, address: Address, *, source: str = "raw-peer") -> MemoryRawPeer:
        """Open a connection whose client end writes raw bytes (for malformed-input tests).

        Raises:
            ConnectFailed: nothing listens at ``address``.
        """
        listener = self._listener_for(source, address)
        server_transport = listener.transport
        accepted = MemoryConnection(
            self,
            address,
            Address(source, self._port(source)),
            server_transport.max_frame_size,
            server_transport.high_water,
            None,
        )
        raw = MemoryRawPeer(accepted)
        accepted._peer = raw
        self._live.add(accepted)
        listener.spawn(listener.serve(accepted), accepted)
        return raw

    # ---- the wire ----------------------------------------------------------------------------

    def _transmit(self, sender: MemoryConnection, frames: list[bytes]) -> None:
        link = (sender.local_address.host, sender.remote_address.host)
        if link in self._blocked:
            return
        probability = self._drops.get(link)
        if probability:
            chance = self._random.random
            frames = [frame for frame in frames if chance() >= probability]
            if not frames:
                return
        peer = sender._peer
        delay = self._delays.get(link)
        if delay and isinstance(peer, MemoryConnection):
            peer._schedule(frames, delay)
        else:
            peer._arrive(frames)

    def _transmit_eof(self, sender: MemoryConnection) -> None:
        peer = sender._peer
        delay = self._delays.get((sender.local_address.host, sender.remote_address.host))
        if delay and isinstance(peer, MemoryConnection):
            peer._schedule(None, delay)
        else:
            peer._arrive_eof()

    def _forget(self, connection: MemoryConnection) -> None:
        self._live.discard(connection)

    def __repr__(self) -> str:
        return f"<MemoryNetwork {self.name!r} listeners={len(self._listeners)}>"


@final
class MemoryTransport(Transport):
    """Frames between transports of one in-process `MemoryNetwork`: no sockets, same semantics.

    Addresses are ``Address(host_name, port)``; port 0 picks a free port on that name. The
    transport's own host name (the source of its connections, which fault rules match) is
    ``node``, else the host of its first `listen`, else a generated ``"memory-client-N"``.
    Frames are checked against the sender's limit on `Connection.send` and the receiver's on
    arrival (an over-limit frame drops the connection, as on TCP); writes are batched per
    event-loop turn; `Connection.drain` waits while the peer holds more than ``high_water``
    unread bytes. ``identity`` is what peers see as `Connection.peer_identity`.

    URL: ``memory://[network-name][?node=name&max_frame_size=...&high_water=...&identity=...]``;
    without a name the process-wide default network is used. Keyword ``network`` (a
    `MemoryNetwork`) wins over the name.

    Args:
        network: the network, or its name; ``None`` is the default network.
        node: this transport's host name on the network.
        identity: the identity peers see (as a TLS certificate subject would be), or ``None``.
        max_frame_size: the largest frame in bytes (default 8 MiB).
        high_water: unread bytes at the peer above which `Connection.drain` waits (1 MiB).
        connect_timeout: seconds `connect` waits by default (matters with `MemoryNetwork.delay`).

    Extra: none. Capabilities: raw peers (`MemoryNetwork.raw_connect`), optional identity.
    """

    _anonymous: ClassVar[int] = 0

    def __init__(
        self,
        network: MemoryNetwork | str | None = None,
        *,
        node: str | None = None,
        identity: str | None = None,
        max_frame_size: int = Transport.DEFAULT_MAX_FRAME_SIZE,
        high_water: int = DEFAULT_HIGH_WATER,
        connect_timeout: float = 5.0,
    ) -> None:
        if not isinstance(network, MemoryNetwork):
            network = MemoryNetwork.named(network or "")
        self.network = network
        self.node = node
        self.identity = identity
        self.max_frame_size = check_frame_limit(max_frame_size)
        self.high_water = check_positive("high_water", high_water)
        self.connect_timeout = check_positive("connect_timeout", connect_timeout)

    @classmethod
    def from_url(cls, url: BackendURL, **options: Any) -> Self:
        """Build from ``memory://network-name?node=...`` (see the class docstring).

        Raises:
            ConfigurationError: an unknown or malformed option.
        """
        reader = OptionReader("memory", url.query, options)
        transport = cls(
            reader.keyword("network", url.host or url.path or None),
            node=reader.text("node"),
            identity=reader.text("identity"),
            max_frame_size=reader.integer("max_frame_size", cls.DEFAULT_MAX_FRAME_SIZE),
            high_water=reader.integer("high_water", DEFAULT_HIGH_WATER),
            connect_timeout=reader.number("connect_timeout", 5.0),
        )
        reader.finish()
        return transport

    def _source(self) -> str:
        if self.node is None:
            MemoryTransport._anonymous += 1
            self.node = f"memory-client-{MemoryTransport._anonymous}"
        return self.node

    async def listen(self, address: Address, handler: ConnectionHandler) -> Listener:
        """Bind ``address`` on the network (port 0 picks a free port on that host name).

        Raises:
            ConnectFailed: another listener holds the address.
        """
        if self.node is None:
            self.node = address.host
        return self.network._bind(address, lambda bound: _MemoryListener(self, bound, handler))

    async def connect(self, address: Address, timeout: float | None = None) -> Connection:
        """Connect to the listener at ``address``.

        Raises:
            ConnectFailed: nothing listens there, the hosts are partitioned, or the link delay
                exceeds ``timeout`` seconds (default `connect_timeout`).
        """
        limit = self.connect_timeout if timeout is None else timeout
        return await self.network._connect(self, self._source(), address, limit)

    def __repr__(self) -> str:
        return f"MemoryTransport(network={self.network.name!r}, node={self.node!r})"
