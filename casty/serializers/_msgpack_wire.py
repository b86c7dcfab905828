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
from collections.abc import Callable
from types import MemberDescriptorType
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
    "field_setter_decoder",
    "make_encode",
    "make_hook",
    "object_encoder",
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
_POOLED_OUTPUT: Final = 64 * 1024  # packers that wrote more are not pooled (see make_encode)
#: The attribute of an object encoder holding the function that packs the extension's payload
#: alone: ``(obj, pack) -> bytes``, an `EXT_OBJECT` payload.
PAYLOAD_ATTRIBUTE: Final = "ext_object_payload"
_FIXEXT_MARKERS: Final = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
#: The ext 8 header of an object (a message, most often) of 17..255 bytes, by size: a tuple
#: lookup instead of building the header per message.
_OBJECT_HEADS: Final = tuple(bytes((0xC7, size, EXT_OBJECT)) for size in range(0x100))
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
    # The payload alone, for a top-level object (see `make_encode`): no ExtType built.
    setattr(
        encoder, PAYLOAD_ATTRIBUTE, eval(f"lambda obj, pack: pack([_name, {{{items}}}])", namespace)
    )
    return encoder


def field_setter_decoder(cls: type, fields: tuple[str, ...], fallback: Decoder) -> Decoder:
    """A decoder that builds ``cls`` from a field map holding exactly ``fields``, without
    calling the class: ``object.__new__`` and one assignment per field (a slot's own
    descriptor when the field is a slot of ``cls``). Any other body goes to ``fallback``.

    Only for classes where that builds what calling the class would (`builds_plainly`).
    Generated source, as `object_encoder` is; the field names only appear as string literals.
    """
    namespace: dict[str, Any] = {
        "_new": object.__new__,
        "_cls": cls,
        "_set": object.__setattr__,
        "_fallback": fallback,
        "_dict": dict,
        "_KeyError": KeyError,
    }
    lines = [
        "def decode(body):",
        f"    if type(body) is not _dict or len(body) != {len(fields)}:",
        "        return _fallback(body)",
        "    try:",
        *(f"        v{i} = body[{name!r}]" for i, name in enumerate(fields)),
        "        pass",
        "    except _KeyError:",
        "        return _fallback(body)",
        "    obj = _new(_cls)",
    ]
    for i, name in enumerate(fields):
        slot = cls.__dict__.get(name)
        if type(slot) is MemberDescriptorType:
            namespace[f"_s{i}"] = slot.__set__
            lines.append(f"    _s{i}(obj, v{i})")
        else:
            lines.append(f"    _set(obj, {name!r}, v{i})")
    lines.append("    return obj")
    source = "\n".join(lines)
    exec(source, namespace)
    decoder: Decoder = namespace["decode"]
    return decoder


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
    buffer, so every nesting depth packs with packers of its own. Each depth keeps a pool of
    idle `msgpack.Packer` objects: a call takes one (making it when the pool is empty, as under
    concurrent calls from several threads) and puts it back after, which costs far less than
    building a packer per object. A packer whose output was large is dropped rather than kept
    with its grown buffer. Every depth has its own ``default`` hook that knows its depth, so
    the depth bound needs no per-call state and the closures can be reused by every call and
    thread.

    With ``refs``, the classes met are remembered in a table of this function's own (refs are
    recognised by `RefCodec.ref_type` once per class, not per object); without, ``encoders``
    is the table. Rebuild the function when ``encoders`` is cleared (`register`).
    """
    known: dict[type, Encoder] = encoders if refs is None else {}
    # Object encoders' payload functions, by class: only with refs, where this function and
    # `known` are rebuilt together (without, `known` is ``encoders``, cleared under us).
    payloads: dict[type, Callable[[Any, Pack], bytes]] = {}
    ref_type = None if refs is None else refs.ref_type
    to_wire: Callable[[Any], str] = _no_refs if refs is None else refs.to_wire
    ext_type = msgpack.ExtType

    def encode_ref(obj: Any, pack: Pack) -> msgpack.ExtType:
        return _new_tuple(ext_type, (EXT_REF, to_wire(obj).encode()))  # ext(), inlined

    def encoder_for(cls: type, obj: object) -> Encoder:
        encoder: Encoder
        if ref_type is not None and isinstance(obj, ref_type):
            encoder = encode_ref
        else:
            encoder = encoders.get(cls) or build_encoder(cls)
            encoders[cls] = encoder
            payload = getattr(encoder, PAYLOAD_ATTRIBUTE, None)
            if refs is not None and payload is not None:
                payloads[cls] = payload
        known[cls] = encoder
        return encoder

    def too_deep(obj: object) -> msgpack.ExtType:
        raise EncodeError(f"tuples, sets and objects nest deeper than {MAX_DEPTH}")

    def make_level(default: _Default) -> Pack:
        pool: list[msgpack.Packer] = []
        take, give_back = pool.pop, pool.append

        def pack(obj: object) -> bytes:
            try:
                packer = take()
            except IndexError:
                packer = msgpack.Packer(
                    default=default, use_bin_type=True, strict_types=True, buf_size=_BUF_SIZE
                )
            data: bytes = packer.pack(obj)  # a failing pack leaves the packer reset but unused
            if len(data) <= _POOLED_OUTPUT:
                give_back(packer)
            return data

        return pack

    def make_default(inner: Pack) -> _Default:
        def default(obj: object) -> msgpack.ExtType:
            cls = type(obj)
            encoder = known.get(cls)
            if encoder is None:
                encoder = encoder_for(cls, obj)
            return encoder(obj, inner)

        return default

    # Built from the deepest level up: level MAX_DEPTH refuses any extension.
    default: _Default = too_deep
    pack = make_level(default)
    inner = pack
    for _ in range(MAX_DEPTH):
        inner = pack
        default = make_default(inner)
        pack = make_level(default)

    def encode(obj: object) -> bytes:
        cls = type(obj)
        if cls in _MSGPACK_TYPES:
            return pack(obj)
        # A message is usually a dataclass: write its extension header here rather than have
        # one more packer copy the payload into an envelope (about 20% faster). Decoding has no
        # such shortcut: parsing the header in Python costs more than msgpack's own unpackb.
        payload_of = payloads.get(cls)
        if payload_of is not None:  # a dataclass or NamedTuple: its payload, framed here
            body = payload_of(obj, inner)
            length = len(body)
            if 16 < length < 0x100:
                return _OBJECT_HEADS[length] + body
            return _ext_header(EXT_OBJECT, length) + body
        encoder = known.get(cls)  # default(obj), inlined
        if encoder is None:
            encoder = encoder_for(cls, obj)
        code: int
        payload: bytes
        code, payload = encoder(obj, inner)
        size = len(payload)
        if 16 < size < 0x100:  # _ext_header, inlined for the common size
            if code == EXT_OBJECT:
                return _OBJECT_HEADS[size] + payload
            return bytes((0xC7, size, code)) + payload
        return _ext_header(code, size) + payload

    return encode


def _no_refs(ref: object) -> str:
    """The ``to_wire`` of an encode function without a RefCodec: never called, since such a
    function recognises no ref (its ``ref_type`` is ``None``)."""
    raise AssertionError("refs are only recognised with a RefCodec")


def make_hook(
    refs: RefCodec | None,
    decoders: dict[str, Decoder],
    build_decoder: Callable[[object], Decoder],
) -> Hook:
    """The msgpack ``ext_hook`` for top-level values, resolving actor refs through ``refs``.

    As in `make_encode`, each depth has its own hook (built up front), so nesting is bounded
    without state.
    """
    unpackb = msgpack.unpackb
    from_wire = None if refs is None else refs.from_wire

    def too_deep(code: int, payload: bytes) -> object:
        raise DecodeError(f"tuples, sets and objects nest deeper than {MAX_DEPTH}")

    def make_level(inner: Hook) -> Hook:
        def items_of(payload: bytes) -> list[object]:
            items = unpackb(payload, ext_hook=inner, strict_map_key=False, timestamp=2)
            if type(items) is not list:
                raise DecodeError("malformed collection")
            return items

        def hook(code: int, payload: bytes) -> object:
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
            if code == EXT_REF:
                if from_wire is None:
                    raise DecodeError("an actor ref arrived but no RefCodec was given")
                return from_wire(payload.decode())
            if code == EXT_TUPLE:
                return tuple(items_of(payload))
            if code == EXT_SET:
                return set(items_of(payload))
            if code == EXT_FROZENSET:
                return frozenset(items_of(payload))
            if code == EXT_BIGINT:
                return int.from_bytes(payload, "little", signed=True)
            raise DecodeError(f"unknown msgpack extension code {code}")

        return hook

    hook: Hook = too_deep
    for _ in range(MAX_DEPTH):
        hook = make_level(hook)
    return hook


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
