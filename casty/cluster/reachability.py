"""Who can reach whom: failure-detector observations, recorded per observer and gossiped.

Unreachability is a fact about a pair (observer, subject), not about a node: node A may reach C
while B cannot. Each observer owns one row of the table (its observations) and a version that it
bumps on every change to its row; only the observer changes its row. Merging two tables keeps,
for every observer, the row with the higher version, so merges are monotone, commutative,
associative and idempotent. This is the model of Akka Cluster's reachability table as its
documentation describes it.

A subject's *aggregated* status is the worst of all observations: ``terminated`` (the node is
known to be gone, for example replaced by a new incarnation) over ``unreachable`` over
``reachable``. ``terminated`` is final for an (observer, subject) pair.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from types import MappingProxyType
from typing import final

from casty.cluster.member import UniqueAddress

__all__ = ["Reachability", "ReachabilityStatus"]


class ReachabilityStatus(enum.Enum):
    """One observer's view of one subject."""

    REACHABLE = "reachable"
    UNREACHABLE = "unreachable"
    TERMINATED = "terminated"

    @property
    def severity(self) -> int:
        """0 reachable, 1 unreachable, 2 terminated: the worse observation wins."""
        return _SEVERITY[self]


_SEVERITY = {
    ReachabilityStatus.REACHABLE: 0,
    ReachabilityStatus.UNREACHABLE: 1,
    ReachabilityStatus.TERMINATED: 2,
}

Row = Mapping[UniqueAddress, ReachabilityStatus]


@final
class Reachability:
    """The immutable observer → subject → status table, with one version per observer.

    Rows hold only ``unreachable`` and ``terminated`` records: a missing record means
    reachable. An observer whose row became empty keeps its version, so an older copy of its row
    can never come back in a merge.

    Args:
        rows: observer to (subject to status); ``reachable`` entries are dropped.
        versions: observer to the version of its row (observers without a version get 0).
    """

    __slots__ = ("_rows", "_versions")

    _rows: Mapping[UniqueAddress, Row]
    _versions: Mapping[UniqueAddress, int]

    def __init__(
        self,
        rows: Mapping[UniqueAddress, Row] | None = None,
        versions: Mapping[UniqueAddress, int] | None = None,
    ) -> None:
        clean: dict[UniqueAddress, Row] = {}
        for observer, row in (rows or {}).items():
            kept = {s: st for s, st in row.items() if st is not ReachabilityStatus.REACHABLE}
            if kept:
                clean[observer] = MappingProxyType(kept)
        self._rows = MappingProxyType(clean)
        self._versions = MappingProxyType({o: v for o, v in (versions or {}).items() if v > 0})

    # -- reading -----------------------------------------------------------------------------

    @property
    def versions(self) -> Mapping[UniqueAddress, int]:
        """Observer to the version of its row (observers that never changed are absent)."""
        return self._versions

    def rows(self) -> Iterator[tuple[UniqueAddress, Row]]:
        """Every observer with a non-empty row, and that row."""
        return iter(self._rows.items())

    def version(self, observer: UniqueAddress) -> int:
        """The version of ``observer``'s row; 0 when it never recorded anything."""
        return self._versions.get(observer, 0)

    def status(self, observer: UniqueAddress, subject: UniqueAddress) -> ReachabilityStatus:
        """What ``observer`` last recorded about ``subject``."""
        row = self._rows.get(observer)
        if row is None:
            return ReachabilityStatus.REACHABLE
        return row.get(subject, ReachabilityStatus.REACHABLE)

    def aggregated_status(self, subject: UniqueAddress) -> ReachabilityStatus:
        """The worst status any observer recorded about ``subject``."""
        worst = ReachabilityStatus.REACHABLE
        for row in self._rows.values():
            status = row.get(subject)
            if status is not None and status.severity > worst.severity:
                worst = status
        return worst

    def is_reachable(self, subject: UniqueAddress) -> bool:
        """Whether no observer records ``subject`` as unreachable or terminated."""
        return all(subject not in row for row in self._rows.values())

    def is_reachable_by(self, observer: UniqueAddress, subject: UniqueAddress) -> bool:
        """Whether ``observer`` has no unreachable or terminated record about ``subject``."""
        return self.status(observer, subject) is ReachabilityStatus.REACHABLE

    @property
    def is_all_reachable(self) -> bool:
        """Whether no observer records any subject as unreachable or terminated."""
        return not self._rows

    def all_unreachable_or_terminated(self) -> frozenset[UniqueAddress]:
        """Every subject with at least one unreachable or terminated record."""
        return frozenset(s for row in self._rows.values() for s in row)

    def all_unreachable_from(self, observer: UniqueAddress) -> frozenset[UniqueAddress]:
        """The subjects ``observer`` records as unreachable or terminated."""
        return frozenset(self._rows.get(observer, {}))

    def observers(self) -> frozenset[UniqueAddress]:
        """Every observer with at least one unreachable or terminated record."""
        return frozenset(self._rows)

    def observers_of(self, subject: UniqueAddress) -> frozenset[UniqueAddress]:
        """The observers that record ``subject`` as unreachable or terminated."""
        return frozenset(o for o, row in self._rows.items() if subject in row)

    # -- changing ----------------------------------------------------------------------------

    def unreachable(self, observer: UniqueAddress, subject: UniqueAddress) -> Reachability:
        """``observer`` lost ``subject``; idempotent (no version bump when nothing changes)."""
        return self._change(observer, subject, ReachabilityStatus.UNREACHABLE)

    def reachable(self, observer: UniqueAddress, subject: UniqueAddress) -> Reachability:
        """``observer`` hears from ``subject`` again; idempotent. A terminated record stays."""
        return self._change(observer, subject, ReachabilityStatus.REACHABLE)

    def terminated(self, observer: UniqueAddress, subject: UniqueAddress) -> Reachability:
        """``observer`` knows ``subject`` is gone for good (final); idempotent."""
        return self._change(observer, subject, ReachabilityStatus.TERMINATED)

    def _change(
        self, observer: UniqueAddress, subject: UniqueAddress, status: ReachabilityStatus
    ) -> Reachability:
        current = self.status(observer, subject)
        if current is status or current is ReachabilityStatus.TERMINATED:
            return self
        row = dict(self._rows.get(observer, {}))
        if status is ReachabilityStatus.REACHABLE:
            del row[subject]
        else:
            row[subject] = status
        rows = dict(self._rows)
        rows[observer] = row
        versions = dict(self._versions)
        versions[observer] = versions.get(observer, 0) + 1
        return Reachability(rows, versions)

    def merge(self, allowed: Iterable[UniqueAddress], other: Reachability) -> Reachability:
        """Combine two tables, keeping only observers and subjects in ``allowed`` (the members).

        For each observer the row with the higher version wins. Equal versions normally carry
        equal rows; if they do not, the worse status per subject is kept so that the result
        still does not depend on the order of the arguments.
        """
        members = frozenset(allowed)
        rows: dict[UniqueAddress, Row] = {}
        versions: dict[UniqueAddress, int] = {}
        for observer in (self._versions.keys() | other._versions.keys()) & members:
            mine, theirs = self.version(observer), other.version(observer)
            versions[observer] = max(mine, theirs)
            if mine > theirs:
                row = dict(self._rows.get(observer, {}))
            elif theirs > mine:
                row = dict(other._rows.get(observer, {}))
            else:
                row = _worst_of(self._rows.get(observer, {}), other._rows.get(observer, {}))
            rows[observer] = {s: st for s, st in row.items() if s in members}
        return Reachability(rows, versions)

    def restricted_to(self, allowed: AbstractSet[UniqueAddress]) -> Reachability:
        """The table without observers or subjects outside ``allowed``; ``self`` when none."""
        inside = all(
            observer in allowed and all(s in allowed for s in self._rows.get(observer, {}))
            for observer in self._versions.keys() | self._rows.keys()
        )
        return self if inside else self.merge(allowed, Reachability())

    def remove(self, nodes: Iterable[UniqueAddress]) -> Reachability:
        """Forget ``nodes`` both as observers (row and version) and as subjects."""
        gone = frozenset(nodes)
        if not gone:
            return self
        rows = {
            o: {s: st for s, st in row.items() if s not in gone}
            for o, row in self._rows.items()
            if o not in gone
        }
        versions = {o: v for o, v in self._versions.items() if o not in gone}
        return Reachability(rows, versions)

    def remove_observers(self, observers: Iterable[UniqueAddress]) -> Reachability:
        """The table without the observations made by ``observers`` (for example downed ones)."""
        gone = frozenset(observers)
        if gone.isdisjoint(self._rows):
            return self
        rows = {o: row for o, row in self._rows.items() if o not in gone}
        versions = {o: v for o, v in self._versions.items() if o not in gone}
        return Reachability(rows, versions)

    # -- value semantics ---------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reachability):
            return NotImplemented
        return self._rows == other._rows and self._versions == other._versions

    __hash__ = None  # type: ignore[assignment]  # equal by content, not meant as a dict key

    def __repr__(self) -> str:
        rows = {
            str(o): {str(s): st.value for s, st in row.items()} for o, row in self._rows.items()
        }
        versions = {str(o): v for o, v in self._versions.items()}
        return f"Reachability(rows={rows}, versions={versions})"


def _worst_of(a: Row, b: Row) -> dict[UniqueAddress, ReachabilityStatus]:
    merged = dict(a)
    for subject, status in b.items():
        current = merged.get(subject)
        if current is None or status.severity > current.severity:
            merged[subject] = status
    return merged
