"""`MsgpackSerializer`: the default serializer, safe for bytes from untrusted peers."""

from __future__ import annotations

from typing import Any, ClassVar, Final, NoReturn, TypeVar, final

import msgpack

from casty.abc import RefCodec, Serializer
from casty.errors import ConfigurationError, DecodeError, EncodeError
from casty.registry import BackendURL
from casty.serializers._msgpack_wire import (
    BUILTIN_ENCODERS,
    EXT_OBJECT,
    Decoder,
    Encoder,
    Hook,
    Pack,
    ext,
    field_setter_decoder,
    make_encode,
    make_hook,
    object_encoder,
)
from casty.serializers._types import (
    builds_plainly,
    constructor_problem,
    dataclass_fields,
    kind_of,
    resolve,
    wire_name,
)

__all__ = ["MsgpackSerializer"]

_unpackb = msgpack.unpackb  # a module global: one lookup per decode instead of two


@final
class MsgpackSerializer(Serializer):
    """MessagePack with user types named on the wire; the default serializer.

    No serialization protocol to learn: messages built from the kinds below need no
    registration, as long as their class's module is already imported on the receiving node.

    - ``None``, ``bool``, ``int`` (any size), ``float``, ``str``, ``bytes`` (``bytearray`` and
      ``memoryview`` encode as ``bytes``);
    - ``list``, ``tuple``, ``dict`` (any hashable keys, tuples included), ``set``,
      ``frozenset``, each kept as its own type and nested freely;
    - dataclasses (frozen or not, slots or not, generic), enums (``Enum``, ``IntEnum``,
      ``StrEnum``, ``Flag``) and NamedTuples, named on the wire by ``module:qualname`` or by the
      name pinned with `register`;
    - actor refs, as the address string of the `RefCodec` handed to `encode` / `decode`.

    Subclasses of the builtin kinds (other than enums and NamedTuples) are refused rather than
    silently narrowed. A dataclass travels as a map of every field (``init=False`` fields
    included) and is rebuilt by calling the class with its init fields as keywords, so
    ``__post_init__`` validation runs on the receiving node; fields missing from the map take
    their defaults (an old message read by newer code), unknown ones are a `DecodeError`. (A
    complete map of a class whose ``__init__`` is the generated one and would only assign the
    fields, without ``__post_init__``, ``__new__`` or ``__setattr__`` of its own, is rebuilt
    by assigning the fields directly: the same object, built faster.)
    An enum travels as its value. Tuples, sets, frozensets, dataclasses, enums and NamedTuples
    nest at most 64 deep inside one another (lists and dicts do not count); deeper values are
    an `EncodeError`, deeper bytes a `DecodeError`. The wire format is described in
    ``casty/serializers/_msgpack_wire.py``.

    Decoding is safe for bytes from untrusted peers: a type name is looked up in
    ``sys.modules`` and the class namespaces only (a module named by the bytes is never
    imported) and only dataclasses, enums and NamedTuples are ever instantiated. Any such class
    already imported may be, though, with the peer's field values: its ``__init__`` /
    ``__post_init__`` (or an enum's ``_missing_``) runs. When that matters (peers you do not
    control, dataclasses with side effects in imported libraries), use ``strict=True`` and
    `register` the message types.

    Per-class encoders and decoders are built on first use and cached. Encoding and decoding are
    thread-safe and may be called concurrently; `register` belongs to start-up.

    URL: ``msgpack`` (or ``msgpack://?strict=true``). Query options: ``strict`` (``true`` /
    ``false``, default ``false``). Extra: none (msgpack is a core dependency).

    Args:
        strict: accept registered types only, when encoding and when decoding.

    Example::

        serializer = MsgpackSerializer()
        serializer.register(OrderPlaced, name="orders.placed.v1")
        assert serializer.decode(serializer.encode(OrderPlaced(7))) == OrderPlaced(7)
    """

    name: ClassVar[str] = "msgpack"

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self._pinned: dict[type, str] = {}
        self._registered: dict[str, type] = {}
        self._encoders: dict[type, Encoder] = dict(BUILTIN_ENCODERS)
        self._decoders: dict[str, Decoder] = {}
        self._plain_encode = make_encode(None, self._encoders, self._build_encoder)
        self._plain_hook = make_hook(None, self._decoders, self._build_decoder)
        # The functions built for each RefCodec met (a node has a few: remoting's wire codec,
        # the system's), by id; each entry holds its codec, so the id cannot be reused meanwhile.
        self._ref_encodes: dict[int, tuple[RefCodec, Pack]] = {}
        self._ref_hooks: dict[int, tuple[RefCodec, Hook]] = {}
        #: Bumped by `register`, which makes the functions `_functions_for` returned stale.
        self._generation = 0

    @classmethod
    def from_url(cls, url: BackendURL, **options: Any) -> MsgpackSerializer:
        """Build from ``msgpack`` or ``msgpack://?strict=true``; keyword options win.

        Raises:
            ConfigurationError: ``strict`` is not ``true`` or ``false``, or an unknown option.
        """
        strict_text = url.query.get("strict", "false").lower()
        if strict_text not in ("true", "false", "1", "0"):
            raise ConfigurationError(f"msgpack: strict must be true or false, got {strict_text!r}")
        unknown = (set(url.query) | set(options)) - {"strict"}
        if unknown:
            raise ConfigurationError(f"msgpack: unknown options {sorted(unknown)}")
        strict = bool(options.get("strict", strict_text in ("true", "1")))
        return cls(strict=strict)

    def register(self, cls: type, name: str | None = None) -> None:
        """Accept ``cls`` (also in strict mode), written on the wire as ``name``.

        Pin a name to keep old bytes readable after the class is renamed or moved: register the
        new class under the old name. Without ``name`` the class keeps its ``module:qualname``.
        Registering the same class under the same name again does nothing.

        Raises:
            ConfigurationError: ``cls`` is not a dataclass, enum or NamedTuple; ``name`` is
                empty; another class holds ``name``; or ``cls`` is registered under another name.
        """
        if not isinstance(cls, type) or kind_of(cls) is None:
            raise ConfigurationError(
                f"can only register dataclasses, enums and NamedTuples, not {cls!r}"
            )
        if name is None:
            try:
                name = wire_name(cls)
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from exc
        if not name:
            raise ConfigurationError("a registered type name must not be empty")
        holder = self._registered.get(name)
        if holder is not None and holder is not cls:
            raise ConfigurationError(f"type name {name!r} is already registered for {holder!r}")
        pinned = self._pinned.get(cls)
        if pinned is not None and pinned != name:
            raise ConfigurationError(f"{cls!r} is already registered as {pinned!r}")
        self._registered[name] = cls
        self._pinned[cls] = name
        # Cached plans carry wire names and strict-mode verdicts: rebuild them lazily (the
        # encode function for refs keeps a table of its own, so it is rebuilt too).
        self._encoders.clear()
        self._encoders.update(BUILTIN_ENCODERS)
        self._decoders.clear()
        self._ref_encodes.clear()
        self._generation += 1

    def manifest(self, obj: object) -> str:
        """The wire name of ``obj``'s type: its pinned name, else ``module:qualname``."""
        pinned = self._pinned.get(type(obj))
        return pinned if pinned is not None else super().manifest(obj)

    # ---------------------------------------------------------------------------------------
    # encoding

    def encode(self, obj: object, refs: RefCodec | None = None) -> bytes:
        """Return the MessagePack bytes of ``obj``; actor refs are written by ``refs``.

        Raises:
            EncodeError: something inside ``obj`` is not a supported kind, is an actor ref and
                ``refs`` is ``None``, is unregistered in strict mode, is a class defined inside a
                function, or nests too deeply; a ``str`` is not valid Unicode.
        """
        encode = self._plain_encode if refs is None else self._encode_for(refs)
        try:
            return encode(obj)
        except EncodeError:
            raise
        except Exception as exc:  # the one choke point: msgpack, codec and recursion errors
            raise EncodeError(f"cannot encode {type(obj).__name__}: {exc}") from exc

    def _encode_for(self, refs: RefCodec) -> Pack:
        """The encode function for ``refs``: cached, or built and remembered."""
        cached = self._ref_encodes.get(id(refs))
        if cached is not None:
            return cached[1]
        encode = make_encode(refs, self._encoders, self._build_encoder)
        _remember(self._ref_encodes, refs, encode)
        return encode

    def _functions_for(self, refs: RefCodec) -> tuple[Pack, Hook]:
        """The encode function and the ``ext_hook`` that `encode` and `decode` use for
        ``refs``, for a hot path that calls them itself and translates their errors: any
        exception of the encode function means `EncodeError`, and any exception of
        ``msgpack.unpackb(data, ext_hook=hook, strict_map_key=False, timestamp=2)`` (how
        `decode` calls it) means `DecodeError`. They are stale once `_generation` changes
        (`register`); fetch them again then."""
        return self._encode_for(refs), self._hook_for(refs)

    def _build_encoder(self, cls: type) -> Encoder:
        kind = kind_of(cls)
        if kind is None:
            raise EncodeError(
                f"cannot encode {cls.__module__}.{cls.__qualname__}: not a dataclass, enum, "
                "NamedTuple, actor ref or builtin kind"
            )
        name = self._pinned.get(cls)
        if name is None:
            if self.strict:
                raise EncodeError(f"{cls.__qualname__} is not registered (strict mode)")
            try:
                name = wire_name(cls)
            except ValueError as exc:
                raise EncodeError(str(exc)) from exc
        if kind == "enum":
            return lambda obj, pack: ext(EXT_OBJECT, pack([name, obj._value_]))
        if kind == "namedtuple":
            return object_encoder(name, cls._fields, by_index=True)  # type: ignore[attr-defined]
        init_fields, late_fields = dataclass_fields(cls)
        problem = constructor_problem(cls, frozenset(init_fields))
        if problem is not None:
            raise EncodeError(f"{cls.__qualname__} cannot be rebuilt by a peer: {problem}")
        return object_encoder(name, init_fields + late_fields, by_index=False)

    # ---------------------------------------------------------------------------------------
    # decoding

    def decode(self, data: bytes, refs: RefCodec | None = None) -> object:
        """Return the value encoded in ``data``; actor refs are resolved by ``refs``.

        Never imports a module and never instantiates anything but the supported kinds.

        Raises:
            DecodeError: truncated, malformed or trailing bytes; an unknown extension code; a type
                name that is not imported here, not a supported kind, or (strict mode) not
                registered; fields that do not fit the class (its ``__post_init__`` raising
                included); an actor ref while ``refs`` is ``None``. No other exception escapes.
        """
        hook = self._plain_hook if refs is None else self._hook_for(refs)
        try:
            # Any hashable map key; timestamp=2: msgpack's own timestamp extension (which we
            # never write) reads as an int.
            return _unpackb(data, ext_hook=hook, strict_map_key=False, timestamp=2)
        except DecodeError:
            raise
        except Exception as exc:  # the one choke point: msgpack, user code, recursion errors
            raise DecodeError(f"cannot decode: {type(exc).__name__}: {exc}") from exc

    def _hook_for(self, refs: RefCodec) -> Hook:
        """The ``ext_hook`` for ``refs``: cached, or built and remembered."""
        cached = self._ref_hooks.get(id(refs))
        if cached is not None:
            return cached[1]
        hook = make_hook(refs, self._decoders, self._build_decoder)
        _remember(self._ref_hooks, refs, hook)
        return hook

    def _build_decoder(self, type_name: object) -> Decoder:
        if type(type_name) is not str:
            raise DecodeError(f"malformed type name {type_name!r}")
        cls = self._registered.get(type_name)
        if cls is None:
            if self.strict:
                raise DecodeError(f"type {type_name!r} is not registered (strict mode)")
            try:
                cls = resolve(type_name)
            except LookupError as exc:
                raise DecodeError(str(exc)) from exc
        decoder = _decoder_for(cls, type_name)
        self._decoders[type_name] = decoder  # only names that resolved: the cache stays bounded
        return decoder


#: RefCodecs whose functions a serializer keeps; meeting more starts the cache afresh.
_CODECS_CACHED: Final = 8

_F = TypeVar("_F")


def _remember(cache: dict[int, tuple[RefCodec, _F]], refs: RefCodec, built: _F) -> None:
    """Cache ``built`` for ``refs`` (bounded: codecs made per call would otherwise pile up)."""
    if len(cache) >= _CODECS_CACHED:
        cache.clear()
    cache[id(refs)] = (refs, built)


def _decoder_for(cls: type, type_name: str) -> Decoder:
    kind = kind_of(cls)
    if kind is None:
        raise DecodeError(f"type {type_name!r} is not a dataclass, enum or NamedTuple")
    if kind == "enum":
        return cls
    init_fields, late_fields = dataclass_fields(cls) if kind == "dataclass" else ((), ())
    decoder = _calling_decoder(cls, type_name, late_fields)
    if kind == "dataclass" and builds_plainly(cls):
        # The hot path: a complete map of a class whose __init__ only assigns its fields.
        return field_setter_decoder(cls, init_fields + late_fields, decoder)
    return decoder


def _calling_decoder(cls: type, type_name: str, late_fields: tuple[str, ...]) -> Decoder:
    """The decoder that calls ``cls`` with the init fields of the map, as keywords."""
    if not late_fields:
        return lambda body: cls(**body) if type(body) is dict else _malformed(type_name)

    def rebuild(body: object) -> object:
        if type(body) is not dict:
            _malformed(type_name)
        # init=False fields are not constructor arguments: set them after construction, as
        # pickle would, so state assigned after __init__ survives the trip.
        late = [(field, body.pop(field)) for field in late_fields if field in body]
        obj = cls(**body)
        for field, value in late:
            object.__setattr__(obj, field, value)
        return obj

    return rebuild


def _malformed(type_name: str) -> NoReturn:
    raise DecodeError(f"malformed fields for {type_name!r}")
