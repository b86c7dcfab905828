"""Vector clocks: the version of the gossiped membership state.

A vector clock maps node keys to counters (Lamport 1978; Fidge 1988; Mattern 1989). A node that
changes the state increments its own counter; merging takes the pointwise maximum; two clocks
compare as `Ordering.BEFORE`, `Ordering.AFTER`, `Ordering.SAME` or `Ordering.CONCURRENT` (the
partial order of causality). Clocks are immutable values. When a member is removed from the
cluster, its entry is pruned so that clocks stay as small as the membership.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import final

from casty.errors import ConfigurationError

__all__ = ["Ordering", "VectorClock"]


class Ordering(enum.Enum):
    """How one vector clock relates to another."""

    BEFORE = "before"
    """Every counter is lower or equal, and at least one is lower: strictly older."""
    AFTER = "after"
    """Every counter is greater or equal, and at least one is greater: strictly newer."""
    SAME = "same"
    """All counters are equal."""
    CONCURRENT = "concurrent"
    """Each clock has a counter above the other's: neither happened before the other."""


@final
class VectorClock:
    """An immutable vector clock over string node keys.

    Counters are positive integers; a missing key means 0, and zero entries are dropped on
    construction so that equal clocks are equal values. Instances are hashable.

    Args:
        versions: node key to counter.

    Raises:
        ConfigurationError: a key is not a string or a counter is not a non-negative integer.
    """

    __slots__ = ("_hash", "_versions")

    _versions: Mapping[str, int]
    _hash: int | None

    def __init__(self, versions: Mapping[str, int] | None = None) -> None:
        clean: dict[str, int] = {}
        for node, counter in (versions or {}).items():
            if not isinstance(node, str):
                raise ConfigurationError(f"vector clock keys are strings, got {node!r}")
            if isinstance(counter, bool) or not isinstance(counter, int) or counter < 0:
                raise ConfigurationError(f"vector clock counters are ints >= 0, got {counter!r}")
            if counter:
                clean[node] = counter
        self._versions = MappingProxyType(clean)
        self._hash = None

    @property
    def versions(self) -> Mapping[str, int]:
        """The non-zero counters, read-only."""
        return self._versions

    def get(self, node: str) -> int:
        """The counter of ``node`` (0 when absent)."""
        return self._versions.get(node, 0)

    def increment(self, node: str) -> VectorClock:
        """A clock with the counter of ``node`` one higher."""
        versions = dict(self._versions)
        versions[node] = versions.get(node, 0) + 1
        return VectorClock(versions)

    def merge(self, other: VectorClock) -> VectorClock:
        """The pointwise maximum; commutative, associative and idempotent."""
        versions = dict(self._versions)
        for node, counter in other._versions.items():
            if counter > versions.get(node, 0):
                versions[node] = counter
        return VectorClock(versions)

    def prune(self, nodes: Iterable[str]) -> VectorClock:
        """A clock without the entries of ``nodes`` (removed members); unknown keys are ignored."""
        drop = set(nodes)
        if drop.isdisjoint(self._versions):
            return self
        return VectorClock({k: v for k, v in self._versions.items() if k not in drop})

    def compare(self, other: VectorClock) -> Ordering:
        """How this clock relates to ``other`` (``a.compare(b)`` is ``BEFORE`` iff ``b`` is
        ``AFTER`` ``a``)."""
        lower = higher = False
        for node in self._versions.keys() | other._versions.keys():
            mine, theirs = self.get(node), other.get(node)
            if mine < theirs:
                lower = True
            elif mine > theirs:
                higher = True
            if lower and higher:
                return Ordering.CONCURRENT
        if lower:
            return Ordering.BEFORE
        if higher:
            return Ordering.AFTER
        return Ordering.SAME

    def __iter__(self) -> Iterator[str]:
        return iter(self._versions)

    def __len__(self) -> int:
        return len(self._versions)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VectorClock):
            return NotImplemented
        return self._versions == other._versions

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._versions.items()))
        return self._hash

    def __repr__(self) -> str:
        inner = ", ".join(f"{k!r}: {v}" for k, v in sorted(self._versions.items()))
        return f"VectorClock({{{inner}}})"
