"""The gossiped membership state and the pure algorithms over it.

`Gossip` is an immutable value: the members, the per-observer `Reachability` table, the set of
nodes that have *seen* this version, the `VectorClock` version, the tombstones of removed
members, and an extension map for later layers. Every function here is pure: the wiring (the
topology actor) holds the current `Gossip`, feeds it what arrives from the network and the
failure detector, and sends what these functions return. The design follows Akka Cluster's
documented gossip protocol (itself after the Amazon Dynamo and Riak style of push-pull gossip):

* A node that changes the state increments its own entry of the version and becomes the only
  node that has seen the new version.
* Gossip received from a peer is compared by version (`receive_gossip`): an older one is
  ignored (and the peer is sent ours), a newer one adopted, the same one merges the seen sets,
  and concurrent ones are merged (`Gossip.merge`): members by status precedence
  (``removed > down > exiting > leaving > up > weakly_up > joining``), reachability by observer
  version, versions pointwise. The receiver then marks the result as seen by itself.
* *Convergence* (`Gossip.convergence`): every ``up`` or ``leaving`` member has seen the
  current version and no member is unreachable unless it is ``down`` or ``exiting``. Only then
  does the *leader* (`Gossip.leader`: the first reachable ``up``/``leaving`` member in address
  order) move members along (`leader_actions`), so every node agrees on each move.
* At rest a round sends only a `GossipStatus` digest (version plus a hash of the seen set) to a
  peer that has seen our version; the full state goes only to peers that have not.

Removed members are dropped from the state, their vector clock entries are pruned and a
`Tombstone` (removal time and last clock entry) keeps an old gossip from bringing them back.
"""

from __future__ import annotations

import enum
import hashlib
import math
import random
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, final

from casty.abc import Address
from casty.cluster._wire import (
    REACH_CODES,
    STATUS_CODES,
    WIRE_FORMAT,
    check_format,
    clock_from_wire,
    clock_to_wire,
    decode_gossip,
    plain,
    seq,
    unique_address,
)
from casty.cluster.events import ClusterDomainEvent, diff_events
from casty.cluster.member import Member, MemberStatus, UniqueAddress
from casty.cluster.reachability import Reachability, ReachabilityStatus
from casty.cluster.vclock import Ordering, VectorClock
from casty.errors import CastyError, ClusterError, DecodeError

__all__ = [
    "WIRE_FORMAT",
    "Extension",
    "Gossip",
    "GossipOutcome",
    "GossipStatus",
    "JoinOutcome",
    "ReceivedGossip",
    "StatusAction",
    "Tombstone",
    "leader_actions",
    "receive_gossip",
    "select_gossip_targets",
    "status_action",
]

_S = MemberStatus
#: Members that must have seen a version for convergence.
_CONVERGENCE_STATUSES = frozenset({_S.UP, _S.LEAVING})
#: Unreachable members with these statuses do not block convergence.
_SKIP_UNREACHABLE_STATUSES = frozenset({_S.DOWN, _S.EXITING})
#: Statuses that make a reachable member eligible as leader, in address order.
_LEADER_STATUSES = frozenset({_S.UP, _S.LEAVING})
#: Fallback leader preference when no member is up: weakly up, then joining, then exiting.
_FALLBACK_LEADER_RANK = {_S.WEAKLY_UP: 0, _S.JOINING: 1, _S.EXITING: 2}


@dataclass(frozen=True, slots=True)
class Extension:
    """A value a later layer rides on the gossip (for example coordinator hints).

    Attributes:
        version: bumped by each writer; in a merge the higher version wins (equal versions
            with different values are settled by comparing their ``repr``, so that every node
            picks the same one).
        value: plain data: ``None``, ``bool``, ``int``, finite ``float``, ``str``, ``bytes``,
            lists and dicts with string keys, nested at most 32 deep.
    """

    version: int
    value: Any


@dataclass(frozen=True, slots=True)
class Tombstone:
    """What remains of a removed member.

    Attributes:
        removed_at: wall-clock seconds since the epoch when the leader removed it.
        counter: the removed node's vector clock entry when its entry was pruned. A state that
            carries a higher entry for it holds changes the node made after its removal, which
            no remaining entry accounts for (see `receive_gossip`).
    """

    removed_at: float
    counter: int = 0


@final
class Gossip:
    """The membership state one node holds and gossips; an immutable value.

    Build the first state of a node with ``Gossip()`` and change it only through the methods
    below, which return new values. A method taking ``self_node`` that alters the state
    increments ``self_node``'s entry of the version and resets the seen set to
    ``{self_node}``; a method that would change nothing returns the same object.

    Args:
        members: the members; at most one per unique address and none ``removed``.
        reachability: the observation table; defaults to all reachable.
        seen: nodes that have seen this version; entries that are not members are dropped.
        version: the vector clock; defaults to empty.
        tombstones: unique address of each removed member to its `Tombstone`; a tombstoned node
            cannot be a member.
        extensions: key to `Extension`.

    Raises:
        ClusterError: two members share a unique address, a member is ``removed``, or a member
            is also tombstoned.
    """

    __slots__ = (
        "_extensions",
        "_members",
        "_reachability",
        "_seen",
        "_sorted",
        "_tombstones",
        "_version",
    )

    _members: Mapping[UniqueAddress, Member]
    _sorted: tuple[Member, ...]
    _reachability: Reachability
    _seen: frozenset[UniqueAddress]
    _version: VectorClock
    _tombstones: Mapping[UniqueAddress, Tombstone]
    _extensions: Mapping[str, Extension]

    def __init__(
        self,
        members: Iterable[Member] = (),
        reachability: Reachability | None = None,
        seen: Iterable[UniqueAddress] = (),
        version: VectorClock | None = None,
        tombstones: Mapping[UniqueAddress, Tombstone] | None = None,
        extensions: Mapping[str, Extension] | None = None,
    ) -> None:
        by_node: dict[UniqueAddress, Member] = {}
        for member in members:
            if member.unique_address in by_node:
                raise ClusterError(f"two members with unique address {member.unique_address}")
            if member.status is _S.REMOVED:
                raise ClusterError(f"removed member {member.unique_address} inside gossip")
            by_node[member.unique_address] = member
        graves = dict(tombstones or {})
        for node in graves:
            if node in by_node:
                raise ClusterError(f"member {node} is also tombstoned")
        self._members = MappingProxyType(by_node)
        self._sorted = tuple(sorted(by_node.values(), key=lambda m: m.unique_address))
        reach = reachability if reachability is not None else Reachability()
        # Observations about or by non-members must not ride along (nor reach the wire form).
        self._reachability = reach.restricted_to(by_node.keys())
        self._seen = frozenset(n for n in seen if n in by_node)
        clock = version if version is not None else VectorClock()
        # A removed node's counter must not linger: it would make older states look concurrent.
        self._version = clock.prune(n.key for n in graves) if graves else clock
        self._tombstones = MappingProxyType(graves)
        self._extensions = MappingProxyType(dict(extensions or {}))

    # -- reading -----------------------------------------------------------------------------

    @property
    def members(self) -> tuple[Member, ...]:
        """Every member, sorted by unique address (host, port, incarnation)."""
        return self._sorted

    def member(self, node: UniqueAddress) -> Member | None:
        """The member with unique address ``node``, or ``None``."""
        return self._members.get(node)

    def member_at(self, address: Address) -> Member | None:
        """The member listening at ``address`` (any incarnation), or ``None``."""
        for member in self._sorted:
            if member.address == address:
                return member
        return None

    def has_member(self, node: UniqueAddress) -> bool:
        """Whether ``node`` is a member (in any status)."""
        return node in self._members

    @property
    def reachability(self) -> Reachability:
        """The per-observer reachability table."""
        return self._reachability

    @property
    def seen(self) -> frozenset[UniqueAddress]:
        """The members that have seen this version."""
        return self._seen

    @property
    def version(self) -> VectorClock:
        """The vector clock of this state."""
        return self._version

    @property
    def tombstones(self) -> Mapping[UniqueAddress, Tombstone]:
        """Removed unique addresses to their tombstones."""
        return self._tombstones

    @property
    def extensions(self) -> Mapping[str, Extension]:
        """The extension map, read-only."""
        return self._extensions

    def seen_by(self, node: UniqueAddress) -> bool:
        """Whether ``node`` has seen this version."""
        return node in self._seen

    def is_removed(self, node: UniqueAddress) -> bool:
        """Whether ``node`` was removed from the cluster (a tombstone names it)."""
        return node in self._tombstones

    def seen_digest(self) -> bytes:
        """16 bytes that identify the seen set (BLAKE2b of the sorted node keys)."""
        keys = "\n".join(sorted(node.key for node in self._seen))
        return hashlib.blake2b(keys.encode(), digest_size=16).digest()

    def reachability_excluding_downed_observers(self) -> Reachability:
        """The table without observations made by ``down`` members, which no longer count."""
        downed = [m.unique_address for m in self._sorted if m.status is _S.DOWN]
        return self._reachability.remove_observers(downed)

    def unreachable_members(self) -> tuple[Member, ...]:
        """Members some (non-downed) observer records as unreachable or terminated, sorted."""
        nodes = self.reachability_excluding_downed_observers().all_unreachable_or_terminated()
        return tuple(m for m in self._sorted if m.unique_address in nodes)

    def convergence(
        self, self_node: UniqueAddress, exiting_confirmed: Collection[UniqueAddress] = ()
    ) -> bool:
        """Whether this version has converged, as seen from ``self_node``.

        True when (1) every member some non-downed observer records as unreachable, other than
        ``self_node`` and the ``exiting_confirmed`` ones, is ``down`` or ``exiting``, and (2)
        every ``up`` or ``leaving`` member has seen this version (or is exiting-confirmed).
        ``joining`` members need not have seen it, so a joiner that never got its welcome
        cannot block the cluster.

        Args:
            self_node: the node asking (it never blocks its own convergence as unreachable).
            exiting_confirmed: members that confirmed their exit and may be skipped.
        """
        confirmed = frozenset(exiting_confirmed)
        reach = self.reachability_excluding_downed_observers()
        for node in reach.all_unreachable_or_terminated():
            if node == self_node or node in confirmed:
                continue
            member = self._members.get(node)
            if member is not None and member.status not in _SKIP_UNREACHABLE_STATUSES:
                return False
        return all(
            m.unique_address in self._seen or m.unique_address in confirmed
            for m in self._sorted
            if m.status in _CONVERGENCE_STATUSES
        )

    def leader(self, self_node: UniqueAddress) -> UniqueAddress | None:
        """The leader as ``self_node`` sees it, or ``None`` when there is no candidate.

        Candidates are the members that are not ``down`` and that no (non-downed) observer
        records as unreachable; ``self_node`` is always a candidate when it is a member. The
        leader is the first candidate in address order whose status is ``up`` or ``leaving``;
        when there is none (a fresh cluster), the first ``weakly_up``, else ``joining``, else
        ``exiting`` candidate. At convergence every node computes the same leader.
        """
        reach = self.reachability_excluding_downed_observers()
        candidates = [
            m
            for m in self._sorted
            if m.status is not _S.DOWN
            and (m.unique_address == self_node or reach.is_reachable(m.unique_address))
        ]
        for member in candidates:
            if member.status in _LEADER_STATUSES:
                return member.unique_address
        fallback = min(
            candidates,
            key=lambda m: (_FALLBACK_LEADER_RANK[m.status], m.unique_address),
            default=None,
        )
        return fallback.unique_address if fallback is not None else None

    # -- changing ----------------------------------------------------------------------------

    def _copy(self, **changes: Any) -> Gossip:
        fields: dict[str, Any] = {
            "members": self._sorted,
            "reachability": self._reachability,
            "seen": self._seen,
            "version": self._version,
            "tombstones": self._tombstones,
            "extensions": self._extensions,
        }
        fields.update(changes)
        return Gossip(**fields)

    def _changed(self, self_node: UniqueAddress, **changes: Any) -> Gossip:
        """A new version made by ``self_node``: counter incremented, seen by it alone."""
        version: VectorClock = changes.pop("version", self._version)
        changes.setdefault("seen", (self_node,))
        return self._copy(version=version.increment(self_node.key), **changes)

    def _with_member(self, member: Member) -> list[Member]:
        return [member if m.unique_address == member.unique_address else m for m in self._sorted]

    def with_seen(self, node: UniqueAddress) -> Gossip:
        """This version marked as seen by ``node`` too (no version change); idempotent."""
        if node in self._seen or node not in self._members:
            return self
        return self._copy(seen=self._seen | {node})

    def without_seen(self, node: UniqueAddress) -> Gossip:
        """This version with ``node``'s seen mark withdrawn (no version change); idempotent."""
        if node not in self._seen:
            return self
        return self._copy(seen=self._seen - {node})

    def only_seen(self, node: UniqueAddress) -> Gossip:
        """This version marked as seen by ``node`` alone (no version change)."""
        return self._copy(seen=(node,))

    def add_joining(self, member: Member, self_node: UniqueAddress) -> tuple[Gossip, JoinOutcome]:
        """Handle a join request from ``member`` (its status and up number are ignored).

        * A new address: the member is added as ``joining`` (`JoinOutcome.ADDED`).
        * The same unique address again: nothing changes (`JoinOutcome.ALREADY_MEMBER`).
        * The same address with another incarnation: the old incarnation is recorded as
          terminated by ``self_node`` and marked ``down``, so the leader removes it at the next
          convergence; the joiner must retry (`JoinOutcome.REPLACING`).
        * A tombstoned unique address (that very process was removed): refused
          (`JoinOutcome.REFUSED_REMOVED`); it must restart with a new incarnation.
        * ``self_node`` is not a member, or is ``down`` or ``exiting``: it cannot admit anyone
          (`JoinOutcome.NOT_ACCEPTING`); the joiner tries another seed. A node joins itself
          (``member`` is ``self_node``) to found a new cluster.
        """
        node = member.unique_address
        if node in self._tombstones:
            return self, JoinOutcome.REFUSED_REMOVED
        me = self._members.get(self_node)
        if node != self_node and (me is None or me.status in _SKIP_UNREACHABLE_STATUSES):
            return self, JoinOutcome.NOT_ACCEPTING
        if node in self._members:
            return self, JoinOutcome.ALREADY_MEMBER
        old = self.member_at(member.address)
        if old is not None:
            gossip = self
            if self_node != old.unique_address:
                reach = self._reachability.terminated(self_node, old.unique_address)
                if reach is not self._reachability:
                    gossip = self._changed(self_node, reachability=reach)
            return gossip.mark_down(old.unique_address, self_node), JoinOutcome.REPLACING
        joining = replace(member, status=_S.JOINING, up_number=0)
        return self._changed(self_node, members=[*self._sorted, joining]), JoinOutcome.ADDED

    def mark_leaving(self, node: UniqueAddress, self_node: UniqueAddress) -> Gossip:
        """``node`` (``joining``, ``weakly_up`` or ``up``) moves to ``leaving``; otherwise the
        state is unchanged (idempotent)."""
        member = self._members.get(node)
        if member is None or member.status not in (_S.JOINING, _S.WEAKLY_UP, _S.UP):
            return self
        return self._changed(self_node, members=self._with_member(member.with_status(_S.LEAVING)))

    def mark_down(self, node: UniqueAddress, self_node: UniqueAddress) -> Gossip:
        """``node`` moves to ``down`` (from any status); unknown or already down: unchanged.

        A downed node stops counting for convergence and leadership, and its observations are
        ignored; the leader removes it once it is unreachable and the state has converged.
        """
        member = self._members.get(node)
        if member is None or member.status is _S.DOWN:
            return self
        return self._changed(self_node, members=self._with_member(member.with_status(_S.DOWN)))

    def mark_unreachable(self, subject: UniqueAddress, self_node: UniqueAddress) -> Gossip:
        """``self_node``'s failure detector lost ``subject``; idempotent."""
        return self._observe(self_node, subject, ReachabilityStatus.UNREACHABLE)

    def mark_reachable(self, subject: UniqueAddress, self_node: UniqueAddress) -> Gossip:
        """``self_node`` hears from ``subject`` again; idempotent."""
        return self._observe(self_node, subject, ReachabilityStatus.REACHABLE)

    def _observe(
        self, observer: UniqueAddress, subject: UniqueAddress, status: ReachabilityStatus
    ) -> Gossip:
        if observer not in self._members or subject not in self._members:
            return self
        if status is ReachabilityStatus.UNREACHABLE:
            reach = self._reachability.unreachable(observer, subject)
        else:
            reach = self._reachability.reachable(observer, subject)
        if reach is self._reachability:
            return self
        return self._changed(observer, reachability=reach)

    def with_extension(self, key: str, value: Any, self_node: UniqueAddress) -> Gossip:
        """Set extension ``key`` to ``value`` (plain data, see `Extension`); a new version.

        Raises:
            ClusterError: ``value`` is not plain data.
        """
        try:
            clean = plain(value)
        except DecodeError as exc:
            raise ClusterError(f"extension {key!r}: {exc}") from exc
        current = self._extensions.get(key)
        if current is not None and current.value == clean:
            return self
        extensions = dict(self._extensions)
        extensions[key] = Extension((current.version if current else 0) + 1, clean)
        return self._changed(self_node, extensions=extensions)

    def remove_members(
        self, nodes: Iterable[UniqueAddress], self_node: UniqueAddress, now: float
    ) -> Gossip:
        """Drop ``nodes`` (tombstoned at wall-clock ``now``), pruning their clock entries and
        observations; used by `leader_actions`. Unknown nodes are ignored."""
        gone = frozenset(n for n in nodes if n in self._members)
        if not gone:
            return self
        tombstones = dict(self._tombstones)
        tombstones.update({n: Tombstone(now, self._version.get(n.key)) for n in gone})
        return self._changed(
            self_node,
            members=[m for m in self._sorted if m.unique_address not in gone],
            reachability=self._reachability.remove(gone),
            version=self._version.prune(n.key for n in gone),
            tombstones=tombstones,
        )

    def prune_tombstones(self, removed_before: float) -> Gossip:
        """Forget tombstones older than ``removed_before`` (wall-clock seconds).

        Local housekeeping without a version change (as Akka does after a day): a tombstone is
        only needed while old gossip naming the member may still circulate.
        """
        kept = {n: t for n, t in self._tombstones.items() if t.removed_at >= removed_before}
        if len(kept) == len(self._tombstones):
            return self
        return self._copy(tombstones=kept)

    def merge(self, other: Gossip) -> Gossip:
        """Combine two states; commutative, associative and idempotent.

        Tombstones are united and tombstoned members dropped; for a member on both sides the
        status with the higher precedence wins (equal statuses: the lower non-zero up number,
        that is the older); reachability rows by observer version; versions pointwise, without
        the entries of tombstoned nodes; extensions by version. The result is seen by the union
        of the seen sets of the sides whose version equals the merged version (so merging two
        concurrent states gives a state nobody has seen yet).
        """
        tombstones = dict(self._tombstones)
        for node, grave in other._tombstones.items():
            known = tombstones.get(node)
            if known is not None:
                grave = Tombstone(
                    max(known.removed_at, grave.removed_at), max(known.counter, grave.counter)
                )
            tombstones[node] = grave
        picked = dict(self._members)
        for node, theirs in other._members.items():
            mine = picked.get(node)
            picked[node] = theirs if mine is None else _pick_member(mine, theirs)
        members = [m for node, m in picked.items() if node not in tombstones]
        allowed = [m.unique_address for m in members]
        reach = self._reachability.merge(allowed, other._reachability)
        version = self._version.merge(other._version).prune(n.key for n in tombstones)
        seen: set[UniqueAddress] = set()
        for side in (self, other):
            if side._version == version:
                seen |= side._seen
        extensions = dict(self._extensions)
        for key, ext in other._extensions.items():
            mine_ext = extensions.get(key)
            if mine_ext is None or _extension_rank(ext) > _extension_rank(mine_ext):
                extensions[key] = ext
        return Gossip(members, reach, seen, version, tombstones, extensions)

    # -- value semantics ---------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Gossip):
            return NotImplemented
        return (
            self._members == other._members
            and self._reachability == other._reachability
            and self._seen == other._seen
            and self._version == other._version
            and self._tombstones == other._tombstones
            and self._extensions == other._extensions
        )

    __hash__ = None  # type: ignore[assignment]  # equal by content, not meant as a dict key

    def __repr__(self) -> str:
        members = ", ".join(f"{m.unique_address}={m.status.value}" for m in self._sorted)
        return f"Gossip(members=[{members}], version={self._version!r}, seen={len(self._seen)})"

    # -- wire --------------------------------------------------------------------------------

    def to_wire(self) -> list[Any]:
        """The state as plain lists, ints, floats, strings and bytes (for msgpack).

        Layout (`WIRE_FORMAT` 1)::

            [1, members, reachability, seen, version, tombstones, extensions]
            members      [[host, port, incarnation, node_id, status, [roles], up_number], ...]
            reachability [[observer_index, row_version, [[subject_index, status], ...]], ...]
            seen         [member_index, ...]
            version      [[node_key, counter], ...]
            tombstones   [[host, port, incarnation, removed_at, counter], ...]
            extensions   [[key, version, value], ...]

        Members are sorted by unique address and referred to by index; statuses are small
        integers. The size is linear in the number of members.
        """
        index = {m.unique_address: i for i, m in enumerate(self._sorted)}
        members = [
            [
                m.address.host,
                m.address.port,
                m.unique_address.incarnation,
                m.node_id,
                STATUS_CODES[m.status],
                sorted(m.roles),
                m.up_number,
            ]
            for m in self._sorted
        ]
        rows = dict(self._reachability.rows())
        reach = [
            [
                index[observer],
                row_version,
                sorted([index[s], REACH_CODES[st]] for s, st in rows.get(observer, {}).items()),
            ]
            for observer, row_version in sorted(
                self._reachability.versions.items(), key=lambda item: index[item[0]]
            )
        ]
        return [
            WIRE_FORMAT,
            members,
            reach,
            sorted(index[n] for n in self._seen),
            clock_to_wire(self._version),
            [
                [n.address.host, n.address.port, n.incarnation, t.removed_at, t.counter]
                for n, t in sorted(self._tombstones.items(), key=lambda item: item[0])
            ],
            [[k, e.version, e.value] for k, e in sorted(self._extensions.items())],
        ]

    @classmethod
    def from_wire(cls, data: object) -> Gossip:
        """Rebuild a state from `to_wire` output (lists may arrive as tuples).

        Raises:
            DecodeError: anything that is not a well-formed `WIRE_FORMAT` 1 state: wrong shape
                or type, an unknown status code, an index out of range, a duplicate member, a
                tombstoned member, or another wire format version. Nothing else escapes.
        """
        try:
            parts = decode_gossip(data)
            return cls(
                parts.members,
                Reachability(parts.rows, parts.row_versions),
                parts.seen,
                parts.version,
                {node: Tombstone(at, counter) for node, at, counter in parts.tombstones},
                {key: Extension(version, value) for key, version, value in parts.extensions},
            )
        except DecodeError:
            raise
        except (CastyError, ValueError, TypeError) as exc:
            raise DecodeError(f"invalid gossip: {exc}") from exc


class JoinOutcome(enum.Enum):
    """What `Gossip.add_joining` did with a join request."""

    ADDED = "added"
    """The node is now a ``joining`` member; send it the new state (its welcome)."""
    ALREADY_MEMBER = "already_member"
    """The node is already a member (a repeated join); send it the current state."""
    REPLACING = "replacing"
    """An older incarnation at the same address is being downed; the joiner must retry."""
    REFUSED_REMOVED = "refused_removed"
    """This very incarnation was removed; it must restart with a new incarnation."""
    NOT_ACCEPTING = "not_accepting"
    """This node is not a member in good standing (down, exiting, or not joined yet)."""


# -- leader actions ----------------------------------------------------------------------------


def leader_actions(
    gossip: Gossip,
    self_node: UniqueAddress,
    *,
    exiting_confirmed: Collection[UniqueAddress] = (),
    now: float | None = None,
) -> tuple[Gossip, list[ClusterDomainEvent]]:
    """The leader's moves, made only at convergence: the new state and its member events.

    When ``self_node`` is the leader and the state has converged, in one new version:

    * ``joining`` and ``weakly_up`` members move to ``up``, each with the next up number (in
      address order), so the oldest member keeps the smallest number;
    * ``leaving`` members move to ``exiting``;
    * members that were already ``exiting`` are removed when they are unreachable, in
      ``exiting_confirmed``, or have seen this version (a node that hands its work off before
      leaving withholds its seen mark until it is done, as Akka does);
    * ``down`` members are removed once unreachable (a downed node that is still alive learns
      of its status by gossip, shuts down, and is then removed).

    The leader never removes itself unless it is the last member: an exiting leader hands the
    lead over (``exiting`` members are leaders only when nobody else can be) and is removed by
    its successor once it is gone.

    Removed members are dropped, tombstoned at ``now``, and pruned from the version and the
    reachability table. Otherwise (not the leader, no convergence, nothing to do) the same
    state and no events are returned. The wiring should send the new state once to each
    removed node so that it learns it was removed and stops.

    Args:
        gossip: the current state.
        self_node: this node.
        exiting_confirmed: exiting members that confirmed their exit.
        now: wall-clock seconds for the tombstones; ``time.time()`` when ``None``.

    Returns:
        The new state, and the events `casty.cluster.events.diff_events` gives for the change
        (use one or the other, not both, so each event is published once).
    """
    confirmed = frozenset(exiting_confirmed)
    if gossip.leader(self_node) != self_node or not gossip.convergence(self_node, confirmed):
        return gossip, []
    unreachable = gossip.reachability_excluding_downed_observers().all_unreachable_or_terminated()
    alone = len(gossip.members) == 1

    def removable(m: Member) -> bool:
        node = m.unique_address
        if node == self_node and not alone:
            # Removing itself would prune the very clock entry that makes the leader's new
            # state newer than everyone else's; its successor removes it instead.
            return False
        if m.status is _S.DOWN:
            return node in unreachable
        if m.status is _S.EXITING:
            return node in unreachable or node in confirmed or gossip.seen_by(node)
        return False

    removed = [m.unique_address for m in gossip.members if removable(m)]
    up_number = max((m.up_number for m in gossip.members), default=0)
    members: list[Member] = []
    changed = False
    for member in gossip.members:
        if member.status in (_S.JOINING, _S.WEAKLY_UP):
            up_number += 1
            member = replace(member.with_status(_S.UP), up_number=up_number)
            changed = True
        elif member.status is _S.LEAVING:
            member = member.with_status(_S.EXITING)
            changed = True
        members.append(member)
    if not changed and not removed:
        return gossip, []
    new = gossip._changed(self_node, members=members) if changed else gossip
    if removed:
        new = new.remove_members(removed, self_node, time.time() if now is None else now)
    return new, diff_events(gossip, new, self_node)


# -- receiving gossip --------------------------------------------------------------------------


class GossipOutcome(enum.Enum):
    """How `receive_gossip` treated a received state."""

    IGNORED = "ignored"
    """Not for us: it does not name this node, or its sender is not a member we know."""
    OLDER = "older"
    """The received state is older than ours; we keep ours (and tell the sender)."""
    NEWER = "newer"
    """The received state is newer; we adopt it."""
    SAME = "same"
    """Same version; the seen sets are combined."""
    MERGED = "merged"
    """Concurrent versions; we adopt their merge."""
    SELF_REMOVED = "self_removed"
    """The received state says this node was removed: stop serving and shut down."""


@dataclass(frozen=True, slots=True)
class ReceivedGossip:
    """What `receive_gossip` decided.

    Attributes:
        gossip: the state to hold from now on (the local one when ignored or older).
        outcome: how the received state was treated.
        talkback: whether to send our (new) state back to the sender, which has not seen it.
    """

    gossip: Gossip
    outcome: GossipOutcome
    talkback: bool


def receive_gossip(
    local: Gossip,
    remote: Gossip,
    self_node: UniqueAddress,
    *,
    from_node: UniqueAddress | None = None,
    mark_seen: bool = True,
) -> ReceivedGossip:
    """Combine a state received from a peer with ours.

    Args:
        local: the state this node holds (empty before it was welcomed).
        remote: the state received.
        self_node: this node.
        from_node: the sender; when this node is a member, a state from a node that is not a
            member of ``local`` is ignored (a stranger cannot inject state).
        mark_seen: mark the resulting state as seen by this node (the wiring passes ``False``
            while this node hands its work off before leaving, which delays its removal).

    Returns:
        The state to hold, how ``remote`` was treated, and whether to talk back. A state that
        does not contain this node is ignored; one whose tombstones name this node gives
        `GossipOutcome.SELF_REMOVED`. A merge that carries changes a removed node made after
        its removal (its clock entry is above its `Tombstone.counter`) gets a new version of
        this node, since the entry that named those changes is pruned.
    """
    if remote.is_removed(self_node):
        return ReceivedGossip(local, GossipOutcome.SELF_REMOVED, False)
    known_sender = (
        from_node is None or not local.has_member(self_node) or local.has_member(from_node)
    )
    if not remote.has_member(self_node) or not known_sender:
        return ReceivedGossip(local, GossipOutcome.IGNORED, False)
    order = remote.version.compare(local.version)
    if order is Ordering.BEFORE:
        return ReceivedGossip(local, GossipOutcome.OLDER, True)
    if order is Ordering.SAME:
        winner = local if remote.seen <= local.seen else local._copy(seen=local.seen | remote.seen)
        outcome = GossipOutcome.SAME
    elif order is Ordering.AFTER:
        winner, outcome = remote, GossipOutcome.NEWER
    else:
        winner, outcome = local.merge(remote), GossipOutcome.MERGED
        if _unaccounted(local, winner) or _unaccounted(remote, winner):
            # Changes a removed node made after its removal survive the merge, but the clock
            # entry that named them was pruned: the result needs a version of its own, or it
            # would share its version with a state that lacks those changes.
            winner = winner._changed(self_node, seen=())
    talkback = not remote.seen_by(self_node) or outcome is GossipOutcome.MERGED
    if mark_seen:
        winner = winner.with_seen(self_node)
    return ReceivedGossip(winner, outcome, talkback)


def select_gossip_targets(
    gossip: Gossip,
    self_node: UniqueAddress,
    k: int = 1,
    rng: random.Random | None = None,
    *,
    different_view_probability: float = 0.8,
) -> list[UniqueAddress]:
    """Pick up to ``k`` distinct peers to gossip with this round.

    Candidates are the members other than ``self_node`` that ``self_node`` itself does not
    record as unreachable (a node it lost is probed by heartbeats instead). With probability
    ``different_view_probability`` the members that have not seen our version are preferred,
    so news spreads fast while peers that are up to date get only cheap status digests.

    Args:
        gossip: the current state.
        self_node: this node.
        k: how many peers at most; 0 or less gives none.
        rng: the random source (inject a seeded one in tests).
        different_view_probability: in ``[0, 1]``; Akka's default is 0.8.
    """
    rng = rng if rng is not None else random.Random()
    candidates = [
        m.unique_address
        for m in gossip.members
        if m.unique_address != self_node
        and gossip.reachability.is_reachable_by(self_node, m.unique_address)
    ]
    if k <= 0 or not candidates:
        return []
    chosen: list[UniqueAddress] = []
    unseen = [n for n in candidates if not gossip.seen_by(n)]
    if unseen and rng.random() < different_view_probability:
        chosen = rng.sample(unseen, min(k, len(unseen)))
    rest = [n for n in candidates if n not in chosen]
    chosen += rng.sample(rest, min(k - len(chosen), len(rest)))
    return chosen


# -- status digests ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GossipStatus:
    """A cheap "I hold version V, seen by this set" message (Akka's GossipStatus).

    Send it instead of the full state to a peer that has seen our version (see
    `Gossip.seen_by`); at rest this is all a round sends, linear in the number of version
    entries, and the peer answers nothing when it holds the same.

    Attributes:
        from_node: the sender.
        version: the sender's version.
        seen_digest: `Gossip.seen_digest` of the sender's state.
    """

    from_node: UniqueAddress
    version: VectorClock
    seen_digest: bytes

    @classmethod
    def of(cls, gossip: Gossip, self_node: UniqueAddress) -> GossipStatus:
        """The status of ``gossip`` as sent by ``self_node``."""
        return cls(self_node, gossip.version, gossip.seen_digest())

    def to_wire(self) -> list[Any]:
        """``[1, host, port, incarnation, [[node_key, counter], ...], seen_digest]``."""
        node = self.from_node
        return [
            WIRE_FORMAT,
            node.address.host,
            node.address.port,
            node.incarnation,
            clock_to_wire(self.version),
            self.seen_digest,
        ]

    @classmethod
    def from_wire(cls, data: object) -> GossipStatus:
        """Rebuild a status from `to_wire` output.

        Raises:
            DecodeError: malformed data or another wire format version.
        """
        try:
            fields = seq(data, "gossip status", 6)
            check_format(fields[0])
            node = unique_address(fields[1:4], "gossip status sender")
            clock = clock_from_wire(fields[4])
            digest = fields[5]
            if not isinstance(digest, bytes) or len(digest) != 16:
                raise DecodeError("gossip status: seen digest must be 16 bytes")
            return cls(node, clock, digest)
        except DecodeError:
            raise
        except (CastyError, ValueError, TypeError) as exc:
            raise DecodeError(f"invalid gossip status: {exc}") from exc


class StatusAction(enum.Enum):
    """What to answer a `GossipStatus` with."""

    NONE = "none"
    """Same version and seen set: nothing to do (the state at rest)."""
    SEND_GOSSIP = "send_gossip"
    """Ours is newer, concurrent, or seen by others: send our full state."""
    SEND_STATUS = "send_status"
    """Theirs is newer: send our status, so the peer sends its full state."""


def status_action(local: Gossip, status: GossipStatus) -> StatusAction:
    """The answer to a received `GossipStatus`; a sender that is not a member gets none."""
    if not local.has_member(status.from_node):
        return StatusAction.NONE
    order = status.version.compare(local.version)
    if order is Ordering.SAME:
        if status.seen_digest == local.seen_digest():
            return StatusAction.NONE
        return StatusAction.SEND_GOSSIP
    if order is Ordering.AFTER:
        return StatusAction.SEND_STATUS
    return StatusAction.SEND_GOSSIP


# -- private helpers ---------------------------------------------------------------------------


def _unaccounted(side: Gossip, merged: Gossip) -> bool:
    """Whether ``side`` carries changes by a node ``merged`` tombstones, made after its removal."""
    return any(
        side.version.get(node.key) > grave.counter for node, grave in merged.tombstones.items()
    )


def _pick_member(a: Member, b: Member) -> Member:
    """The member two states disagree on, settled the same way whatever the argument order."""
    return max(a, b, key=_member_rank)


def _member_rank(m: Member) -> tuple[int, float, str, tuple[str, ...]]:
    # Higher status first; then the older up number (negated so max picks it); the rest only
    # makes the choice total for states that no correct node would produce.
    return (
        m.status.precedence,
        -(m.up_number or math.inf),
        m.node_id,
        tuple(sorted(m.roles)),
    )


def _extension_rank(ext: Extension) -> tuple[int, str]:
    return (ext.version, repr(ext.value))
