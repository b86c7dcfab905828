"""Cluster members: their unique addresses, their lifecycle statuses and the member value.

A member moves through the lifecycle of Akka Cluster (as its documentation describes it)::

    joining ─► (weakly_up) ─► up ─► leaving ─► exiting ─► removed
       └──────────────┴─────────┴───────┴─────────┴──► down ─► removed

The leader makes the moves ``joining → up``, ``leaving → exiting`` and ``exiting/down →
removed``; a member asks to leave (``leaving``); the split brain resolver or an operator marks a
member ``down``. ``removed`` never appears inside a gossip state: a removed member is dropped from
it (and remembered as a tombstone), and the status only shows up in `MemberRemoved` events.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from casty.abc import Address
from casty.errors import ClusterError, ConfigurationError

__all__ = ["Member", "MemberStatus", "UniqueAddress", "oldest"]

#: Upper bound (exclusive) of an incarnation, so it fits an unsigned 64-bit wire integer.
MAX_INCARNATION = 2**64


@dataclass(frozen=True, slots=True, order=True)
class UniqueAddress:
    """A node's address plus its incarnation: one run of one node process.

    A node restarted at the same host and port picks a new incarnation (for example the
    nanosecond clock at start-up, or a random 63-bit number), so the cluster can tell the new
    process from its dead predecessor and replace it cleanly. Ordering is by address (host,
    then port), then incarnation: the deterministic member order every node agrees on.

    Attributes:
        address: where the node listens.
        incarnation: an integer in ``0 <= incarnation < 2**64`` that differs between runs.

    Raises:
        ConfigurationError: the incarnation is not an integer in that range.
    """

    address: Address
    incarnation: int

    def __post_init__(self) -> None:
        inc = self.incarnation
        if isinstance(inc, bool) or not isinstance(inc, int) or not 0 <= inc < MAX_INCARNATION:
            raise ConfigurationError(f"incarnation must be an int in [0, 2**64), got {inc!r}")

    def __str__(self) -> str:
        return f"{self.address}#{self.incarnation}"

    @property
    def key(self) -> str:
        """The node's key in vector clocks and digests: ``"host:port#incarnation"``."""
        return str(self)


class MemberStatus(enum.Enum):
    """Where a member is in its lifecycle (see the module docstring)."""

    JOINING = "joining"
    WEAKLY_UP = "weakly_up"
    UP = "up"
    LEAVING = "leaving"
    EXITING = "exiting"
    DOWN = "down"
    REMOVED = "removed"

    @property
    def precedence(self) -> int:
        """Rank used when two gossip states disagree on a status: the higher rank wins.

        ``removed > down > exiting > leaving > up > weakly_up > joining``, so a merge never moves
        a member backwards in its lifecycle.
        """
        return _PRECEDENCE[self]


_PRECEDENCE = {
    MemberStatus.JOINING: 0,
    MemberStatus.WEAKLY_UP: 1,
    MemberStatus.UP: 2,
    MemberStatus.LEAVING: 3,
    MemberStatus.EXITING: 4,
    MemberStatus.DOWN: 5,
    MemberStatus.REMOVED: 6,
}

_S = MemberStatus
_ALLOWED_TRANSITIONS: dict[MemberStatus, frozenset[MemberStatus]] = {
    _S.JOINING: frozenset({_S.WEAKLY_UP, _S.UP, _S.LEAVING, _S.DOWN, _S.REMOVED}),
    _S.WEAKLY_UP: frozenset({_S.UP, _S.LEAVING, _S.DOWN, _S.REMOVED}),
    _S.UP: frozenset({_S.LEAVING, _S.DOWN, _S.REMOVED}),
    _S.LEAVING: frozenset({_S.EXITING, _S.DOWN, _S.REMOVED}),
    _S.EXITING: frozenset({_S.DOWN, _S.REMOVED}),
    _S.DOWN: frozenset({_S.REMOVED}),
    _S.REMOVED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class Member:
    """One node as the cluster sees it.

    Attributes:
        unique_address: the node's address and incarnation; a member's identity.
        node_id: the operator's name for the node (``node_id=`` of the system).
        status: where the member is in its lifecycle.
        roles: free-form role names (sharding and the split brain resolver can filter by role).
        up_number: the member's age rank, assigned by the leader when it moves the member to
            ``up`` (1 for the first member ever up, increasing); 0 before that. A smaller number
            is an older member (keep-oldest and coordinator placement use it).

    Raises:
        ConfigurationError: ``up_number`` is negative or ``roles`` holds a non-string.
    """

    unique_address: UniqueAddress
    node_id: str
    status: MemberStatus = MemberStatus.JOINING
    roles: frozenset[str] = field(default_factory=frozenset)
    up_number: int = 0

    def __post_init__(self) -> None:
        roles: object = self.roles  # callers may pass any iterable of names
        if not isinstance(roles, frozenset):
            object.__setattr__(self, "roles", frozenset(self.roles))
        if any(not isinstance(role, str) for role in self.roles):
            raise ConfigurationError(f"roles must be strings, got {sorted(map(repr, self.roles))}")
        if isinstance(self.up_number, bool) or not isinstance(self.up_number, int):
            raise ConfigurationError(f"up_number must be an int, got {self.up_number!r}")
        if self.up_number < 0:
            raise ConfigurationError(f"up_number must be >= 0, got {self.up_number}")

    @property
    def address(self) -> Address:
        """The member's network address (without the incarnation)."""
        return self.unique_address.address

    def has_role(self, role: str | None) -> bool:
        """Whether the member has ``role``; every member matches ``None``."""
        return role is None or role in self.roles

    def with_status(self, status: MemberStatus) -> Member:
        """A copy with ``status``; the same member when the status is unchanged.

        Raises:
            ClusterError: the lifecycle does not allow this move (for example ``up → joining``).
        """
        if status is self.status:
            return self
        if status not in _ALLOWED_TRANSITIONS[self.status]:
            raise ClusterError(
                f"member {self.unique_address} cannot move from {self.status.value} "
                f"to {status.value}"
            )
        return replace(self, status=status)

    @property
    def age_key(self) -> tuple[float, UniqueAddress]:
        """Sort key from oldest to youngest: up number (members never up last), then address."""
        return (self.up_number or math.inf, self.unique_address)

    def is_older_than(self, other: Member) -> bool:
        """Whether this member became ``up`` before ``other`` (ties broken by address)."""
        return self.age_key < other.age_key


def oldest(members: Iterable[Member]) -> Member | None:
    """The oldest of ``members`` by `Member.age_key`, or ``None`` when there are none."""
    return min(members, key=lambda m: m.age_key, default=None)
