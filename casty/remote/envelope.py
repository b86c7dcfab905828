"""The remoting wire format: handshake frames, then envelope frames carrying many messages.

Every frame (one transport frame) is a single MessagePack array whose first element is a tag.

Handshake, plain MessagePack whatever the serializer; the first frame in each direction. The
first three elements never change, so any two versions can tell each other apart::

    HELLO   [0, "casty", version, system, host, port, incarnation, to_host, to_port, serializer]
    ACCEPT  [1, "casty", version, system, host, port, incarnation]
    REFUSE  [2, "casty", version, reason]

``host``/``port`` are the sender's own (listening) node address and ``incarnation`` its random
64-bit start identity; ``to_host``/``to_port`` is the node the initiator meant to reach.

Envelopes, every frame after the handshake::

    [3, recipient, body, recipient, body, ...]

A ``str`` recipient is the path of an actor on the receiving node and its body the message; an
``int`` recipient is a control operation (`OP_WATCH` ...) whose body is a plain value (an actor
path, 0, a reason, or for `OP_ASK_FAILED` an array of three strings). Entries are handled in
order, so per-connection order is kept, control operations included. How message bodies are written
depends on the serializer, which the handshake requires both nodes to share:

- *inline*, for ``msgpack``: a message is written as the serializer's own MessagePack value,
  inside the array. The serializer encodes the whole frame in one call and decodes it in one
  call, so a frame of many messages costs one pass each way. When that pass fails (one bad
  message), the frame is split into its entries with a plain unpacker and each message is
  decoded on its own, so only the bad one is lost.
- *embedded*, for any other serializer (``pickle``, a plug-in): a message body is the
  serializer's bytes as a MessagePack ``bin``.

Either way, actor refs inside messages go through the ref codec the node hands the
`EnvelopeCodec`; remoting's writes a ref to an actor of the sending node as its path alone
(``/temp/$7``), which the receiving node reads relative to the sender, and any other ref as
its full address.

A frame that is not such an array, has an unknown tag, or has a recipient that is neither a
``str`` nor an ``int`` is a protocol violation (`DecodeError`): the connection is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol, final, runtime_checkable

import msgpack

from casty.abc import RefCodec, Serializer
from casty.errors import DecodeError, EncodeError, HandshakeFailed

__all__ = [
    "FRAME_ENVELOPES",
    "OP_ASK_FAILED",
    "OP_HEARTBEAT",
    "OP_HEARTBEAT_ACK",
    "OP_QUARANTINED",
    "OP_SHUTDOWN",
    "OP_TERMINATED",
    "OP_UNWATCH",
    "OP_WATCH",
    "PROTOCOL_VERSION",
    "Accept",
    "EnvelopeCodec",
    "Hello",
    "Refuse",
    "Undecodable",
    "decode_handshake",
    "encode_handshake",
]

#: The remoting protocol version; nodes of different versions refuse each other.
#: 2: `OP_ASK_FAILED`. 3: refs to the sender's own actors travel as their paths. 4: HELLO and
#: ACCEPT carry the sender's frame limit; `OP_QUARANTINED`; REFUSE says whether it is transient.
PROTOCOL_VERSION: Final = 4
MAGIC: Final = "casty"

FRAME_HELLO: Final = 0
FRAME_ACCEPT: Final = 1
FRAME_REFUSE: Final = 2
FRAME_ENVELOPES: Final = 3

#: Body: a path on the receiver; the sender's node wants `OP_TERMINATED` when it stops.
OP_WATCH: Final = 1
#: Body: a path on the receiver; undoes `OP_WATCH`.
OP_UNWATCH: Final = 2
#: Body: a path on the sender whose actor stopped (or never existed).
OP_TERMINATED: Final = 3
#: Body: 0. The receiver answers `OP_HEARTBEAT_ACK`.
OP_HEARTBEAT: Final = 4
#: Body: 0.
OP_HEARTBEAT_ACK: Final = 5
#: Body: 0. The sender is shutting down: this incarnation will not come back.
OP_SHUTDOWN: Final = 6
#: Body: ``[path, reason, what]``: the sender dropped ``what`` (``"the request to <address>"``
#: carrying the receiver's ask reply ref ``path``, a ``/temp/`` path on the receiver, or
#: ``"the reply"`` to it) as a dead letter for ``reason`` (a dead-letter reason), so the ask can
#: fail at once.
OP_ASK_FAILED: Final = 7
#: Body: a reason. The sender quarantined the receiver's incarnation and closes the connection
#: (the frame after a dialler's handshake, so that the refused node learns why).
OP_QUARANTINED: Final = 8

_unpackb = msgpack.unpackb  # a module global: one lookup per frame instead of two

#: Serializers whose output is one MessagePack value and which decode arrays of such values.
INLINE_SERIALIZERS: Final = frozenset({"msgpack"})

_ENVELOPE_TYPES: Final = frozenset({str, int})


@dataclass(frozen=True, slots=True)
class Hello:
    """The initiator's first frame: who it is and whom it meant to reach.

    ``max_frame_size`` is the largest frame, in bytes, the initiator accepts: the acceptor
    sends nothing larger (a larger message is its dead letter, not a dropped connection).
    """

    system: str
    host: str
    port: int
    incarnation: int
    to_host: str
    to_port: int
    serializer: str
    max_frame_size: int


@dataclass(frozen=True, slots=True)
class Accept:
    """The acceptor's answer to a good `Hello`: who it is, and the largest frame (bytes) it
    accepts."""

    system: str
    host: str
    port: int
    incarnation: int
    max_frame_size: int


@dataclass(frozen=True, slots=True)
class Refuse:
    """The acceptor's answer to a bad `Hello`; the connection closes after it.

    ``transient`` marks a refusal that does not last (a simultaneous-connect tie-break, a node
    shutting down): the dialler keeps what it queued and retries.
    """

    reason: str
    transient: bool = False


Handshake = Hello | Accept | Refuse


@final
class Undecodable:
    """A message body that could not be decoded, in place of the message, with the reason."""

    __slots__ = ("payload", "reason")

    def __init__(self, payload: bytes, reason: str) -> None:
        self.payload = payload
        self.reason = reason

    def __repr__(self) -> str:
        return f"<Undecodable {len(self.payload)} bytes: {self.reason}>"


def encode_handshake(message: Handshake) -> bytes:
    """The frame of a handshake message."""
    head = [MAGIC, PROTOCOL_VERSION]
    if isinstance(message, Hello):
        frame: bytes = msgpack.packb(
            [
                FRAME_HELLO,
                *head,
                message.system,
                message.host,
                message.port,
                message.incarnation,
                message.to_host,
                message.to_port,
                message.serializer,
                message.max_frame_size,
            ]
        )
        return frame
    if isinstance(message, Accept):
        frame = msgpack.packb(
            [
                FRAME_ACCEPT,
                *head,
                message.system,
                message.host,
                message.port,
                message.incarnation,
                message.max_frame_size,
            ]
        )
        return frame
    frame = msgpack.packb([FRAME_REFUSE, *head, message.reason, message.transient])
    return frame


_HANDSHAKE_FIELDS: Final = {
    FRAME_HELLO: (Hello, (str, str, int, int, str, int, str, int)),
    FRAME_ACCEPT: (Accept, (str, str, int, int, int)),
    FRAME_REFUSE: (Refuse, (str, bool)),
}


def decode_handshake(frame: bytes) -> Handshake:
    """Parse a handshake frame.

    Raises:
        DecodeError: not a handshake frame (garbage, an envelope, wrong field types).
        HandshakeFailed: a well-formed handshake of another protocol version.
    """
    try:
        items = msgpack.unpackb(frame, strict_map_key=False)
    except Exception as exc:  # the choke point: msgpack raises many types on garbage
        raise DecodeError(f"malformed handshake frame: {type(exc).__name__}: {exc}") from exc
    if type(items) is not list or len(items) < 3 or items[1] != MAGIC:
        raise DecodeError("malformed handshake frame: not a casty handshake")
    tag, _magic, version, *fields = items
    shape = _HANDSHAKE_FIELDS.get(tag) if type(tag) is int else None
    if shape is None:
        raise DecodeError(f"malformed handshake frame: unexpected frame type {tag!r}")
    if version != PROTOCOL_VERSION:
        if tag == FRAME_REFUSE and fields and type(fields[0]) is str:
            return Refuse(fields[0])
        raise HandshakeFailed(
            f"protocol version mismatch: peer speaks {version!r}, "
            f"this node speaks {PROTOCOL_VERSION}",
            permanent=True,
        )
    cls, types = shape
    if len(fields) != len(types) or any(
        type(value) is not kind for value, kind in zip(fields, types, strict=True)
    ):
        raise DecodeError(f"malformed handshake frame: bad fields for {cls.__name__}")
    return cls(*fields)  # type: ignore[no-any-return]


@runtime_checkable
class _MsgpackFunctions(Protocol):
    """What the built-in msgpack serializer offers a hot path that calls its functions itself
    (`casty.serializers.msgpack.MsgpackSerializer._functions_for`); recognised by shape, so
    that remoting names no concrete serializer."""

    _generation: int

    def _functions_for(
        self, refs: RefCodec
    ) -> tuple[Callable[[object], bytes], Callable[[int, bytes], object]]: ...


@final
class EnvelopeCodec:
    """Encodes and decodes envelope frames with a node's serializer and ref codec.

    Args:
        serializer: the node's serializer; ``msgpack`` selects the inline encoding.
        refs: resolves actor refs inside messages (the system's `RefCodec`).
    """

    __slots__ = (
        "_decode",
        "_encode",
        "_generation",
        "_hook",
        "_msgpack",
        "_pack",
        "_refs",
        "inline",
        "serializer",
    )

    def __init__(self, serializer: Serializer, refs: RefCodec) -> None:
        self.serializer = serializer
        self.inline = serializer.name in INLINE_SERIALIZERS
        self._refs = refs
        self._encode = serializer.encode
        self._decode = serializer.decode
        # The built-in msgpack serializer's own functions, called without its wrappers (a
        # remote message's hot path); refreshed when a `register` makes them stale.
        self._msgpack = (
            serializer
            if serializer.name == "msgpack" and isinstance(serializer, _MsgpackFunctions)
            else None
        )
        self._generation = -1
        self._pack: Callable[[object], bytes] = _unset
        self._hook: Callable[[int, bytes], object] = _unset
        if self._msgpack is not None:
            self._refresh(self._msgpack)

    def _refresh(self, serializer: _MsgpackFunctions) -> None:
        """Fetch ``serializer``'s functions again (`_pack`, `_hook`)."""
        self._pack, self._hook = serializer._functions_for(self._refs)
        self._generation = serializer._generation

    # ---- encoding ----------------------------------------------------------------------------

    def encode(self, frame: list[Any]) -> bytes:
        """The bytes of ``frame``: ``[FRAME_ENVELOPES, recipient, body, ...]``.

        Raises:
            EncodeError: a message has no wire form; nothing of the frame is written.
        """
        serializer = self._msgpack
        if serializer is not None:
            if len(frame) == 3 and type(frame[1]) is str:
                return self.encode_one(frame[1], frame[2])
            if serializer._generation != self._generation:
                self._refresh(serializer)
            try:
                return self._pack(frame)
            except EncodeError:
                raise
            except Exception as exc:  # as MsgpackSerializer.encode translates them
                raise EncodeError(f"cannot encode list: {exc}") from exc
        if self.inline:
            return self._encode(frame, self._refs)
        out: list[Any] = [FRAME_ENVELOPES]
        encode, refs = self._encode, self._refs
        for i in range(1, len(frame), 2):
            recipient = frame[i]
            out.append(recipient)
            out.append(encode(frame[i + 1], refs) if type(recipient) is str else frame[i + 1])
        try:
            packed: bytes = msgpack.packb(out, use_bin_type=True)
        except Exception as exc:  # a control body is always plain: this is a bug guard
            raise EncodeError(f"cannot encode envelope: {exc}") from exc
        return packed

    def encode_one(self, path: str, message: object) -> bytes:
        """The bytes of ``[FRAME_ENVELOPES, path, message]`` (a request or a reply), as
        `encode` writes them. On the msgpack path the array's head and the path are written
        here, so the message is the outermost value msgpack packs (one packer less).

        Raises:
            EncodeError: ``message`` has no wire form.
        """
        serializer = self._msgpack
        if serializer is None:
            return self.encode([FRAME_ENVELOPES, path, message])
        if serializer._generation != self._generation:
            self._refresh(serializer)
        try:
            data = path.encode()
            size = len(data)
            if size < 32:
                return _ONE_ENTRY_HEADS[size] + data + self._pack(message)
            return _ONE_ENTRY + _packed_str(data) + self._pack(message)
        except EncodeError:
            raise
        except Exception as exc:  # as `encode` translates them
            raise EncodeError(f"cannot encode list: {exc}") from exc

    def check(self, message: object) -> EncodeError | None:
        """The error encoding ``message`` alone raises, or ``None`` when it encodes."""
        try:
            self._encode(message, self._refs)
        except EncodeError as exc:
            return exc
        return None

    # ---- decoding ----------------------------------------------------------------------------

    def decode(self, frame: bytes) -> tuple[list[Any], bool]:
        """The entries of an envelope frame, ``[FRAME_ENVELOPES, recipient, body, ...]``, and
        whether every message in it decoded.

        A message that cannot be decoded is replaced by an `Undecodable` body (and the flag is
        false); the other entries of the frame are kept. Recipients are guaranteed to be
        ``str`` or ``int``; control bodies are plain MessagePack values, unchecked.

        Raises:
            DecodeError: the frame is not an envelope frame (see the module docstring). No
                other exception escapes.
        """
        salvaged = True  # decoded message by message: some may be Undecodable
        serializer = self._msgpack
        if serializer is not None:
            if serializer._generation != self._generation:
                self._refresh(serializer)
            try:
                # As MsgpackSerializer.decode calls it (a call with keywords costs less than
                # a partial's).
                items = _unpackb(frame, ext_hook=self._hook, strict_map_key=False, timestamp=2)
                salvaged = False
            except Exception:  # what MsgpackSerializer.decode turns into DecodeError
                items = self._salvage(frame)
            if (
                type(items) is list
                and len(items) == 3
                and type(items[0]) is int
                and items[0] == FRAME_ENVELOPES
                and type(items[1]) in _ENVELOPE_TYPES
            ):
                return items, not salvaged or type(items[2]) is not Undecodable
        elif self.inline:
            try:
                items = self._decode(frame, self._refs)
                salvaged = False
            except DecodeError:
                items = self._salvage(frame)
        else:
            items = self._embedded(frame)
        return self._checked(items, salvaged)

    def _checked(self, items: Any, salvaged: bool) -> tuple[list[Any], bool]:
        """``items`` as `decode` returns them, once checked to be envelope entries; with
        ``salvaged``, some messages may be `Undecodable`.

        Raises:
            DecodeError: ``items`` is not an envelope frame.
        """
        if (
            type(items) is not list
            or not len(items) & 1
            or items[0] != FRAME_ENVELOPES
            or type(items[0]) is not int
            or not _ENVELOPE_TYPES.issuperset(map(type, items[1::2]))  # no set built
        ):
            raise DecodeError(_describe(items))
        clean = not salvaged or not any(type(body) is Undecodable for body in items[2::2])
        return items, clean

    def _salvage(self, frame: bytes) -> list[Any]:
        """Split an inline frame into entries and decode each message on its own."""
        unpacker = msgpack.Unpacker(strict_map_key=False, max_buffer_size=max(len(frame), 1))
        try:
            unpacker.feed(frame)
            count = unpacker.read_array_header()
            spans: list[bytes] = []
            for _ in range(count):
                start = unpacker.tell()
                unpacker.skip()
                spans.append(frame[start : unpacker.tell()])
            if unpacker.tell() != len(frame):
                raise DecodeError("malformed envelope frame: trailing bytes")
            items: list[Any] = [msgpack.unpackb(span, strict_map_key=False) for span in spans[:1]]
            for i in range(1, len(spans) - 1, 2):
                recipient = msgpack.unpackb(spans[i], strict_map_key=False)
                items.append(recipient)
                if type(recipient) is str:
                    items.append(self._one(spans[i + 1]))
                else:
                    items.append(msgpack.unpackb(spans[i + 1], strict_map_key=False))
            if len(spans) % 2 == 0:
                items.append(None)  # an unpaired recipient: refused below as malformed
        except DecodeError:
            raise
        except Exception as exc:  # the choke point: msgpack raises many types on garbage
            raise DecodeError(f"malformed envelope frame: {type(exc).__name__}: {exc}") from exc
        return items

    def _embedded(self, frame: bytes) -> Any:
        try:
            items = msgpack.unpackb(frame, strict_map_key=False)
        except Exception as exc:  # the choke point, as in _salvage
            raise DecodeError(f"malformed envelope frame: {type(exc).__name__}: {exc}") from exc
        if type(items) is list:
            for i in range(1, len(items) - 1, 2):
                if type(items[i]) is str:
                    body = items[i + 1]
                    if type(body) is not bytes:
                        raise DecodeError("malformed envelope frame: a message body is not bytes")
                    items[i + 1] = self._one(body)
        return items

    def _one(self, payload: bytes) -> Any:
        try:
            return self._decode(payload, self._refs)
        except DecodeError as exc:
            return Undecodable(payload, str(exc))


def _unset(*args: Any) -> Any:
    """In place of the msgpack functions of an `EnvelopeCodec` of another serializer."""
    raise AssertionError("not a msgpack envelope codec")


#: The head of a one-entry envelope frame: a 3-item array, then the tag.
_ONE_ENTRY: Final = b"\x93" + bytes((FRAME_ENVELOPES,))
#: That head followed by the header of a recipient path of 0..31 bytes (a fixstr).
_ONE_ENTRY_HEADS: Final = tuple(_ONE_ENTRY + bytes((0xA0 | size,)) for size in range(32))


def _packed_str(data: bytes) -> bytes:
    """UTF-8 ``data`` with the header msgpack writes for a ``str`` of it (the shortest)."""
    size = len(data)
    if size < 32:
        return bytes((0xA0 | size,)) + data
    if size < 0x100:
        return bytes((0xD9, size)) + data
    if size < 0x10000:
        return b"\xda" + size.to_bytes(2, "big") + data
    return b"\xdb" + size.to_bytes(4, "big") + data


def _describe(items: object) -> str:
    if type(items) is not list or not items:
        return "malformed envelope frame: not a non-empty array"
    tag = items[0]
    if tag != FRAME_ENVELOPES or type(tag) is not int:
        return f"unknown frame type {tag!r}"
    if not len(items) & 1:
        return "malformed envelope frame: a recipient without a body"
    return "malformed envelope frame: a recipient is neither a path nor an operation"
