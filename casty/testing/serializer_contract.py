"""`SerializerContract`: the test suite every `casty.abc.Serializer` must pass.

A serializer plug-in passes by subclassing it once::

    import pytest
    from casty.testing.serializer_contract import SerializerCapabilities, SerializerContract

    class TestCborSerializer(SerializerContract):
        @pytest.fixture
        def serializer_factory(self):
            return CborSerializer

        @pytest.fixture
        def capabilities(self):
            return SerializerCapabilities(big_ints=False)

Tests that need a capability the plug-in does not declare are skipped with the reason, never
passed silently. The messages it sends live in `casty.testing.serializer_samples`.
"""

from __future__ import annotations

import enum
import functools
import importlib
import math
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casty.abc import RefCodec, Serializer
from casty.errors import DecodeError, EncodeError
from casty.testing.serializer_samples import (
    Account,
    Box,
    Color,
    Counter,
    Empty,
    Envelope,
    FakeRef,
    FakeRefCodec,
    Mode,
    Order,
    Pair,
    Permission,
    Point,
    Priority,
    assert_same,
)

__all__ = ["SerializerCapabilities", "SerializerContract", "requires"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class SerializerCapabilities:
    """What a serializer supports; contract tests that need an absent capability skip.

    Attributes:
        user_types: dataclasses, enums and NamedTuples travel without registration.
        preserves_containers: tuples, lists, sets and frozensets come back as their own types.
        non_string_keys: dict keys may be any hashable value (ints, tuples, frozen dataclasses).
        big_ints: ints beyond 64 bits round-trip.
        refs: actor refs travel through the `RefCodec` handed to ``encode`` / ``decode``.
        safe_decoding: decoding never imports a module nor builds a class the bytes name but
            a dataclass, enum or NamedTuple; an unknown type name raises `DecodeError`.
    """

    user_types: bool = True
    preserves_containers: bool = True
    non_string_keys: bool = True
    big_ints: bool = True
    refs: bool = True
    safe_decoding: bool = True


_CAPABILITY_NAMES = frozenset(SerializerCapabilities.__dataclass_fields__)


def requires(*capabilities: str) -> Callable[[F], F]:
    """Mark a contract test as needing ``capabilities`` (names of `SerializerCapabilities`).

    The test is skipped, with the missing names as the reason, when the serializer under test
    does not declare them.

    Raises:
        ValueError: an unknown capability name.
    """
    unknown = set(capabilities) - _CAPABILITY_NAMES
    if unknown:
        raise ValueError(f"unknown serializer capabilities: {sorted(unknown)}")

    def mark(function: F) -> F:
        function.__casty_requires__ = capabilities  # type: ignore[attr-defined]
        return function

    return mark


# -- Hypothesis strategies ----------------------------------------------------------------------

_SMALL_INTS = st.integers(min_value=-(2**63), max_value=2**64 - 1)
_ANY_INTS = st.integers() | st.integers(min_value=-(2**200), max_value=2**200)
_FLOATS = st.floats(allow_nan=False)  # NaN never equals itself inside sets and dict keys


def _scalars(big_ints: bool) -> st.SearchStrategy[object]:
    return (
        st.none()
        | st.booleans()
        | (_ANY_INTS if big_ints else _SMALL_INTS)
        | _FLOATS
        | st.text(max_size=20)
        | st.binary(max_size=20)
    )


def _hashables(caps: SerializerCapabilities) -> st.SearchStrategy[object]:
    scalars = _scalars(caps.big_ints)
    if caps.user_types:
        scalars = scalars | st.sampled_from([*Color, *Priority, *Mode, *Permission])
        scalars = scalars | st.builds(Point, _SMALL_INTS, _SMALL_INTS)
    if not caps.preserves_containers:
        return scalars
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
        max_leaves=6,
    )


@functools.cache
def _values(caps: SerializerCapabilities) -> st.SearchStrategy[object]:
    scalars = _scalars(caps.big_ints)
    keys = _hashables(caps) if caps.non_string_keys else st.text(max_size=10)
    leaves = scalars
    if caps.user_types:
        leaves = leaves | st.sampled_from([*Color, *Priority, *Mode, *Permission, Empty()])
        leaves = leaves | st.builds(Point, _SMALL_INTS, _SMALL_INTS)

    def extend(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
        kinds: st.SearchStrategy[object] = st.lists(inner, max_size=4)
        kinds = kinds | st.dictionaries(keys, inner, max_size=4)
        if caps.preserves_containers:
            kinds = kinds | st.lists(inner, max_size=4).map(tuple)
            kinds = kinds | st.sets(_hashables(caps), max_size=4)
            kinds = kinds | st.frozensets(_hashables(caps), max_size=4)
        if caps.user_types:
            kinds = kinds | st.builds(Box, inner) | st.builds(Pair, inner, inner)
            kinds = kinds | st.builds(
                Account, st.text(max_size=8), _FLOATS, st.lists(st.text(max_size=8), max_size=3)
            )
        return kinds

    return st.recursive(leaves, extend, max_leaves=12)


_PROPERTY = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_DECOY_SOURCE = """
from dataclasses import dataclass

IMPORTED = True


@dataclass(frozen=True)
class Ghost:
    value: int
"""


# -- the suite ----------------------------------------------------------------------------------


class SerializerContract:
    """Subclass once, override `serializer_factory` (and `capabilities` when needed)."""

    @pytest.fixture
    def serializer_factory(self) -> Callable[[], Serializer]:
        """A zero-argument callable returning a fresh serializer."""
        raise NotImplementedError("override serializer_factory in your SerializerContract")

    @pytest.fixture
    def capabilities(self) -> SerializerCapabilities:
        """What the serializer supports; the default claims everything."""
        return SerializerCapabilities()

    @pytest.fixture
    def serializer(self, serializer_factory: Callable[[], Serializer]) -> Serializer:
        return serializer_factory()

    @pytest.fixture(autouse=True)
    def _skip_absent_capabilities(
        self, request: pytest.FixtureRequest, capabilities: SerializerCapabilities
    ) -> None:
        needed = getattr(request.function, "__casty_requires__", ())
        absent = [name for name in needed if not getattr(capabilities, name)]
        if absent:
            pytest.skip(f"serializer lacks capability {', '.join(absent)}")

    @staticmethod
    def roundtrip(serializer: Serializer, value: object, refs: RefCodec | None = None) -> object:
        data = serializer.encode(value, refs)
        assert isinstance(data, bytes)
        return serializer.decode(data, refs)

    # -- identity -------------------------------------------------------------------------------

    def test_name_is_a_stable_non_empty_string(
        self, serializer: Serializer, serializer_factory: Callable[[], Serializer]
    ) -> None:
        assert isinstance(serializer.name, str) and serializer.name
        assert serializer_factory().name == serializer.name

    def test_manifest_is_a_string(self, serializer: Serializer) -> None:
        assert isinstance(serializer.manifest(Point(1, 2)), str)

    # -- builtin kinds --------------------------------------------------------------------------

    @pytest.mark.parametrize(
        "value",
        [
            None,
            True,
            False,
            0,
            1,
            -1,
            2**63 - 1,
            -(2**63),
            2**64 - 1,
            0.5,
            "",
            "héllo ✓",
            b"",
            b"\x00\xff",
            [],
            {},
            {"a": [1, 2.5, None]},
        ],
        ids=repr,
    )
    def test_builtin_values_roundtrip_with_their_types(
        self, serializer: Serializer, value: object
    ) -> None:
        assert_same(self.roundtrip(serializer, value), value)

    def test_bool_stays_bool_and_int_stays_int(self, serializer: Serializer) -> None:
        decoded = self.roundtrip(serializer, [True, 1, 1.0, False, 0])
        assert_same(decoded, [True, 1, 1.0, False, 0])

    @pytest.mark.parametrize("value", [math.inf, -math.inf, -0.0, math.nan], ids=repr)
    def test_special_floats_roundtrip(self, serializer: Serializer, value: float) -> None:
        assert_same(self.roundtrip(serializer, value), value)

    @requires("big_ints")
    @pytest.mark.parametrize(
        "value", [2**64, -(2**63) - 1, 2**200 + 7, -(2**521) + 1, 10**100], ids=str
    )
    def test_ints_beyond_64_bits_roundtrip(self, serializer: Serializer, value: int) -> None:
        assert_same(self.roundtrip(serializer, value), value)

    @requires("preserves_containers")
    def test_tuples_stay_tuples_and_lists_stay_lists(self, serializer: Serializer) -> None:
        value: tuple[object, ...] = ((1, [2, (3,)]), [(), []], ((),))
        assert_same(self.roundtrip(serializer, value), value)

    @requires("preserves_containers")
    def test_sets_and_frozensets_keep_their_types(self, serializer: Serializer) -> None:
        value: list[object] = [
            {1, "a", (2, 3)},
            frozenset({frozenset({1}), b"x"}),
            set(),
            frozenset(),
        ]
        assert_same(self.roundtrip(serializer, value), value)

    @requires("non_string_keys")
    def test_dicts_keep_non_string_keys(self, serializer: Serializer) -> None:
        value = {
            1: "int",
            (1, "a"): "tuple",
            None: "none",
            b"k": "bytes",
            frozenset({2}): "frozenset",
            2.5: "float",
            Point(1, 2): "dataclass",
        }
        assert_same(self.roundtrip(serializer, value), value)

    # -- user types -----------------------------------------------------------------------------

    @requires("user_types")
    def test_frozen_slots_dataclass_roundtrips(self, serializer: Serializer) -> None:
        assert_same(self.roundtrip(serializer, Point(3, -4)), Point(3, -4))

    @requires("user_types")
    def test_mutable_dataclass_with_defaults_roundtrips(self, serializer: Serializer) -> None:
        for value in (Account("ann"), Account("bob", 12.5, ["vip", "eu"])):
            assert_same(self.roundtrip(serializer, value), value)

    @requires("user_types")
    def test_generic_dataclass_roundtrips(self, serializer: Serializer) -> None:
        value = Box(Box((1, "x")))
        assert_same(self.roundtrip(serializer, value), value)

    @requires("user_types")
    def test_empty_dataclass_roundtrips(self, serializer: Serializer) -> None:
        assert_same(self.roundtrip(serializer, Empty()), Empty())

    @requires("user_types")
    def test_init_false_field_keeps_its_value(self, serializer: Serializer) -> None:
        counter = Counter("clicks")
        counter.hits = 41
        decoded = self.roundtrip(serializer, counter)
        assert isinstance(decoded, Counter)
        assert (decoded.name, decoded.hits) == ("clicks", 41)

    @requires("user_types")
    @pytest.mark.parametrize(
        "member",
        [
            Color.RED,
            Color.GREEN,
            Priority.HIGH,
            Mode.WRITE,
            Permission.READ,
            Permission.READ | Permission.WRITE,
            Permission(0),
        ],
        ids=repr,
    )
    def test_enum_members_come_back_as_the_same_member(
        self, serializer: Serializer, member: enum.Enum
    ) -> None:
        assert self.roundtrip(serializer, member) is member

    @requires("user_types")
    def test_namedtuple_stays_a_namedtuple(self, serializer: Serializer) -> None:
        value = Pair((1, 2), Pair("nested"))
        decoded = self.roundtrip(serializer, value)
        assert_same(decoded, value)
        assert isinstance(decoded, Pair) and decoded.right == Pair("nested", None)

    @requires("user_types", "preserves_containers")
    def test_nested_message_roundtrips(self, serializer: Serializer) -> None:
        order = Order(
            "o-1",
            (Pair("sku-1", 2), Pair("sku-2", ("gift", True, b"b", Mode.READ))),
            Priority.HIGH,
            Point(0, 0),
        )
        value = {"orders": [order], "seen": {order}, "meta": Box({"notes": [Account("c")]})}
        assert_same(self.roundtrip(serializer, value), value)

    # -- actor refs -----------------------------------------------------------------------------

    @requires("refs", "user_types")
    def test_actor_refs_travel_through_the_ref_codec(self, serializer: Serializer) -> None:
        sender, receiver = FakeRefCodec(), FakeRefCodec()
        a = FakeRef("casty://sys@10.0.0.1:25520/user/a")
        b = FakeRef("casty://sys@10.0.0.2:25520/user/b#7")
        value = Envelope(a, {"replies": [b, (a,)]}, reply_to=b)
        decoded = serializer.decode(serializer.encode(value, sender), receiver)
        assert_same(decoded, value)
        assert sorted(receiver.resolved) == sorted([a.path, b.path, a.path, b.path])

    @requires("refs")
    def test_actor_ref_without_codec_raises_encode_error(self, serializer: Serializer) -> None:
        with pytest.raises(EncodeError):
            serializer.encode([FakeRef("casty://sys@h:1/user/a")])

    @requires("refs")
    def test_actor_ref_bytes_without_codec_raise_decode_error(self, serializer: Serializer) -> None:
        data = serializer.encode([FakeRef("casty://sys@h:1/user/a")], FakeRefCodec())
        with pytest.raises(DecodeError):
            serializer.decode(data)

    # -- refusals -------------------------------------------------------------------------------

    def test_unsupported_object_raises_encode_error(self, serializer: Serializer) -> None:
        for value in ((i for i in range(3)), threading.Lock(), [1, {"x": lambda: None}]):
            with pytest.raises(EncodeError):
                serializer.encode(value)

    def test_excessive_nesting_raises_encode_error_or_roundtrips(
        self, serializer: Serializer
    ) -> None:
        depth = 100_000
        value: list[object] = []
        for _ in range(depth):
            value = [value]
        try:
            data = serializer.encode(value)
        except EncodeError:
            return  # a RecursionError (or any other type) would fail the test
        decoded = serializer.decode(data)
        for _ in range(depth):
            assert isinstance(decoded, list) and len(decoded) == 1
            decoded = decoded[0]
        assert decoded == []

    @pytest.mark.parametrize(
        "data",
        [b"", b"\xc1", b"\x80\x04", b"\xff" * 64],
        ids=["empty", "reserved-byte", "truncated-header", "ff-run"],
    )
    def test_garbage_raises_decode_error(self, serializer: Serializer, data: bytes) -> None:
        with pytest.raises(DecodeError):
            serializer.decode(data)

    @requires("safe_decoding", "user_types")
    def test_unknown_type_name_raises_decode_error_without_importing(
        self,
        serializer: Serializer,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # A module that exists and is importable, encoded from while imported, then forgotten:
        # decoding must name it without importing it again.
        name = f"casty_contract_decoy_{abs(hash(tmp_path)):x}"
        (tmp_path / f"{name}.py").write_text(_DECOY_SOURCE)
        monkeypatch.syspath_prepend(str(tmp_path))
        decoy = importlib.import_module(name)
        data = serializer.encode(decoy.Ghost(7))
        del sys.modules[name]
        before = set(sys.modules)
        with pytest.raises(DecodeError):
            serializer.decode(data)
        assert set(sys.modules) == before

    # -- properties -----------------------------------------------------------------------------

    @pytest.mark.slow
    @_PROPERTY
    @given(data=st.data())
    def test_every_supported_value_roundtrips(
        self,
        serializer: Serializer,
        capabilities: SerializerCapabilities,
        data: st.DataObject,
    ) -> None:
        value = data.draw(_values(capabilities), label="value")
        assert_same(self.roundtrip(serializer, value), value)

    @pytest.mark.slow
    @_PROPERTY
    @given(data=st.data())
    def test_truncated_encodings_raise_decode_error(
        self,
        serializer: Serializer,
        capabilities: SerializerCapabilities,
        data: st.DataObject,
    ) -> None:
        encoded = serializer.encode(data.draw(_values(capabilities), label="value"))
        cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1), label="cut")
        with pytest.raises(DecodeError):
            serializer.decode(encoded[:cut])

    @pytest.mark.slow
    @_PROPERTY
    @given(garbage=st.binary(max_size=200))
    def test_random_bytes_decode_or_raise_decode_error_only(
        self, serializer: Serializer, garbage: bytes
    ) -> None:
        try:
            serializer.decode(garbage, FakeRefCodec())
        except DecodeError:
            pass

    @pytest.mark.slow
    @_PROPERTY
    @given(data=st.data())
    def test_corrupted_encodings_decode_or_raise_decode_error_only(
        self,
        serializer: Serializer,
        capabilities: SerializerCapabilities,
        data: st.DataObject,
    ) -> None:
        encoded = bytearray(serializer.encode(data.draw(_values(capabilities), label="value")))
        for _ in range(data.draw(st.integers(min_value=1, max_value=4), label="flips")):
            index = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
            encoded[index] = data.draw(st.integers(min_value=0, max_value=255))
        try:
            serializer.decode(bytes(encoded), FakeRefCodec())
        except DecodeError:
            pass

    def test_concurrent_threads_roundtrip_independently(self, serializer: Serializer) -> None:
        codec = FakeRefCodec()
        failures: list[BaseException] = []

        def work(worker: int) -> None:
            try:
                for i in range(300):
                    value = [worker, i, (worker, str(i)), {i: [b"x" * (i % 7)]}]
                    assert_same(self.roundtrip(serializer, value, codec), value)
            except BaseException as exc:  # reported to the main thread below
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures
