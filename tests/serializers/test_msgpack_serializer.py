"""MsgpackSerializer specifics: pinned names, strict mode, safety of decoding, wire format."""

from __future__ import annotations

import collections
import sys
import types
import typing
from dataclasses import InitVar, dataclass, field
from typing import Any

import msgpack
import pytest

from casty.errors import ConfigurationError, DecodeError, EncodeError
from casty.serializers import as_serializer
from casty.serializers._types import builds_plainly
from casty.serializers.msgpack import MsgpackSerializer
from casty.testing.serializer_samples import (
    Account,
    Counter,
    Empty,
    FakeRef,
    FakeRefCodec,
    Point,
    Priority,
)

EXT_TUPLE, EXT_OBJECT, EXT_REF = 1, 5, 6


def typed_object(type_name: object, body: object) -> bytes:
    """Bytes a peer could send: a typed-object extension naming ``type_name``."""
    data: bytes = msgpack.packb(msgpack.ExtType(EXT_OBJECT, msgpack.packb([type_name, body])))
    return data


@dataclass(frozen=True)
class PlacedV1:
    order_id: str


@dataclass(frozen=True)
class PlacedV2:
    order_id: str
    channel: str = "web"


@dataclass(frozen=True)
class Positive:
    amount: int

    def __post_init__(self) -> None:
        if self.amount <= 0:
            raise ValueError("amount must be positive")


@dataclass
class WithInitVarless:
    value: int
    derived: int = field(init=False)

    def __post_init__(self) -> None:
        self.derived = self.value * 2


class Tripwire:
    """A plain class: decoding must never build one, whatever the bytes say."""

    built = 0

    def __init__(self, **_: Any) -> None:
        Tripwire.built += 1


@dataclass(frozen=True)
class Base:
    a: int


class UndecoratedChild(Base):
    pass


@dataclass
class CustomInit:
    a: int

    def __init__(self, a: int, secret: str) -> None:
        self.a = a


@dataclass(frozen=True, slots=True)
class SlotsChild(Point):
    """Fields of a base and of its own, as slots; rebuilt without being called."""

    label: str = "p"


AUDIT: list[str] = []


@dataclass
class Audited:
    """Its __setattr__ sees every assignment, __init__'s included: decoding must call it."""

    value: int

    def __setattr__(self, name: str, value: object) -> None:
        AUDIT.append(f"{name}={value}")
        object.__setattr__(self, name, value)


@dataclass(frozen=True)
class Counted:
    """A __new__ of its own: decoding must go through it."""

    value: int
    made: typing.ClassVar[int] = 0

    def __new__(cls, *args: object, **kwargs: object) -> Counted:
        Counted.made += 1
        return super().__new__(cls)


@dataclass
class WithInitVar:
    value: int
    scale: InitVar[int] = 1


@dataclass(init=False)
class OwnInit:
    value: int

    def __init__(self, value: int) -> None:
        self.value = value


@pytest.fixture
def serializer() -> MsgpackSerializer:
    return MsgpackSerializer()


# -- registry and URLs ---------------------------------------------------------------------------


def test_as_serializer_resolves_the_default_by_name() -> None:
    serializer = as_serializer("msgpack")
    assert isinstance(serializer, MsgpackSerializer)
    assert serializer.name == "msgpack" and not serializer.strict


@pytest.mark.parametrize("url", ["msgpack://?strict=true", "msgpack://?strict=1"])
def test_url_query_turns_strict_mode_on(url: str) -> None:
    serializer = as_serializer(url)
    assert isinstance(serializer, MsgpackSerializer) and serializer.strict


def test_keyword_option_wins_over_the_query() -> None:
    serializer = as_serializer("msgpack://?strict=true", strict=False)
    assert isinstance(serializer, MsgpackSerializer) and not serializer.strict


@pytest.mark.parametrize("url", ["msgpack://?strict=maybe", "msgpack://?compress=1"])
def test_bad_url_options_raise_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        as_serializer(url)


# -- registration --------------------------------------------------------------------------------


def test_pinned_name_is_written_instead_of_module_and_qualname(
    serializer: MsgpackSerializer,
) -> None:
    serializer.register(PlacedV1, name="orders.placed")
    data = serializer.encode(PlacedV1("o-1"))
    assert b"orders.placed" in data and PlacedV1.__qualname__.encode() not in data
    assert serializer.manifest(PlacedV1("o-1")) == "orders.placed"
    assert serializer.decode(data) == PlacedV1("o-1")


def test_pin_survives_a_rename_and_defaults_fill_new_fields() -> None:
    old_node, new_node = MsgpackSerializer(), MsgpackSerializer()
    old_node.register(PlacedV1, name="orders.placed")
    new_node.register(PlacedV2, name="orders.placed")
    decoded = new_node.decode(old_node.encode(PlacedV1("o-7")))
    assert decoded == PlacedV2("o-7", channel="web")


def test_unknown_field_from_a_newer_peer_raises_decode_error() -> None:
    new_node, old_node = MsgpackSerializer(), MsgpackSerializer()
    new_node.register(PlacedV2, name="orders.placed")
    old_node.register(PlacedV1, name="orders.placed")
    with pytest.raises(DecodeError, match="channel"):
        old_node.decode(new_node.encode(PlacedV2("o-7", "app")))


def test_two_classes_under_one_name_raise_configuration_error(
    serializer: MsgpackSerializer,
) -> None:
    serializer.register(PlacedV1, name="orders.placed")
    with pytest.raises(ConfigurationError, match=r"orders\.placed"):
        serializer.register(PlacedV2, name="orders.placed")


def test_one_class_under_two_names_raises_configuration_error(
    serializer: MsgpackSerializer,
) -> None:
    serializer.register(PlacedV1, name="a")
    with pytest.raises(ConfigurationError):
        serializer.register(PlacedV1, name="b")


def test_registering_again_under_the_same_name_is_a_no_op(serializer: MsgpackSerializer) -> None:
    serializer.register(PlacedV1, name="a")
    serializer.register(PlacedV1, name="a")
    assert serializer.decode(serializer.encode(PlacedV1("x"))) == PlacedV1("x")


@pytest.mark.parametrize("cls", [Tripwire, dict, UndecoratedChild])
def test_registering_an_unsupported_class_raises_configuration_error(
    serializer: MsgpackSerializer, cls: type
) -> None:
    with pytest.raises(ConfigurationError):
        serializer.register(cls)


def test_empty_name_raises_configuration_error(serializer: MsgpackSerializer) -> None:
    with pytest.raises(ConfigurationError):
        serializer.register(PlacedV1, name="")


def test_register_after_encoding_changes_the_wire_name(serializer: MsgpackSerializer) -> None:
    before = serializer.encode(PlacedV1("x"))
    serializer.register(PlacedV1, name="pinned.later")
    after = serializer.encode(PlacedV1("x"))
    assert b"pinned.later" not in before and b"pinned.later" in after


def test_register_after_encoding_with_refs_changes_the_wire_name(
    serializer: MsgpackSerializer,
) -> None:
    codec = FakeRefCodec()
    before = serializer.encode(PlacedV1("x"), codec)
    serializer.register(PlacedV1, name="pinned.later")
    after = serializer.encode(PlacedV1("x"), codec)
    assert b"pinned.later" not in before and b"pinned.later" in after


def test_register_changes_the_wire_name_for_every_codec_met_before(
    serializer: MsgpackSerializer,
) -> None:
    first, second = FakeRefCodec(), FakeRefCodec()
    serializer.encode(PlacedV1("x"), first)
    serializer.encode(PlacedV1("x"), second)
    serializer.register(PlacedV1, name="pinned.later")
    assert b"pinned.later" in serializer.encode(PlacedV1("x"), first)
    assert b"pinned.later" in serializer.encode(PlacedV1("x"), second)


def test_codecs_used_in_turn_each_write_and_read_their_own_refs(
    serializer: MsgpackSerializer,
) -> None:
    class Prefixing(FakeRefCodec):
        def __init__(self, prefix: str) -> None:
            super().__init__()
            self.prefix = prefix

        def to_wire(self, ref: Any) -> str:
            return self.prefix + super().to_wire(ref)

    first, second = Prefixing("1:"), Prefixing("2:")
    for _ in range(2):
        for codec in (first, second):
            data = serializer.encode([FakeRef("/user/a")], codec)
            assert serializer.decode(data, codec) == [FakeRef(codec.prefix + "/user/a")]
    assert first.resolved == ["1:/user/a"] * 2
    assert second.resolved == ["2:/user/a"] * 2


def test_a_class_defined_in_a_function_needs_a_pinned_name(
    serializer: MsgpackSerializer,
) -> None:
    @dataclass(frozen=True)
    class Local:
        n: int

    with pytest.raises(EncodeError, match="register"):
        serializer.encode(Local(1))
    with pytest.raises(ConfigurationError):
        serializer.register(Local)
    serializer.register(Local, name="tests.local")
    assert serializer.decode(serializer.encode(Local(1))) == Local(1)


# -- strict mode ---------------------------------------------------------------------------------


def test_strict_mode_refuses_to_encode_unregistered_types() -> None:
    serializer = MsgpackSerializer(strict=True)
    with pytest.raises(EncodeError, match="strict"):
        serializer.encode([Point(1, 2)])
    with pytest.raises(EncodeError, match="strict"):
        serializer.encode(Priority.LOW)


def test_strict_mode_refuses_to_decode_unregistered_types() -> None:
    data = MsgpackSerializer().encode(Point(1, 2))
    with pytest.raises(DecodeError, match="strict"):
        MsgpackSerializer(strict=True).decode(data)


def test_strict_mode_accepts_registered_types_and_builtin_kinds() -> None:
    sender, receiver = MsgpackSerializer(strict=True), MsgpackSerializer(strict=True)
    for node in (sender, receiver):
        node.register(Point)
    value = {"p": Point(1, 2), "t": (1, {2}), "big": 2**90}
    assert receiver.decode(sender.encode(value)) == value


# -- safety of decoding --------------------------------------------------------------------------


def test_a_module_that_is_not_imported_is_never_imported(serializer: MsgpackSerializer) -> None:
    # `tabnanny` ships with Python and nothing here imports it.
    assert "tabnanny" not in sys.modules
    with pytest.raises(DecodeError, match="not imported"):
        serializer.decode(typed_object("tabnanny:NannyNag", {}))
    assert "tabnanny" not in sys.modules


@pytest.mark.parametrize(
    "type_name",
    [
        f"{__name__}:Tripwire",
        "builtins:object",
        "builtins:dict",
        "subprocess:Popen",
        "os:system",
        "os:path",
        f"{__name__}:UndecoratedChild",
    ],
)
def test_nothing_but_dataclasses_enums_and_namedtuples_is_instantiated(
    serializer: MsgpackSerializer, type_name: str
) -> None:
    Tripwire.built = 0
    with pytest.raises(DecodeError):
        serializer.decode(typed_object(type_name, {"args": ["true"]}))
    assert Tripwire.built == 0


def test_module_getattr_hooks_are_not_triggered(
    serializer: MsgpackSerializer, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    module = types.ModuleType("casty_test_lazy_module")

    def module_getattr(name: str) -> object:
        calls.append(name)
        return Point

    module.__getattr__ = module_getattr  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    with pytest.raises(DecodeError):
        serializer.decode(typed_object(f"{module.__name__}:Point", {"x": 1, "y": 2}))
    assert calls == []


@pytest.mark.parametrize(
    "type_name", ["no-colon", ":Point", f"{__name__}:", 7, None, [1], f"{__name__}:Point.x"]
)
def test_malformed_type_names_raise_decode_error(
    serializer: MsgpackSerializer, type_name: object
) -> None:
    with pytest.raises(DecodeError):
        serializer.decode(typed_object(type_name, {}))


@pytest.mark.parametrize(
    "body",
    [[1, 2], {"x": 1}, {"x": 1, "y": 2, "z": 3}, {1: 1, "y": 2}, "xy", None],
    ids=["list", "missing", "extra", "non-string-key", "string", "none"],
)
def test_fields_that_do_not_fit_raise_decode_error(
    serializer: MsgpackSerializer, body: object
) -> None:
    with pytest.raises(DecodeError):
        serializer.decode(typed_object("casty.testing.serializer_samples:Point", body))


def test_post_init_validation_runs_on_decode(serializer: MsgpackSerializer) -> None:
    with pytest.raises(DecodeError) as info:
        serializer.decode(typed_object(f"{__name__}:Positive", {"amount": -5}))
    assert isinstance(info.value.__cause__, ValueError)
    assert serializer.decode(serializer.encode(Positive(5))) == Positive(5)


def test_init_false_field_computed_in_post_init_roundtrips(serializer: MsgpackSerializer) -> None:
    decoded = serializer.decode(serializer.encode(WithInitVarless(21)))
    assert isinstance(decoded, WithInitVarless) and decoded.derived == 42


@pytest.mark.parametrize("code", [0, 7, 42, 127, -5, -128])
def test_unknown_extension_codes_raise_decode_error(
    serializer: MsgpackSerializer, code: int
) -> None:
    with pytest.raises(DecodeError):
        # fixext 1 with a signed code byte: msgpack reserves negative codes for itself.
        serializer.decode(bytes((0xD4, code & 0xFF)) + b"\x90")


def test_a_ref_codec_that_fails_surfaces_as_decode_error(serializer: MsgpackSerializer) -> None:
    class Refusing(FakeRefCodec):
        def from_wire(self, address: str) -> FakeRef:
            raise KeyError(address)

    data = serializer.encode(FakeRef("casty://s@h:1/user/a"), FakeRefCodec())
    with pytest.raises(DecodeError):
        serializer.decode(data, Refusing())


@pytest.mark.parametrize("suffix", [b"\x00", b"\xc0\xc0"], ids=["one-byte", "two-bytes"])
def test_trailing_bytes_raise_decode_error(serializer: MsgpackSerializer, suffix: bytes) -> None:
    for value in (Point(1, 2), [1, 2], (1, 2)):
        with pytest.raises(DecodeError):
            serializer.decode(serializer.encode(value) + suffix)


def nested_tuples(depth: int) -> object:
    value: object = ()
    for _ in range(depth - 1):
        value = (value,)
    return value


def nested_tuple_bytes(depth: int) -> bytes:
    """``depth`` tuples inside one another, built with msgpack alone (as a peer could)."""
    payload: bytes = msgpack.packb([])
    for _ in range(depth - 1):
        payload = msgpack.packb([msgpack.ExtType(EXT_TUPLE, payload)])
    data: bytes = msgpack.packb(msgpack.ExtType(EXT_TUPLE, payload))
    return data


def test_extensions_nest_up_to_64_deep(serializer: MsgpackSerializer) -> None:
    value = nested_tuples(64)
    data = serializer.encode(value)
    assert data == nested_tuple_bytes(64)
    assert serializer.decode(data) == value


def test_deeper_nesting_raises_encode_error(serializer: MsgpackSerializer) -> None:
    with pytest.raises(EncodeError, match="deeper than 64"):
        serializer.encode(nested_tuples(65))


@pytest.mark.parametrize("depth", [65, 5_000])
def test_deeper_nested_bytes_raise_decode_error(serializer: MsgpackSerializer, depth: int) -> None:
    # Unbounded, this would overflow the C stack inside msgpack (a crash, not an exception).
    with pytest.raises(DecodeError, match="deeper than 64"):
        serializer.decode(nested_tuple_bytes(depth))


# -- refusals at encoding ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        collections.OrderedDict(a=1),
        collections.defaultdict(list),
        type("MyStr", (str,), {})("x"),
        UndecoratedChild(1),
        "\ud800",
        Point,
    ],
    ids=["ordered-dict", "defaultdict", "str-subclass", "undecorated-child", "surrogate", "class"],
)
def test_values_without_a_faithful_wire_form_raise_encode_error(
    serializer: MsgpackSerializer, value: object
) -> None:
    with pytest.raises(EncodeError):
        serializer.encode(value)


def test_dataclass_a_peer_could_not_rebuild_raises_encode_error(
    serializer: MsgpackSerializer,
) -> None:
    with pytest.raises(EncodeError, match="secret"):
        serializer.encode(CustomInit(1, "s"))


def test_a_field_name_that_is_not_an_identifier_raises_encode_error(
    serializer: MsgpackSerializer,
) -> None:
    # Encoders are generated source; a tampered field name must never reach it.
    @dataclass
    class Tampered:
        x: int
        y: int = field(init=False, default=0)

    Tampered.__dataclass_fields__["y"].name = "y, __import__('os')"
    serializer.register(Tampered, name="tests.tampered")
    with pytest.raises(EncodeError, match="identifiers"):
        serializer.encode(Tampered(1))


def test_bytearray_and_memoryview_decode_as_bytes(serializer: MsgpackSerializer) -> None:
    decoded = serializer.decode(serializer.encode([bytearray(b"ab"), memoryview(b"cd")]))
    assert isinstance(decoded, list) and decoded == [b"ab", b"cd"]
    assert all(type(b) is bytes for b in decoded)


# -- wire format ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 8, 13, 16, 17, 250, 255, 256, 65_535, 65_536])
def test_top_level_extension_header_matches_msgpack(
    serializer: MsgpackSerializer, size: int
) -> None:
    # The top-level extension header is written by hand; it must be what msgpack writes.
    value = (b"x" * size,)
    payload = msgpack.packb([value[0]])
    expected = msgpack.packb(msgpack.ExtType(EXT_TUPLE, payload))
    assert serializer.encode(value) == expected
    assert serializer.encode([value]) == b"\x91" + expected
    assert serializer.decode(expected) == value


def test_wire_form_of_a_dataclass_is_a_named_field_map(serializer: MsgpackSerializer) -> None:
    data = serializer.encode(Point(1, 2))
    ext = msgpack.unpackb(data)
    assert ext.code == EXT_OBJECT
    assert msgpack.unpackb(ext.data) == ["casty.testing.serializer_samples:Point", {"x": 1, "y": 2}]


def test_refs_are_written_as_their_address_string(serializer: MsgpackSerializer) -> None:
    ext = msgpack.unpackb(serializer.encode(FakeRef("casty://s@h:1/user/a"), FakeRefCodec()))
    assert (ext.code, ext.data) == (EXT_REF, b"casty://s@h:1/user/a")


def test_msgpack_timestamps_read_as_plain_ints(serializer: MsgpackSerializer) -> None:
    data = msgpack.packb(msgpack.Timestamp(1, 5))
    assert serializer.decode(data) == 1_000_000_005


# -- rebuilding without calling the class --------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "plain"),
    [
        (Point, True),  # frozen, slots
        (Account, True),  # mutable, __dict__, a default factory
        (Counter, True),  # an init=False field
        (Empty, True),
        (SlotsChild, True),
        (Positive, False),  # __post_init__ validates
        (WithInitVarless, False),  # __post_init__ computes
        (CustomInit, False),  # the user's __init__
        (OwnInit, False),  # init=False and the user's __init__
        (Audited, False),  # __setattr__ of its own
        (Counted, False),  # __new__ of its own
        (WithInitVar, False),  # an InitVar pseudo-field
    ],
)
def test_only_classes_whose_init_just_assigns_fields_are_rebuilt_without_a_call(
    cls: type, plain: bool
) -> None:
    assert builds_plainly(cls) is plain


@pytest.mark.parametrize(
    "value",
    [
        Point(1, 2),
        SlotsChild(3, 4, "q"),
        Account("ann", 2.5, ["a"]),
        Empty(),
        Counter("c"),
    ],
    ids=["frozen-slots", "slots-child", "dict", "empty", "init-false"],
)
def test_rebuilt_objects_equal_the_originals(serializer: MsgpackSerializer, value: object) -> None:
    decoded = serializer.decode(serializer.encode(value))
    assert type(decoded) is type(value) and decoded == value


def test_incomplete_or_foreign_maps_still_go_through_the_class(
    serializer: MsgpackSerializer,
) -> None:
    name = f"{__name__}:SlotsChild"
    assert serializer.decode(typed_object(name, {"x": 1, "y": 2})) == SlotsChild(1, 2, "p")
    with pytest.raises(DecodeError):  # as many keys as fields, but one unknown
        serializer.decode(typed_object(name, {"x": 1, "y": 2, "colour": "red"}))


def test_setattr_and_new_hooks_run_on_decode(serializer: MsgpackSerializer) -> None:
    data = serializer.encode(Audited(3))
    AUDIT.clear()
    assert serializer.decode(data) == Audited(3)
    assert AUDIT == ["value=3", "value=3"]  # the decoded copy, then the one compared with
    original = Counted(1)
    made = Counted.made
    assert serializer.decode(serializer.encode(original)) == original
    assert Counted.made == made + 1
