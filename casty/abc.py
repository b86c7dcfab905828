"""The four plug-in protocols of Casty's kernel: Journal, Transport, Serializer and Discovery.

Each is an ABC, so an incomplete plug-in fails when it is constructed rather than in production.
Constructors do no I/O; opening happens in `open()` / `__aenter__` (or, for journals, lazily on
first use); `aclose()` is idempotent. Every backend also has a ``from_url`` classmethod, used by the
per-family registries (`casty.registry`).

Each protocol has a contract suite in `casty.testing` (`JournalContract`, `TransportContract`,
`SerializerContract`, `DiscoveryContract`) that an implementation must pass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Self

import casty.errors

__all__ = [
    "Address",
    "Connection",
    "Discovery",
    "Journal",
    "JournalCapabilities",
    "JournalEntry",
    "Listener",
    "RefCodec",
    "Serializer",
    "SnapshotEntry",
    "Transport",
]

#: The largest sequence number: the default upper bound of replays and snapshot selection.
MAX_SEQUENCE_NR = 2**63 - 1


@dataclass(frozen=True, slots=True, order=True)
class Address:
    """A network location: ``host`` and ``port``.

    For `MemoryTransport` the host is a node name in the in-process network. Port 0 asks the
    transport to pick a free port; the listener reports the bound one.
    """

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``"host:port"`` (``"[v6]:port"`` for IPv6).

        Raises:
            ValueError: no port, or the port is not an integer in 0..65535.
        """
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected host:port, got {text!r}")
        return cls(host.strip("[]"), int(port))


# --------------------------------------------------------------------------------------------
# Serializer
# --------------------------------------------------------------------------------------------


class RefCodec(ABC):
    """Translates actor refs to and from their wire form, for serializers.

    A serializer that meets an instance of `ref_type` writes ``to_wire(ref)`` (an address string
    such as ``"casty://system@host:port/user/a"``) and, on decoding, hands that string to
    `from_wire`, which returns a ref usable on the receiving node.
    """

    ref_type: ClassVar[type]

    @abstractmethod
    def to_wire(self, ref: Any) -> str:
        """The address string of ``ref``."""

    @abstractmethod
    def from_wire(self, address: str) -> Any:
        """A ref for ``address`` on this node (local when it names this node, remote otherwise)."""


class Serializer(ABC):
    """Turns messages into bytes and back.

    `encode` and `decode` are synchronous, pure and safe to call from any task concurrently.

    Implementing: `name` (a stable identifier stored beside journal entries), `encode`,
    `decode` and ``from_url`` are required. `casty.testing.SerializerContract` must pass.
    Decoding bytes from an untrusted peer must never run code or import modules, unless the
    serializer says otherwise in its docstring (as `PickleSerializer` does).
    """

    #: Stable name stored with journal entries to pick the serializer when reading them back.
    name: ClassVar[str]

    @abstractmethod
    def encode(self, obj: object, refs: RefCodec | None = None) -> bytes:
        """Return the bytes of ``obj``; actor refs go through ``refs``.

        Raises:
            EncodeError: ``obj`` (or something inside it) has no wire form.
        """

    @abstractmethod
    def decode(self, data: bytes, refs: RefCodec | None = None) -> object:
        """Return the value encoded in ``data``; actor refs are resolved through ``refs``.

        Raises:
            DecodeError: truncated or malformed bytes, an unknown type name, or a value that does
                not fit its type. No other exception escapes.
        """

    def manifest(self, obj: object) -> str:
        """A type hint stored beside a journal entry (``module:qualname``); may be ``""``."""
        cls = type(obj)
        return f"{cls.__module__}:{cls.__qualname__}"


# --------------------------------------------------------------------------------------------
# Journal
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One stored event.

    Attributes:
        persistence_id: the entity's identity in the journal.
        sequence_nr: position in that entity's log, from 1, without gaps within one writer.
        payload: the serialized event.
        serializer: `Serializer.name` of the serializer that produced ``payload``.
        manifest: the serializer's type hint for ``payload`` (``module:qualname``), may be ``""``.
        epoch: the writer's fencing token; a journal refuses entries whose epoch is lower than the
            highest epoch it has stored for the persistence id (`StaleEpoch`). 0 means unfenced.
        timestamp_ms: wall-clock milliseconds since the Unix epoch when the entry was made.
    """

    persistence_id: str
    sequence_nr: int
    payload: bytes
    serializer: str
    manifest: str = ""
    epoch: int = 0
    timestamp_ms: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotEntry:
    """A snapshot of an entity's state after ``sequence_nr`` events.

    Attributes mirror `JournalEntry`; ``payload`` is the serialized state.
    """

    persistence_id: str
    sequence_nr: int
    payload: bytes
    serializer: str
    manifest: str = ""
    timestamp_ms: int = 0


@dataclass(frozen=True, slots=True)
class JournalCapabilities:
    """What a journal implementation supports; contract tests skip what is absent.

    Attributes:
        atomic_batches: a multi-entry `Journal.write` is all or nothing.
        durable: acknowledged writes survive closing and reopening the storage.
        snapshots: `save_snapshot` / `load_snapshot` / `delete_snapshots` are implemented.
        concurrent_writers: several journal objects (or processes) may open the same storage.
        replace_suffix: `Journal.replace_suffix` is implemented (the default raises
            `WriteRejected`).
    """

    atomic_batches: bool = True
    durable: bool = True
    snapshots: bool = True
    concurrent_writers: bool = True
    replace_suffix: bool = False


class _Closeable(ABC):
    """``async with`` support for resources closed by an idempotent `aclose`."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release the resource; idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Journal(_Closeable):
    """Durable, append-only logs of events, one per persistence id, plus snapshots.

    Akka's journal plug-in API, made Pythonic. Every method may be called concurrently from many
    tasks. A journal opens itself on first use (or in `open`/``__aenter__``); after `aclose`
    every method raises `ResourceClosed`.

    Implementing: `write`, `replay`, `highest_sequence_nr`, `delete_to`, `save_snapshot`,
    `load_snapshot`, `delete_snapshots`, `aclose` and ``from_url`` are required; `open` has a
    no-op default. `capabilities` declares what the contract suite may test; a plug-in passes by
    subclassing `casty.testing.JournalContract` once. Translate driver errors at one place into
    `JournalUnavailable` (retryable), `WriteRejected` (never retry) or `SequenceConflict`.
    """

    capabilities: ClassVar[JournalCapabilities] = JournalCapabilities()

    async def open(self) -> None:  # optional hook: by default there is nothing to open
        """Open the storage now instead of on first use (creates schema where needed).

        Raises:
            JournalUnavailable: the store cannot be reached.
        """

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    @abstractmethod
    async def write(self, entries: Sequence[JournalEntry]) -> None:
        """Append ``entries`` atomically: all are stored or none is.

        All entries share one persistence id and one epoch, and carry consecutive sequence
        numbers, the first being ``highest_sequence_nr + 1``. The call returns once they are
        durable to the journal's configured level. Concurrent writers to one persistence id
        race: exactly one wins a given sequence number.

        Raises:
            SequenceConflict: the first sequence number is not ``highest_sequence_nr + 1`` (it
                is taken, or it would leave a gap); nothing of this call is stored.
            StaleEpoch: an entry's epoch is lower than one already stored for the id.
            WriteRejected: the input can never be stored (mixed ids or epochs, non-consecutive
                numbers).
            JournalUnavailable: the store failed; nothing of this call is known to be stored.
            ResourceClosed: after `aclose`.

        Cancellation leaves all or nothing stored.
        """

    @abstractmethod
    def replay(
        self,
        persistence_id: str,
        from_sequence_nr: int = 1,
        to_sequence_nr: int = MAX_SEQUENCE_NR,
        limit: int | None = None,
    ) -> AsyncIterator[JournalEntry]:
        """Stream the entries with ``from_sequence_nr <= sequence_nr <= to_sequence_nr``.

        Ascending by sequence number, at most ``limit`` entries (``None`` for all), in bounded
        memory. Entries deleted by `delete_to` are skipped; an unknown id yields nothing.

        Raises:
            JournalUnavailable: while iterating, when the store fails.
            CorruptEntry: a stored row cannot be read.
        """

    @abstractmethod
    async def highest_sequence_nr(self, persistence_id: str) -> int:
        """The highest sequence number ever written for the id; 0 when none.

        Never decreases, except through `replace_suffix`; `delete_to` leaves it in place, even
        when it removed every entry.
        """

    async def replace_suffix(self, entries: Sequence[JournalEntry]) -> None:
        """Replace the id's entries from ``entries[0].sequence_nr`` on with ``entries``.

        Raft's "delete the conflicting entry and all that follow it, then append" (Ongaro and
        Ousterhout 2014, section 5.3), for replication. Let ``n = entries[0].sequence_nr``. In
        one step, all or nothing (cancellation included, as for `write`): the id's entries
        with ``sequence_nr >= n`` and its snapshots with ``sequence_nr >= n`` (built from the
        replaced entries) are deleted, then ``entries`` are stored. Afterwards
        `highest_sequence_nr` is ``entries[-1].sequence_nr``, lower than before when the new
        suffix is shorter (the only operation that lowers it), and later writes are fenced by
        ``entries[-1].epoch``. Entries below ``n`` are untouched; entries deleted by
        `delete_to` stay deleted. ``n == highest_sequence_nr + 1`` is a plain append. New
        entries get new places in any global ordering the journal keeps. Serialised with
        concurrent `write` calls to the id: the log ends as if one ran after the other.

        Args:
            entries: non-empty; one persistence id, consecutive sequence numbers, epochs that
                never decrease (unlike `write`, they may span several epochs).

        Raises:
            WriteRejected: empty, mixed ids, non-consecutive numbers, decreasing epochs, a field
                of the wrong type; or the journal does not implement this operation (the
                default here, for journals whose ``capabilities.replace_suffix`` is false).
            SequenceConflict: ``n > highest_sequence_nr + 1`` (it would leave a gap).
            StaleEpoch: never replace newer with older: ``n <= highest_sequence_nr`` and the
                id's stored epoch (that of its highest entry, which the call deletes; it
                survives `delete_to`) is above ``entries[-1].epoch``; or ``entries[0].epoch``
                is below the epoch of the kept entry ``n - 1`` (for a plain append: below the
                id's stored epoch, as for `write`). Nothing is changed.
            JournalUnavailable: the store failed; nothing of this call is known to be done.
            ResourceClosed: after `aclose`.
        """
        raise casty.errors.WriteRejected(f"{type(self).__name__} cannot replace entries")

    @abstractmethod
    async def delete_to(self, persistence_id: str, to_sequence_nr: int) -> None:
        """Delete the entries with ``sequence_nr <= to_sequence_nr`` (inclusive); idempotent.

        A bound above the highest stored number deletes everything stored, and does not affect
        entries written later.
        """

    @abstractmethod
    async def save_snapshot(self, snapshot: SnapshotEntry) -> None:
        """Store ``snapshot``, replacing one with the same id and sequence number."""

    @abstractmethod
    async def load_snapshot(
        self,
        persistence_id: str,
        max_sequence_nr: int = MAX_SEQUENCE_NR,
        min_sequence_nr: int = 0,
        max_timestamp_ms: int | None = None,
    ) -> SnapshotEntry | None:
        """The newest snapshot within the inclusive bounds, or ``None`` when there is none."""

    @abstractmethod
    async def delete_snapshots(
        self, persistence_id: str, max_sequence_nr: int, min_sequence_nr: int = 0
    ) -> None:
        """Delete the snapshots within the inclusive sequence bounds; idempotent."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release connections and files; idempotent. Pending writes finish or fail first."""


# --------------------------------------------------------------------------------------------
# Transport
# --------------------------------------------------------------------------------------------


#: Receives a batch of frames, in order (see `Connection.receive_into`).
FrameHandler = Callable[[list[bytes]], None]


class Connection(_Closeable):
    """A bidirectional stream of frames (byte strings) with one peer.

    Frames arrive whole and in the order they were sent. `send` is synchronous: it queues the
    frame and the transport writes everything queued in one event-loop turn together. `drain`
    applies backpressure. One task at a time may receive; any task may send.

    Implementing: every abstract member; ``__aiter__`` and `receive_into` have defaults built
    on `receive_many`. `casty.testing.TransportContract` must pass.
    """

    #: The frame size limit in bytes, for both directions.
    max_frame_size: int

    @property
    @abstractmethod
    def local_address(self) -> Address:
        """This end's address."""

    @property
    @abstractmethod
    def remote_address(self) -> Address:
        """The peer's address as seen by the transport."""

    @property
    @abstractmethod
    def peer_identity(self) -> str | None:
        """The authenticated peer's identity (TLS certificate subject, RFC 4514), else ``None``."""

    @abstractmethod
    def send(self, frame: bytes) -> None:
        """Queue ``frame`` for sending; never blocks.

        Raises:
            FrameTooLarge: ``len(frame) > max_frame_size``; the connection stays usable.
            ConnectionBroken: the connection is closed or lost.
        """

    @abstractmethod
    async def drain(self) -> None:
        """Write what `send` queued now, then wait until the backlog is below the high-water mark.

        Raises:
            ConnectionBroken: the connection was lost while waiting.
        """

    @abstractmethod
    async def receive_many(self) -> list[bytes]:
        """Wait for at least one frame and return every frame already received, in order.

        Returns an empty list once the peer closed cleanly or `aclose` was called here (and
        keeps returning it); frames received before that are returned first.

        Raises:
            ConnectionBroken: the peer vanished mid-frame or reset the connection.
            FrameTooLarge: the peer announced a frame above the limit; the connection is closed.
        """

    @abstractmethod
    async def receive(self) -> bytes:
        """Return the next frame (frames buffered by `receive_many` callers are not lost).

        Raises:
            ConnectionBroken: the connection is lost, or the peer closed and nothing is left.
            FrameTooLarge: as in `receive_many`.
        """

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while batch := await self.receive_many():
            for frame in batch:
                yield frame

    async def receive_into(self, handler: FrameHandler) -> None:
        """Hand every incoming frame to ``handler`` until the stream ends (push mode).

        ``handler(frames)`` gets the frames in order, in batches: first those already received,
        then each batch as it arrives. It runs on the event loop and must not block or receive
        from this connection. A transport that can call it from its own read callback (every
        built-in one does) saves the receiving task a wake-up per batch; this default receives
        with `receive_many` in the calling task. Only one task at a time may receive.

        Returns once the peer closed cleanly or `aclose` was called here, after every frame
        received before that was handed over.

        Raises:
            ConnectionBroken: as in `receive_many`.
            FrameTooLarge: as in `receive_many`.
            Exception: whatever ``handler`` raised; frames arriving afterwards are not handed
                over (close the connection).

        Cancelling the caller stops the handing over; frames that arrive later are kept for
        the next receiver.
        """
        while batch := await self.receive_many():
            handler(batch)

    @abstractmethod
    async def aclose(self) -> None:
        """Flush what is queued (best effort) and close; idempotent."""

    @property
    @abstractmethod
    def is_closing(self) -> bool:
        """Whether `aclose` was called or the connection was lost."""


ConnectionHandler = Callable[[Connection], Awaitable[None]]


class Listener(_Closeable):
    """A bound listening endpoint; each accepted connection runs the handler in its own task."""

    @property
    @abstractmethod
    def address(self) -> Address:
        """The bound address (with the real port when port 0 was asked for)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Stop accepting and close accepted connections whose handlers still run; idempotent."""


class Transport(ABC):
    """Opens connections that carry length-prefixed frames.

    Implementing: `listen`, `connect` and ``from_url`` are required; `aclose` defaults to
    nothing. `casty.testing.TransportContract` must pass.
    """

    #: Default frame limit in bytes (8 MiB).
    DEFAULT_MAX_FRAME_SIZE: ClassVar[int] = 8 * 1024 * 1024

    max_frame_size: int

    @abstractmethod
    async def listen(self, address: Address, handler: ConnectionHandler) -> Listener:
        """Bind ``address`` and call ``handler(connection)`` for each accepted peer.

        The handler's task owns the connection, which is closed when the handler returns.
        A failing handshake (TLS) never reaches the handler.

        Raises:
            ConnectFailed: the address cannot be bound.
        """

    @abstractmethod
    async def connect(self, address: Address, timeout: float = 5.0) -> Connection:
        """Open a connection to ``address`` within ``timeout`` seconds.

        Raises:
            ConnectFailed: refused, unreachable, or timed out.
            HandshakeFailed: the TLS handshake failed (untrusted or missing certificate).
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release shared resources; idempotent."""


# --------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------


class Discovery(ABC):
    """Tells a joining node where the seed nodes are.

    Implementing: `seeds` and ``from_url`` are required; `aclose` defaults to nothing.
    `casty.testing.DiscoveryContract` must pass. `seeds` is called repeatedly (while joining and
    after membership churn), so it should be cheap or cache with a short TTL.
    """

    @abstractmethod
    async def seeds(self) -> frozenset[Address]:
        """The current seed addresses; an empty set when there are none yet.

        Raises:
            DiscoveryUnavailable: the source cannot be read now (retryable).
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources (resolver sockets); idempotent."""
