"""The split brain resolver: which side of a partition survives, decided without talking.

When members become unreachable, nobody can tell a crashed node from a partitioned one, and the
leader cannot make progress (unreachable members block convergence). After the picture has been
stable for ``stable_after`` seconds, each side runs the same deterministic strategy on what it
sees and reaches complementary decisions: one side downs the other, and the other downs itself
and stops serving. These are the strategies of Akka's split brain resolver as its documentation
describes them:

* `KeepMajority` (the default): the side with more members survives; on a tie, the side with
  the member of lowest address.
* `StaticQuorum`: a side survives when it has at least ``quorum_size`` members; if the cluster
  grew beyond ``2 * quorum_size - 1`` members, everyone is downed (the quorum no longer
  guarantees a single survivor).
* `KeepOldest`: the side with the oldest member survives; with ``down_if_alone``, an oldest
  member cut off from everyone else downs itself instead, and the others continue.
* `DownAll`: every member is downed (for clusters that restart as a whole).

Counting uses the ``up`` and ``leaving`` members (with the strategy's role, when one is set);
``joining`` and ``weakly_up`` members do not count, and do not reset the stability timer, but
are downed with the side they are on. ``exiting`` and ``down`` members are already on their way
out and are ignored.

*Indirectly connected* nodes (those an observer lost although they are still in contact with
part of the cluster: an observer that is itself unreachable, or an unreachable node that has
seen the current state) are downed in addition, and the strategy decides among the rest.
"""

from __future__ import annotations

import enum
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import final

from casty.cluster.gossip import Gossip
from casty.cluster.member import Member, MemberStatus, UniqueAddress, oldest
from casty.errors import ConfigurationError

__all__ = [
    "DEFAULT_STABLE_AFTER",
    "Decision",
    "DecisionKind",
    "DownAll",
    "DowningStrategy",
    "DowningView",
    "KeepMajority",
    "KeepOldest",
    "ResolverStatistics",
    "SplitBrainResolver",
    "StaticQuorum",
    "decide",
]

#: Seconds the membership and reachability must stay unchanged before a decision. With the
#: failure detector's defaults a crash is detected 1.7-2.2 s after it happens; downing follows
#: 1 s later, and the leader removes the node a few gossip rounds after that (well within 5 s).
DEFAULT_STABLE_AFTER = 1.0

_S = MemberStatus
_COUNTED = frozenset({_S.UP, _S.LEAVING})
_IGNORED = frozenset({_S.DOWN, _S.EXITING, _S.REMOVED})
_UNCOUNTED = frozenset({_S.JOINING, _S.WEAKLY_UP})


@dataclass(frozen=True, slots=True)
class DowningView:
    """What one node knows when it decides.

    Attributes:
        self_node: the deciding node.
        members: every member of its state, in any status.
        unreachable: members some (non-downed) observer records as unreachable or terminated.
        indirectly_connected: unreachable members still in contact with part of the cluster,
            and the observers that lost them (see the module docstring).

    Both sets are limited on construction to the members that are neither ``down`` nor
    ``exiting``.
    """

    self_node: UniqueAddress
    members: tuple[Member, ...]
    unreachable: frozenset[UniqueAddress]
    indirectly_connected: frozenset[UniqueAddress] = frozenset()

    def __post_init__(self) -> None:
        # Only members that take part matter: down and exiting ones are already on their way out.
        active = frozenset(m.unique_address for m in self.members if m.status not in _IGNORED)
        object.__setattr__(self, "unreachable", frozenset(self.unreachable) & active)
        object.__setattr__(
            self, "indirectly_connected", frozenset(self.indirectly_connected) & active
        )

    @classmethod
    def from_gossip(cls, gossip: Gossip, self_node: UniqueAddress) -> DowningView:
        """The view of ``self_node`` holding ``gossip``."""
        reach = gossip.reachability_excluding_downed_observers()
        unreachable = reach.all_unreachable_or_terminated()
        indirect = set(reach.observers() & unreachable)
        for observer, row in reach.rows():
            for subject in row:
                if gossip.seen_by(subject):
                    indirect.update((observer, subject))
        return cls(self_node, gossip.members, unreachable, frozenset(indirect))

    def active(self) -> list[Member]:
        """Members that take part: neither ``down`` nor ``exiting``."""
        return [m for m in self.members if m.status not in _IGNORED]

    def counted(self, role: str | None) -> list[Member]:
        """``up`` and ``leaving`` members with ``role`` (all of them when ``None``)."""
        return [m for m in self.members if m.status in _COUNTED and m.has_role(role)]

    def is_reachable(self, member: Member) -> bool:
        """Whether ``member`` is on the deciding node's side."""
        return member.unique_address not in self.unreachable

    def without(self, nodes: frozenset[UniqueAddress]) -> DowningView:
        """The view with ``nodes`` taken out entirely."""
        return DowningView(
            self.self_node,
            tuple(m for m in self.members if m.unique_address not in nodes),
            self.unreachable - nodes,
            self.indirectly_connected - nodes,
        )


class DecisionKind(enum.Enum):
    """Which members a decision downs."""

    DOWN_UNREACHABLE = "down_unreachable"
    """Our side survives: down the unreachable members."""
    DOWN_REACHABLE = "down_reachable"
    """The other side survives: down our own side, this node included."""
    DOWN_ALL = "down_all"
    """Nobody survives."""
    DOWN_INDIRECTLY_CONNECTED = "down_indirectly_connected"
    """Only the indirectly connected members are downed."""


@dataclass(frozen=True, slots=True)
class Decision:
    """A split brain resolver decision.

    The leader marks every member of ``down`` as down in the gossip (`Gossip.mark_down`).
    Every node whose decision has ``down_self`` stops serving at once, without waiting for the
    gossip, so the losing side never overlaps with the surviving one.

    Attributes:
        kind: what the strategy decided.
        down: the members to down.
        down_self: whether the deciding node is among them.
    """

    kind: DecisionKind
    down: frozenset[UniqueAddress]
    down_self: bool


class DowningStrategy(ABC):
    """Decides which side of a partition survives.

    Implementing: `decide` is required. It receives a view without indirectly connected
    members, with at least one unreachable member, and must be deterministic: both sides run
    it on complementary views and must reach complementary answers.
    """

    @abstractmethod
    def decide(self, view: DowningView) -> DecisionKind:
        """`DecisionKind.DOWN_UNREACHABLE`, `DOWN_REACHABLE` or `DOWN_ALL` for ``view``."""


def _check_role(role: str | None) -> str | None:
    if role is not None and (not isinstance(role, str) or not role):
        raise ConfigurationError(f"role must be a non-empty string or None, got {role!r}")
    return role


@final
class KeepMajority(DowningStrategy):
    """Keep the side with more counted members; on a tie, the side of the lowest address.

    Args:
        role: count only members with this role (``None``: all).

    Raises:
        ConfigurationError: ``role`` is an empty string or not a string.
    """

    def __init__(self, role: str | None = None) -> None:
        self.role = _check_role(role)

    def decide(self, view: DowningView) -> DecisionKind:
        counted = (
            view.counted(self.role)
            or [m for m in view.active() if m.has_role(self.role)]
            or view.active()
        )
        ours = sum(1 for m in counted if view.is_reachable(m))
        theirs = len(counted) - ours
        if ours != theirs:
            return DecisionKind.DOWN_UNREACHABLE if ours > theirs else DecisionKind.DOWN_REACHABLE
        if not counted:
            return DecisionKind.DOWN_ALL
        lowest = min(counted, key=lambda m: m.unique_address)
        if view.is_reachable(lowest):
            return DecisionKind.DOWN_UNREACHABLE
        return DecisionKind.DOWN_REACHABLE

    def __repr__(self) -> str:
        return f"KeepMajority(role={self.role!r})"


@final
class StaticQuorum(DowningStrategy):
    """Keep a side with at least ``quorum_size`` counted members; down a smaller one.

    Choose ``quorum_size`` above half of the cluster's intended size. When more than
    ``2 * quorum_size - 1`` counted members exist, two sides could both reach the quorum, so
    every member is downed instead.

    Args:
        quorum_size: the minimum number of counted members a surviving side needs; >= 1.
        role: count only members with this role (``None``: all).

    Raises:
        ConfigurationError: ``quorum_size`` is not a positive integer, or ``role`` is invalid.
    """

    def __init__(self, quorum_size: int, role: str | None = None) -> None:
        if isinstance(quorum_size, bool) or not isinstance(quorum_size, int) or quorum_size < 1:
            raise ConfigurationError(f"quorum_size must be an int >= 1, got {quorum_size!r}")
        self.quorum_size = quorum_size
        self.role = _check_role(role)

    def decide(self, view: DowningView) -> DecisionKind:
        counted = view.counted(self.role)
        if len(counted) > 2 * self.quorum_size - 1:
            return DecisionKind.DOWN_ALL
        ours = sum(1 for m in counted if view.is_reachable(m))
        if ours < self.quorum_size:
            return DecisionKind.DOWN_REACHABLE
        return DecisionKind.DOWN_UNREACHABLE

    def __repr__(self) -> str:
        return f"StaticQuorum(quorum_size={self.quorum_size}, role={self.role!r})"


@final
class KeepOldest(DowningStrategy):
    """Keep the side with the oldest counted member (the one with the smallest up number).

    With ``down_if_alone`` (the default), when the oldest member is the only counted member
    on its side and the other side is not empty, the oldest is downed and the others continue,
    so a crashed oldest node does not take the cluster down with it. Without it, the others
    down themselves when the oldest is lost. Note that in a two-node cluster with
    ``down_if_alone``, the oldest downs itself when it loses the other node.

    Args:
        down_if_alone: see above.
        role: find the oldest among members with this role (``None``: all).

    Raises:
        ConfigurationError: ``role`` is invalid.
    """

    def __init__(self, down_if_alone: bool = True, role: str | None = None) -> None:
        self.down_if_alone = bool(down_if_alone)
        self.role = _check_role(role)

    def decide(self, view: DowningView) -> DecisionKind:
        eldest = oldest(view.counted(self.role)) or oldest(view.active())
        if eldest is None:
            return DecisionKind.DOWN_ALL
        eldest_reachable = view.is_reachable(eldest)
        everyone = view.counted(None)
        same_side = sum(1 for m in everyone if view.is_reachable(m) == eldest_reachable)
        alone = same_side == 1 and len(everyone) > 1
        keep_ours = not eldest_reachable if self.down_if_alone and alone else eldest_reachable
        return DecisionKind.DOWN_UNREACHABLE if keep_ours else DecisionKind.DOWN_REACHABLE

    def __repr__(self) -> str:
        return f"KeepOldest(down_if_alone={self.down_if_alone}, role={self.role!r})"


@final
class DownAll(DowningStrategy):
    """Down every member whenever any member is unreachable."""

    def decide(self, view: DowningView) -> DecisionKind:
        return DecisionKind.DOWN_ALL

    def __repr__(self) -> str:
        return "DownAll()"


def _down_set(view: DowningView, kind: DecisionKind) -> frozenset[UniqueAddress]:
    active = view.active()
    if kind is DecisionKind.DOWN_UNREACHABLE:
        return frozenset(m.unique_address for m in active if not view.is_reachable(m))
    if kind is DecisionKind.DOWN_REACHABLE:
        return frozenset(m.unique_address for m in active if view.is_reachable(m))
    if kind is DecisionKind.DOWN_ALL:
        return frozenset(m.unique_address for m in active)
    return frozenset()


def decide(strategy: DowningStrategy, view: DowningView) -> Decision | None:
    """What ``strategy`` decides for ``view`` right now, or ``None`` when all is reachable.

    Indirectly connected members are downed; the strategy decides among the others.
    """
    indirect = view.indirectly_connected
    if not view.unreachable and not indirect:
        return None
    clean = view.without(indirect)
    if clean.unreachable:
        kind = strategy.decide(clean)
        down = _down_set(clean, kind) | indirect
    else:
        kind, down = DecisionKind.DOWN_INDIRECTLY_CONNECTED, indirect
    return Decision(kind, down, view.self_node in down)


@dataclass(frozen=True, slots=True)
class ResolverStatistics:
    """A snapshot of a `SplitBrainResolver`.

    Attributes:
        stable_for: seconds since the membership or reachability last changed.
        unstable_for: seconds since members first became unreachable without a decision
            (0.0 when all is reachable).
        decisions: decisions returned so far.
    """

    stable_for: float
    unstable_for: float
    decisions: int


@final
class SplitBrainResolver:
    """The clock-driven state machine around a `DowningStrategy`.

    Call `update` with the node's `DowningView` after every state change and `decide`
    periodically (for example every gossip round). A decision is returned once the view has
    had unreachable or indirectly connected members and been unchanged for ``stable_after``
    seconds; the timer then restarts, so a decision that was not carried out is repeated after
    another stable period. Changes of ``joining`` and ``weakly_up`` members do not count as
    changes.

    Args:
        strategy: defaults to `KeepMajority`.
        stable_after: seconds of stability before deciding; > 0.
        down_all_when_unstable: when the view keeps changing so that no stable period comes,
            down everyone after ``stable_after`` plus this many seconds of instability.
            ``True`` (the default) derives it as in Akka: three quarters of ``stable_after``
            but at least 4 s; ``False`` disables it; a number sets it (seconds, > 0).
        clock: monotonic seconds.

    Raises:
        ConfigurationError: a parameter is out of its range.
    """

    __slots__ = (
        "_clock",
        "_decisions",
        "_last_change",
        "_signature",
        "_unstable_after",
        "_unstable_since",
        "_view",
        "stable_after",
        "strategy",
    )

    def __init__(
        self,
        strategy: DowningStrategy | None = None,
        *,
        stable_after: float = DEFAULT_STABLE_AFTER,
        down_all_when_unstable: float | bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not stable_after > 0:
            raise ConfigurationError(f"stable_after must be > 0 s, got {stable_after!r}")
        if down_all_when_unstable is True:
            unstable_after: float | None = max(4.0, 0.75 * stable_after)
        elif down_all_when_unstable is False:
            unstable_after = None
        elif down_all_when_unstable > 0:
            unstable_after = float(down_all_when_unstable)
        else:
            raise ConfigurationError(
                f"down_all_when_unstable must be a bool or > 0 s, got {down_all_when_unstable!r}"
            )
        self.strategy = strategy if strategy is not None else KeepMajority()
        self.stable_after = float(stable_after)
        self._unstable_after = unstable_after
        self._clock = clock
        self._view: DowningView | None = None
        self._signature: object = None
        self._last_change = clock()
        self._unstable_since: float | None = None
        self._decisions = 0

    def update(self, view: DowningView) -> None:
        """Adopt the node's current view; restarts the stability timer if it changed."""
        now = self._clock()
        counted = [m for m in view.members if m.status not in _UNCOUNTED]
        signature = (
            frozenset((m.unique_address, m.status) for m in counted),
            view.unreachable & {m.unique_address for m in counted},
            view.indirectly_connected,
        )
        if signature != self._signature:
            self._signature = signature
            self._last_change = now
        if _has_problem(view):
            if self._unstable_since is None:
                self._unstable_since = now
        else:
            self._unstable_since = None
        self._view = view

    def decide(self) -> Decision | None:
        """The decision to carry out now, or ``None`` (all reachable, or not stable yet, or
        this node is itself down or exiting)."""
        view = self._view
        if view is None or not _has_problem(view):
            return None
        me = next((m for m in view.members if m.unique_address == view.self_node), None)
        if me is None or me.status in _IGNORED:
            return None
        now = self._clock()
        decision: Decision | None = None
        if now - self._last_change >= self.stable_after:
            decision = decide(self.strategy, view)
        elif (
            self._unstable_after is not None
            and self._unstable_since is not None
            and now - self._unstable_since >= self.stable_after + self._unstable_after
        ):
            down = _down_set(view, DecisionKind.DOWN_ALL)
            decision = Decision(DecisionKind.DOWN_ALL, down, view.self_node in down)
        if decision is not None:
            self._decisions += 1
            self._last_change = now
            self._unstable_since = now
        return decision

    def statistics(self) -> ResolverStatistics:
        """Timers and the number of decisions so far."""
        now = self._clock()
        unstable = now - self._unstable_since if self._unstable_since is not None else 0.0
        return ResolverStatistics(now - self._last_change, unstable, self._decisions)


def _has_problem(view: DowningView) -> bool:
    return bool(view.unreachable or view.indirectly_connected)
