"""PickleSerializer specifics: its warning, protocol option, refs and error mapping."""

from __future__ import annotations

import pickle
import pickletools
from dataclasses import dataclass

import pytest

from casty.errors import ConfigurationError, DecodeError, EncodeError
from casty.serializers import as_serializer
from casty.serializers.pickle import PickleSerializer
from casty.testing.serializer_samples import FakeRef, FakeRefCodec, Point


@dataclass(frozen=True)
class Exploding:
    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (_explode, ())


def _explode() -> None:
    raise RuntimeError("ran code from the bytes")


def test_docstring_says_decoding_runs_code() -> None:
    doc = PickleSerializer.__doc__ or ""
    assert "arbitrary code" in doc and "trusted" in doc


def test_as_serializer_builds_pickle_by_name() -> None:
    serializer = as_serializer("pickle")
    assert isinstance(serializer, PickleSerializer) and serializer.name == "pickle"


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_protocol_option_sets_the_written_protocol(protocol: int) -> None:
    serializer = as_serializer(f"pickle://?protocol={protocol}")
    data = serializer.encode(Point(1, 2))
    first = next(pickletools.genops(data))
    assert first[0].name == "PROTO" and first[1] == protocol
    assert serializer.decode(data) == Point(1, 2)


@pytest.mark.parametrize(
    "url",
    ["pickle://?protocol=1", "pickle://?protocol=99", "pickle://?protocol=x", "pickle://?a=1"],
)
def test_bad_options_raise_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        as_serializer(url)


def test_refs_are_pickled_as_persistent_ids_not_objects() -> None:
    serializer = PickleSerializer()
    ref = FakeRef("casty://s@h:1/user/a")
    data = serializer.encode({"to": ref}, FakeRefCodec())
    ops = {op.name for op, _, _ in pickletools.genops(data)}
    assert "BINPERSID" in ops and b"FakeRef" not in data
    codec = FakeRefCodec()
    assert serializer.decode(data, codec) == {"to": ref}
    assert codec.resolved == [ref.path]


def test_code_raising_while_unpickling_surfaces_as_decode_error() -> None:
    serializer = PickleSerializer()
    with pytest.raises(DecodeError) as info:
        serializer.decode(serializer.encode(Exploding()))
    assert isinstance(info.value.__cause__, RuntimeError)


def test_missing_module_raises_decode_error() -> None:
    data = pickle.dumps(Point(1, 2)).replace(b"casty.testing", b"casty.tasting")
    with pytest.raises(DecodeError):
        PickleSerializer().decode(data)


def test_local_class_raises_encode_error() -> None:
    @dataclass
    class Local:
        n: int

    with pytest.raises(EncodeError):
        PickleSerializer().encode(Local(1))
