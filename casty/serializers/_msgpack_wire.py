"""The wire format of `MsgpackSerializer`: MessagePack plus six extension types.

Values msgpack has an exact type for are written natively. Everything else is an extension
whose payload is itself MessagePack:

====  ===========  =========================================================================
code  kind         payload
====  ===========  =========================================================================
1     tuple        the items, as an array
2     set          the items, as an array
3     frozenset    the items, as an array
4     big int      two's complement, little-endian bytes (ints outside msgpack's 64 bits)
5     object       ``[type name, body]``: a field map (dataclass, NamedTuple) or an enum value
6     actor ref    the ref's address string, UTF-8
====  ===========  =========================================================================

Extensions nest at most `MAX_DEPTH` deep, on both sides: msgpack's decoder keeps about 40 KiB
of C stack per nested ``unpackb`` call, so unbounded nesting from a peer could overflow the C
stack (a crash, not an exception). Codes are wire format: never renumber them.
"""

from __future__ import annotations

import keyword
import threading
from collections.abc import Callable
from typing import Any, Final

import msgpack

from casty.abc import RefCodec
from casty.errors import DecodeError, EncodeError

__all__ = [
    "BUILTIN_ENCODERS",
    "EXT_OBJECT",
    "MAX_DEPTH",
    "Decoder",
    "Encoder",
    "Hook",
    "Pack",
    "ext",
    "make_encode",
    "make_hook",
    "object_encoder",
    "unpack_with",
]

EXT_TUPLE: Final = 1
EXT_SET: Final = 2
EXT_FROZENSET: Final = 3
EXT_BIGINT: Final = 4
EXT_OBJECT: Final = 5
EXT_REF: Final = 6

#: How deep extensions may nest (a tuple in a dataclass in a tuple is 3).
MAX_DEPTH: Final = 64

_BUF_SIZE: Final = 512  # initial packer buffer in bytes (msgpack grows it); see make_encode
_FIXEXT_MARKERS: Final = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
# Exact types msgpack packs itself (with strict_types); ints beyond 64 bits still reach default.
_MSGPACK_TYPES: Final = frozenset(
    {type(None), bool, int, float, str, bytes, bytearray, memoryview, list, dict}
)

Pack = Callable[[object], bytes]
#: Builds the extension of one object; its nested payload goes through the given pack.
Encoder = Callable[[Any, Pack], msgpack.ExtType]
#: Rebuilds one object from the body of its typed-object extension.
Decoder = Callable[[Any], object]
Hook = Callable[[int, bytes], object]
_Default = Callable[[object], msgpack.ExtType]

# ExtType.__new__ re-validates its arguments in Python, which costs as much as packing a small
# message; ours are always (int, bytes), so build the namedtuple directly.
_new_tuple = tuple.__new__


def ext(code: int, payload: bytes) -> msgpack.ExtType:
    """An `msgpack.ExtType` built without its argument checks."""
    return _new_tuple(msgpack.ExtType, (code, payload))


def _encode_tuple(obj: tuple[Any, ...], pack: Pack) -> msgpack.ExtType:
    return ext(EXT_TUPLE, pack(list(obj)))


def _encode_set(obj: set[Any], pack: Pack) -> msgpack.ExtType:
    return ext(EXT_SET, pack(list(obj)))


def _encode_frozenset(obj: frozenset[Any], pack: Pack) -> msgpack.ExtType:
    return ext(EXT_FROZENSET, pack(list(obj)))


def _encode_bigint(obj: int, pack: Pack) -> msgpack.ExtType:
    # Only ints msgpack cannot hold reach here; +8 bits leave room for the sign.
    return ext(EXT_BIGINT, obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True))


def object_encoder(type_name: str, fields: tuple[str, ...], *, by_index: bool) -> Encoder:
    """The encoder of a dataclass (fields by attribute) or NamedTuple (fields by index).

    Generated source, as `dataclasses` generates ``__init__``: a dict display inside one
    function is several times faster than ``dict(zip(...))`` plus the calls around it, and this
    runs for every object of every message. The names come from the class definition, never
    from the wire, and `dataclasses` and `collections.namedtuple` only accept identifiers; the
    check below keeps ``eval`` safe should a class be built some other way.

    Raises:
        EncodeError: a field name is not a plain identifier.
    """
    if not all(f.isidentifier() and not keyword.iskeyword(f) for f in fields):
        raise EncodeError(f"{type_name}: field names must be identifiers, got {fields!r}")
    items = ", ".join(
        f"{f!r}: obj[{i}]" if by_index else f"{f!r}: obj.{f}" for i, f in enumerate(fields)
    )
    namespace = {"_new": _new_tuple, "_ExtType": msgpack.ExtType, "_name": type_name}
    source = f"lambda obj, pack: _new(_ExtType, ({EXT_OBJECT}, pack([_name, {{{items}}}])))"
    encoder: Encoder = eval(source, namespace)
    return encoder


#: Encoders of the builtin kinds msgpack has no exact type for.
BUILTIN_ENCODERS: Final[dict[type, Encoder]] = {
    tuple: _encode_tuple,
    set: _encode_set,
    frozenset: _encode_frozenset,
    int: _encode_bigint,
}


def make_encode(
    refs: RefCodec | None,
    encoders: dict[type, Encoder],
    build_encoder: Callable[[type], Encoder],
) -> Pack:
    """An encode function for ``refs``, caching per-class encoders in ``encoders``.

    An extension's payload is packed while the enclosing packer is mid-way through its own
    buffer, so each pack gets a fresh `msgpack.Packer` (a small initial buffer keeps that cheap:
    the default 256 KiB one costs an ``mmap`` per message). Every nesting depth has its own
    ``default`` hook that knows its depth, so the depth bound needs no per-call state and the
    closures can be reused by every call and thread.
    """
    levels: list[tuple[Pack, _Default]] = []
    growing = threading.Lock()  # levels are built once, lazily, perhaps by two threads at once

    def level(depth: int) -> tuple[Pack, _Default]:
        with growing:
            while len(levels) <= depth:
                levels.append(make_level(len(levels)))
        return levels[depth]

    def make_level(depth: int) -> tuple[Pack, _Default]:
        inner: Pack | None = None

        def default(obj: object) -> msgpack.ExtType:
            nonlocal inner
            if depth >= MAX_DEPTH:
                raise EncodeError(f"tuples, sets and objects nest deeper than {MAX_DEPTH}")
            if refs is not None and isinstance(obj, refs.ref_type):
                return ext(EXT_REF, refs.to_wire(obj).encode())
            cls = type(obj)
            encoder = encoders.get(cls)
            if encoder is None:
                encoder = encoders[cls] = build_encoder(cls)
            if inner is None:
                inner = level(depth + 1)[0]
            return encoder(obj, inner)

        def pack(obj: object) -> bytes:
            packer = msgpack.Packer(
                default=default, use_bin_type=True, strict_types=True, buf_size=_BUF_SIZE
            )
            return packer.pack(obj)  # type: ignore[no-any-return]

        return pack, default

    pack, default = level(0)

    def encode(obj: object) -> bytes:
        if type(obj) in _MSGPACK_TYPES:
            return pack(obj)
        # A message is usually a dataclass: write its extension header here rather than have
        # one more packer copy the payload into an envelope (about 20% faster). Decoding has no
        # such shortcut: parsing the header in Python costs more than msgpack's own unpackb.
        code: int
        payload: bytes
        code, payload = default(obj)
        return _ext_header(code, len(payload)) + payload

    return encode


def make_hook(
    refs: RefCodec | None,
    decoders: dict[str, Decoder],
    build_decoder: Callable[[object], Decoder],
) -> Hook:
    """The msgpack ``ext_hook`` for top-level values, resolving actor refs through ``refs``.

    As in `make_encode`, each depth has its own hook, so nesting is bounded without state.
    """
    hooks: list[Hook] = []
    growing = threading.Lock()
    unpackb = msgpack.unpackb

    def hook_at(depth: int) -> Hook:
        with growing:
            while len(hooks) <= depth:
                hooks.append(make_level(len(hooks)))
        return hooks[depth]

    def make_level(depth: int) -> Hook:
        inner: Hook | None = None

        def items_of(payload: bytes) -> list[object]:
            items = unpackb(payload, ext_hook=inner, strict_map_key=False, timestamp=2)
            if type(items) is not list:
                raise DecodeError("malformed collection")
            return items

        def hook(code: int, payload: bytes) -> object:
            nonlocal inner
            if depth >= MAX_DEPTH:
                raise DecodeError(f"tuples, sets and objects nest deeper than {MAX_DEPTH}")
            if inner is None:
                inner = hook_at(depth + 1)
            if code == EXT_OBJECT:
                # Inlined rather than shared with items_of: this runs for every object.
                item = unpackb(payload, ext_hook=inner, strict_map_key=False, timestamp=2)
                if type(item) is not list or len(item) != 2:
                    raise DecodeError("malformed typed object")
                type_name, body = item
                decoder = decoders.get(type_name)
                if decoder is None:
                    decoder = build_decoder(type_name)
                return decoder(body)
            if code == EXT_TUPLE:
                return tuple(items_of(payload))
            if code == EXT_SET:
                return set(items_of(payload))
            if code == EXT_FROZENSET:
                return frozenset(items_of(payload))
            if code == EXT_BIGINT:
                return int.from_bytes(payload, "little", signed=True)
            if code == EXT_REF:
                if refs is None:
                    raise DecodeError("an actor ref arrived but no RefCodec was given")
                return refs.from_wire(payload.decode())
            raise DecodeError(f"unknown msgpack extension code {code}")

        return hook

    return hook_at(0)


def unpack_with(data: bytes, hook: Hook) -> object:
    """``msgpack.unpackb`` with our options: any hashable map key, ``hook`` for extensions."""
    # timestamp=2: msgpack's own timestamp extension (which we never write) reads as an int.
    return msgpack.unpackb(data, ext_hook=hook, strict_map_key=False, timestamp=2)


def _ext_header(code: int, size: int) -> bytes:
    """The MessagePack header of an extension of ``size`` bytes, as msgpack itself writes it."""
    fixed = _FIXEXT_MARKERS.get(size)
    if fixed is not None:
        return bytes((fixed, code))
    if size < 0x100:
        return bytes((0xC7, size, code))
    if size < 0x10000:
        return b"\xc8" + size.to_bytes(2, "big") + bytes((code,))
    return b"\xc9" + size.to_bytes(4, "big") + bytes((code,))
