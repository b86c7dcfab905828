"""The frame codec and the connection machinery every built-in transport shares.

Wire format: each frame is a 4-byte big-endian unsigned length followed by that many payload
bytes. A `FrameParser` turns arbitrary chunks of a byte stream back into frames; a
`FramedConnection` implements the `casty.abc.Connection` contract (per-turn write batching,
a receive inbox woken once per incoming batch, or push delivery to a frame handler straight
from the backend's read callback; backpressure in both directions) over a few hooks a backend
provides; `TaskListener` runs each accepted connection's handler in a task it owns.
`OptionReader` parses the backends' URL query options.

Private to `casty.transports`: backends import it, users do not.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
from abc import abstractmethod
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Final, Protocol

from casty.abc import Address, Connection, ConnectionHandler, FrameHandler, Listener
from casty.errors import ConfigurationError, ConnectionBroken, FrameTooLarge, TransportError
from casty.registry import BackendURL

logger = logging.getLogger("casty.transports")

HEADER_SIZE: Final = 4
#: The largest length a 4-byte header can announce.
MAX_ANNOUNCEABLE: Final = 2**32 - 1
#: Default high-water mark in bytes for queued outgoing and buffered incoming data.
DEFAULT_HIGH_WATER: Final = 1024 * 1024

_HEADER = struct.Struct(">I")
pack_header: Callable[[int], bytes] = _HEADER.pack
#: The length a chunk starts with, as a 1-tuple.
unpack_header: Callable[[bytes], tuple[int]] = _HEADER.unpack_from


def check_frame_limit(max_frame_size: int) -> int:
    """Validate a frame limit: an integer in 1..2**32-1 bytes.

    Raises:
        ConfigurationError: the value is out of range or not an integer.
    """
    if isinstance(max_frame_size, bool) or not isinstance(max_frame_size, int):
        raise ConfigurationError(f"max_frame_size must be an int, got {max_frame_size!r}")
    if not 1 <= max_frame_size <= MAX_ANNOUNCEABLE:
        raise ConfigurationError(
            f"max_frame_size must be within 1..{MAX_ANNOUNCEABLE} bytes, got {max_frame_size}"
        )
    return max_frame_size


def check_positive(name: str, value: float) -> Any:
    """Return ``value`` when it is a finite positive number (NaN and infinity are refused).

    Raises:
        ConfigurationError: otherwise.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value < math.inf  # NaN fails both comparisons
    ):
        raise ConfigurationError(f"{name} must be a finite positive number, got {value!r}")
    return value


def url_address(url: BackendURL) -> Address | None:
    """``Address(host, port)`` from a URL's authority, or ``None`` when it has none."""
    if not url.host and url.port is None:
        return None
    return Address(url.host, url.port or 0)


def _tls_hint(header: int) -> str:
    """A hint when a frame header is the start of a TLS record (handshake or alert)."""
    looks_like_tls = header >> 24 in (0x15, 0x16) and (header >> 16) & 0xFF == 0x03
    return " (is the peer using TLS?)" if looks_like_tls else ""


class FrameParser:
    """Reassembles length-prefixed frames from a byte stream cut at arbitrary points.

    `feed` parses whole frames straight out of the chunk when nothing is pending, so the common
    case (many small frames per read) costs one slice per frame. A partial frame is kept in a
    buffer that is only re-scanned once enough bytes for it have arrived, so a large frame
    arriving in many chunks costs linear time.

    Args:
        max_frame_size: the largest accepted payload in bytes.
    """

    __slots__ = ("_buffer", "_needed", "max_frame_size", "salvage")

    def __init__(self, max_frame_size: int) -> None:
        self.max_frame_size = max_frame_size
        #: After `feed` raised: the frames completed before the bad header, for delivery.
        self.salvage: list[bytes] = []
        self._buffer = bytearray()
        # Total buffered bytes needed before the pending frame is complete (0: unknown yet).
        self._needed = 0

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back (0 on a frame boundary)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Consume ``data`` and return every frame it completes, in order.

        Raises:
            FrameTooLarge: a header announces more than ``max_frame_size`` bytes. The frames
                completed before it are in `salvage`; the parser is then unusable, as the stream
                has no trustworthy frame boundary left.
        """
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._needed:
                return []
            data = bytes(buffer)
            buffer.clear()
        elif len(data) > HEADER_SIZE:
            (size,) = _HEADER.unpack_from(data)
            if size + HEADER_SIZE == len(data) and size <= self.max_frame_size:
                return [data[HEADER_SIZE:]]  # exactly one frame (a request, a reply)
        frames: list[bytes] = []
        append = frames.append
        unpack = _HEADER.unpack_from
        limit = self.max_frame_size
        end = len(data)
        pos = 0
        while end - pos >= HEADER_SIZE:
            (size,) = unpack(data, pos)
            if size > limit:
                self.salvage = frames
                raise FrameTooLarge(
                    f"peer announced a {size}-byte frame; the limit is {limit} bytes"
                    + _tls_hint(size)
                )
            stop = pos + HEADER_SIZE + size
            if stop > end:
                self._needed = stop - pos
                break
            append(data[pos + HEADER_SIZE : stop])
            pos = stop
        else:
            self._needed = 0
        if pos < end:
            buffer += data[pos:] if pos else data
        return frames


class FramedConnection(Connection):
    """Shared body of the built-in connections: batching, inbox and backpressure.

    A backend subclass implements `_write_batch` (hand the frames queued during one event-loop
    turn to the wire), `_pause_reading` / `_resume_reading` (stop and restart taking bytes from
    the peer), `_backlog` (bytes written but not yet accepted by the peer's side) and `_close`.
    It reports incoming data with `_deliver`, `_feed_eof` and `_fail`, and wakes drainers with
    `_wake_drainers` when its backlog shrinks; `_frames_taken` tells it the receiving side
    took frames through `receive_into` (a backend whose peer's backlog counts them wakes it).

    While `receive_into` runs, `_deliver` hands each batch to the frame handler at once, from
    within the backend's read callback: no inbox, no wake-up of the receiving task.
    """

    def __init__(self, max_frame_size: int, high_water: int) -> None:
        self.max_frame_size = max_frame_size
        self._high_water = high_water
        self._loop = asyncio.get_running_loop()
        # What `send` queued during this loop turn (a subclass may store headers in it too).
        self._out: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        self._inbox: list[bytes] = []
        self._head = 0
        self._inbox_bytes = 0
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._handler: FrameHandler | None = None  # set while receive_into runs
        self._handler_error: Exception | None = None  # what the handler raised, for its caller
        # Whether the backend overrides `_frames_taken` (spares the call of the no-op per batch).
        self._notify_taken = type(self)._frames_taken is not FramedConnection._frames_taken
        self._drainers: list[asyncio.Future[None]] = []
        self._eof = False
        self._error: TransportError | None = None
        self._closed = False  # aclose() was called
        self._lost = False  # the wire is gone (closed locally, by the peer, or broken)
        self._shut = False  # closed or lost: sending is refused

    # ---- sending -----------------------------------------------------------------------------

    def send(self, frame: bytes) -> None:
        if len(frame) > self.max_frame_size:
            raise self._too_large(frame)
        if self._shut:
            raise ConnectionBroken("connection is closed") from self._error
        self._out.append(frame)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _too_large(self, frame: bytes) -> FrameTooLarge:
        return FrameTooLarge(
            f"frame of {len(frame)} bytes exceeds the limit of {self.max_frame_size} bytes"
        )

    def _flush(self) -> None:
        self._flush_handle = None
        queued = self._out
        if not queued or self._lost:
            return
        self._out = []
        self._write_batch(queued)

    async def drain(self) -> None:
        """Write what is queued now, then wait while the backlog exceeds the high-water mark.

        Raises:
            ConnectionBroken: the connection is closed or was lost.
        """
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush()
        while not self._lost and self._backlog() > self._high_water:
            waiter = self._loop.create_future()
            self._drainers.append(waiter)
            await waiter
        if self._lost:
            raise ConnectionBroken(
                f"connection lost: {self._error}" if self._error else "connection closed"
            ) from self._error

    def _wake_drainers(self) -> None:
        drainers, self._drainers = self._drainers, []
        for waiter in drainers:
            if not waiter.done():
                waiter.set_result(None)

    # ---- receiving ---------------------------------------------------------------------------

    def _handler_failed(self, exc: Exception) -> None:
        """The frame handler raised ``exc``: raised again by `receive_into`, in its caller's
        task; no more frames go to the handler."""
        self._handler = None
        self._handler_error = exc
        self._wake_receiver()

    def _deliver(self, frames: list[bytes], nbytes: int) -> None:
        """Hand ``frames`` (``nbytes`` wire bytes) to the frame handler, or add them to the
        inbox and wake the receiver once."""
        handler = self._handler
        if handler is not None:
            try:
                handler(frames)
            except Exception as exc:
                self._handler_failed(exc)
            if self._notify_taken:
                self._frames_taken()
            return
        if self._inbox:
            self._inbox.extend(frames)
        else:
            self._inbox = frames
        self._inbox_bytes += nbytes
        if self._inbox_bytes > self._high_water and not self._reading_paused:
            self._reading_paused = True
            self._pause_reading()
        self._wake_receiver()

    def _feed_eof(self) -> None:
        self._eof = True
        self._mark_lost()

    def _fail(self, error: TransportError) -> None:
        if self._error is None and not self._eof:
            self._error = error
        self._mark_lost()

    def _mark_lost(self) -> None:
        self._lost = self._shut = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._out = []
        self._wake_receiver()
        self._wake_drainers()

    def _wake_receiver(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _take_all(self) -> list[bytes]:
        frames = self._inbox[self._head :] if self._head else self._inbox
        self._inbox = []
        self._head = 0
        self._inbox_bytes = 0
        if self._reading_paused:
            self._reading_paused = False
            if not self._lost:
                self._resume_reading()
        return frames

    async def _wait_for_input(self) -> None:
        waiter = self._loop.create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            if self._waiter is waiter:
                self._waiter = None

    def _raise_if_failed(self) -> None:
        error = self._error
        if error is None:
            return
        # A fresh exception per call keeps tracebacks from chaining across calls.
        raise type(error)(str(error)) from error.__cause__ or error

    def _is_own_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the error this connection failed with (or a copy raised by a
        receive method, see `_raise_if_failed`)."""
        error = self._error
        if error is None:
            return False
        if exc is error:
            return True
        return type(exc) is type(error) and (
            exc.__cause__ is error
            or (error.__cause__ is not None and exc.__cause__ is error.__cause__)
        )

    async def receive_many(self) -> list[bytes]:
        while True:
            if self._head < len(self._inbox):
                return self._take_all()
            if self._lost or self._closed:
                self._raise_if_failed()
                return []
            await self._wait_for_input()

    async def receive_into(self, handler: FrameHandler) -> None:
        if self._head < len(self._inbox):
            frames = self._take_all()
            self._frames_taken()
            handler(frames)
        self._handler = handler
        try:
            while self._handler is handler and not (self._lost or self._closed):
                await self._wait_for_input()
        finally:
            if self._handler is handler:
                self._handler = None
        error = self._handler_error
        if error is not None:
            self._handler_error = None
            raise error
        self._raise_if_failed()

    def _frames_taken(self) -> None:
        """Frames went to `receive_into`'s handler (a backend may wake its peer's drainers)."""

    async def receive(self) -> bytes:
        while True:
            inbox = self._inbox
            if self._head < len(inbox):
                frame = inbox[self._head]
                self._head += 1
                self._inbox_bytes = max(0, self._inbox_bytes - len(frame) - HEADER_SIZE)
                if self._head == len(inbox):
                    self._take_all()
                elif self._reading_paused and self._inbox_bytes <= self._high_water:
                    self._reading_paused = False
                    if not self._lost:
                        self._resume_reading()
                return frame
            if self._lost or self._closed:
                self._raise_if_failed()
                raise ConnectionBroken("connection closed and no frame is left")
            await self._wait_for_input()

    # ---- closing -----------------------------------------------------------------------------

    @property
    def is_closing(self) -> bool:
        return self._closed or self._lost

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = self._shut = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()
        self._wake_receiver()
        await self._close()

    # ---- backend hooks -----------------------------------------------------------------------

    @abstractmethod
    def _write_batch(self, queued: list[bytes]) -> None:
        """Put what `send` queued during one loop turn (in order) on the wire."""

    @abstractmethod
    def _backlog(self) -> int:
        """Bytes handed to the wire that the peer's side has not accepted yet."""

    @abstractmethod
    def _pause_reading(self) -> None:
        """Stop taking bytes from the peer until `_resume_reading`."""

    @abstractmethod
    def _resume_reading(self) -> None:
        """Take bytes from the peer again."""

    @abstractmethod
    async def _close(self) -> None:
        """Close the wire after the final flush; must end with the connection marked lost."""

    @abstractmethod
    def abort(self) -> None:
        """Drop the connection at once, without flushing; the peer sees it broken."""


class Abortable(Protocol):
    """Anything a listener can drop at once on shutdown: a connection or a socket transport."""

    def abort(self) -> None: ...


class TaskListener(Listener):
    """A listener whose accepted connections each run the handler in a task it owns.

    A backend subclass sets ``_address`` once bound and implements `_stop_accepting` and
    `_stopped`; it calls `spawn` for each accepted peer (with `serve` as the work, or a
    handshake that ends in `serve`).
    """

    def __init__(self, handler: ConnectionHandler) -> None:
        self._handler = handler
        self._address = Address("", 0)
        self._tasks: set[asyncio.Task[None]] = set()
        self._resources: set[Abortable] = set()
        self._closed = False

    @property
    def address(self) -> Address:
        return self._address

    def spawn(self, coro: Coroutine[Any, Any, None], resource: Abortable | None = None) -> None:
        """Run ``coro`` in a task that `aclose` cancels and awaits.

        ``resource`` (a connection or socket transport), when given, is aborted by `aclose`
        unless `release` was called for it first, even if the task never got to run.
        """
        if self._closed:
            coro.close()
            if resource is not None:
                resource.abort()
            return
        if resource is not None:
            self._resources.add(resource)
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def release(self, resource: Abortable) -> None:
        """Stop tracking ``resource`` (its task closed it or handed it on)."""
        self._resources.discard(resource)

    async def serve(self, connection: FramedConnection) -> None:
        """Run the handler on ``connection``, then close it."""
        self._resources.add(connection)
        try:
            await self._handler(connection)
        except Exception as exc:
            if connection._is_own_error(exc):
                # The connection broke (``async for`` re-raises it); the transport logged why.
                logger.debug("connection handler for %s ended: %s", connection.remote_address, exc)
            else:
                # The handler owns its errors; one failing peer must not stop the listener.
                logger.exception("connection handler for %s failed", connection.remote_address)
        finally:
            self._resources.discard(connection)
            await connection.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_accepting()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for resource in list(self._resources):
            resource.abort()
        self._resources.clear()
        await self._stopped()

    @abstractmethod
    def _stop_accepting(self) -> None:
        """Refuse new peers from now on."""

    @abstractmethod
    async def _stopped(self) -> None:
        """Wait until the endpoint is fully released."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._address}>"


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class OptionReader:
    """Reads a backend URL's query options, with keyword options taking precedence.

    Every query key must be consumed by one of the typed getters; `finish` raises for the rest,
    so a misspelt option fails loudly instead of being ignored.
    """

    def __init__(self, scheme: str, query: Mapping[str, str], options: Mapping[str, Any]) -> None:
        self._scheme = scheme
        self._query = dict(query)
        self._options = dict(options)

    def _raw(self, name: str) -> tuple[bool, Any]:
        if name in self._options:
            self._query.pop(name, None)
            return True, self._options.pop(name)
        if name in self._query:
            return False, self._query.pop(name)
        return False, None

    def _convert(self, name: str, text: str, kind: Callable[[str], Any]) -> Any:
        try:
            return kind(text)
        except ValueError as exc:
            raise ConfigurationError(
                f"{self._scheme}:// option {name}={text!r} is not a valid {kind.__name__}"
            ) from exc

    def integer(self, name: str, default: int) -> int:
        """An integer option (bytes, counts)."""
        given, value = self._raw(name)
        if value is None:
            return default
        return int(value) if given else int(self._convert(name, value, int))

    def number(self, name: str, default: float) -> float:
        """A float option (seconds)."""
        given, value = self._raw(name)
        if value is None:
            return default
        return float(value) if given else float(self._convert(name, value, float))

    def flag(self, name: str, default: bool) -> bool:
        """A boolean option: ``1/true/yes/on`` or ``0/false/no/off`` in a URL."""
        given, value = self._raw(name)
        if value is None:
            return default
        if given:
            return bool(value)
        lowered = str(value).lower()
        if lowered not in _TRUE | _FALSE:
            raise ConfigurationError(f"{self._scheme}:// option {name}={value!r} is not a boolean")
        return lowered in _TRUE

    def text(self, name: str, default: str | None = None) -> str | None:
        """A string option (paths, names)."""
        _, value = self._raw(name)
        return default if value is None else str(value)

    def keyword(self, name: str, default: Any = None) -> Any:
        """A keyword-only option that cannot appear in a URL (objects such as SSL contexts)."""
        return self._options.pop(name, default)

    def finish(self) -> None:
        """Raise for every option nobody consumed.

        Raises:
            ConfigurationError: an unknown option was given.
        """
        unknown = sorted({*self._query, *self._options})
        if unknown:
            raise ConfigurationError(f"unknown {self._scheme}:// option(s): {', '.join(unknown)}")
