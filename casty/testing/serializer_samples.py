"""Sample messages, a fake actor ref codec and a type-exact equality, for serializer tests.

The message types are defined at module level, so they have the stable ``module:qualname``
names a safe serializer resolves on the decoding side. `SerializerContract` uses all of them;
they are public so plug-in authors can reuse them in their own tests.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, NoReturn, TypeVar

from casty.abc import RefCodec

__all__ = [
    "Account",
    "Box",
    "Color",
    "Counter",
    "Empty",
    "Envelope",
    "FakeRef",
    "FakeRefCodec",
    "Mode",
    "Order",
    "Pair",
    "Permission",
    "Point",
    "Priority",
    "assert_same",
]

T = TypeVar("T")


# -- message types (module level: their module:qualname resolves on the decoding side) ---------


@dataclass(frozen=True, slots=True)
class Point:
    x: int
    y: int


@dataclass
class Account:
    owner: str
    balance: float = 0.0
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Box(Generic[T]):
    item: T


@dataclass
class Counter:
    name: str
    hits: int = field(init=False, default=0)


@dataclass(frozen=True, slots=True)
class Empty:
    pass


@dataclass(frozen=True, slots=True)
class Envelope:
    recipient: FakeRef
    payload: object
    reply_to: FakeRef | None = None


class Color(enum.Enum):
    RED = "red"
    GREEN = (0, 255, 0)


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    READ = "r"
    WRITE = "w"


class Permission(enum.Flag):
    READ = 1
    WRITE = 2
    EXECUTE = 4


class Pair(NamedTuple):
    left: object
    right: object = None


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    lines: tuple[Pair, ...]
    priority: Priority
    point: Point | None = None


# -- actor refs -------------------------------------------------------------------------------


class FakeRef:
    """A stand-in actor ref: equal by path, and refusing every route but a `RefCodec`."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def __eq__(self, other: object) -> bool:
        return type(other) is FakeRef and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"FakeRef({self.path!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("actor refs travel through a RefCodec only")


class FakeRefCodec(RefCodec):
    """Writes a `FakeRef` as its path and records every path it resolves."""

    ref_type = FakeRef

    def __init__(self) -> None:
        self.resolved: list[str] = []

    def to_wire(self, ref: Any) -> str:
        assert isinstance(ref, FakeRef)
        return ref.path

    def from_wire(self, address: str) -> FakeRef:
        self.resolved.append(address)
        return FakeRef(address)


# -- structural equality ------------------------------------------------------------------------


def _same(a: object, b: object) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        assert isinstance(b, float)
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list | tuple):
        assert isinstance(b, list | tuple)
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return len(a) == len(b) and all(
            any(_same(k, k2) and _same(v, b[k2]) for k2 in b if k2 == k) for k, v in a.items()
        )
    if isinstance(a, set | frozenset):
        assert isinstance(b, set | frozenset)
        return len(a) == len(b) and all(any(_same(x, y) for y in b if y == x) for x in a)
    if dataclasses.is_dataclass(a):
        return all(_same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return a == b


def assert_same(decoded: object, original: object) -> None:
    """Assert equal values of identical types at every level (``1`` is not ``True`` nor
    ``1.0``, ``(1,)`` is not ``[1]``, ``-0.0`` is not ``0.0``; NaN matches NaN)."""
    assert _same(decoded, original), f"{decoded!r} differs from {original!r}"
