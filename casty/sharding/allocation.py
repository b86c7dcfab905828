"""Where shards go: the pluggable allocation strategy, least-shards by default, role filtering.

A strategy is pure: it looks at the current allocation (region to the shards it hosts) and
answers. Regions are opaque hashable keys (the coordinator uses region address strings). The
coordinator calls `ShardAllocationStrategy.allocate_shard` when a shard without a home is asked
for, and `ShardAllocationStrategy.rebalance` periodically; each shard it returns is handed off
and then allocated anew with `allocate_shard`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Hashable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any, Generic, TypeVar, final

from casty.errors import ConfigurationError

__all__ = ["LeastShardAllocationStrategy", "RoleFilter", "ShardAllocationStrategy"]

R = TypeVar("R", bound=Hashable)


class ShardAllocationStrategy(ABC, Generic[R]):
    """Decides which region hosts a shard, and which shards move to even out the load.

    Implementing: `allocate_shard` and `rebalance` are required. Both are called from the
    coordinator only, one call at a time, and must not block or do I/O. A strategy may keep
    state between calls (for example to pace rebalances), but the coordinator may be rebuilt on
    another node with a fresh instance, so the answer should follow from the arguments.
    """

    @abstractmethod
    def allocate_shard(
        self, requester: R, shard_id: int, current: Mapping[R, AbstractSet[int]]
    ) -> R | None:
        """The region that should host ``shard_id``, which has no home now.

        Args:
            requester: the region (or proxy) that asked for the shard's home; it may be
                absent from ``current`` (a proxy, or a region on a node without the role).
            shard_id: the shard to place.
            current: every region that may host shards, with the shards it hosts (an empty set
                for a region without shards). Shards in handoff still count for their owner.

        Returns:
            A key of ``current``, or None when no region is eligible (the coordinator keeps
            the request until a region registers).
        """

    @abstractmethod
    def rebalance(
        self, current: Mapping[R, AbstractSet[int]], in_progress: AbstractSet[int]
    ) -> set[int]:
        """The shards to move in this round (possibly none).

        Args:
            current: as for `allocate_shard`.
            in_progress: shards whose handoff has begun and not completed.

        Returns:
            Shards hosted in ``current`` and not in ``in_progress``; the coordinator hands each
            off and allocates it again.
        """


@final
class LeastShardAllocationStrategy(ShardAllocationStrategy[R]):
    """New shards go to the region with the fewest; rebalance moves the excess, in steps.

    The shape of Akka's newer least-shard strategy (as its documentation describes it): with
    ``S`` shards over ``N`` regions the optimal count of a region is ``floor(S/N)`` or
    ``ceil(S/N)``. A rebalance round first takes shards from the regions above ``ceil(S/N)``,
    always from the most loaded region next; when none is above it but some region is below
    ``floor(S/N)``, it takes one shard from each region at ``ceil(S/N)``, as many as the regions
    below need. A round moves at most ``max(1, min(rebalance_absolute_limit,
    int(rebalance_relative_limit * S)))`` shards, and no round starts while a previous one is in
    progress, so a newcomer fills up in bounded steps. Once every region holds ``floor`` or
    ``ceil`` shards, nothing moves.

    Ties (equal counts) are broken by ``tie_break(region)``, ascending, so the same inputs give
    the same answer on every node. The default key is `str`; the coordinator may pass a key that
    orders regions by member age. Within a region, the lowest shard ids move first.

    Args:
        rebalance_absolute_limit: at most this many shards per round, >= 1 (default 20).
        rebalance_relative_limit: at most this fraction of all shards per round, in (0, 1]
            (default 0.1).
        tie_break: the ordering key among regions with equal counts.

    Raises:
        ConfigurationError: a limit is out of range.
    """

    def __init__(
        self,
        *,
        rebalance_absolute_limit: int = 20,
        rebalance_relative_limit: float = 0.1,
        tie_break: Callable[[R], Any] = str,
    ) -> None:
        if type(rebalance_absolute_limit) is not int or rebalance_absolute_limit < 1:
            raise ConfigurationError(
                f"rebalance_absolute_limit must be an int >= 1, got {rebalance_absolute_limit!r}"
            )
        relative_ok = isinstance(rebalance_relative_limit, int | float)
        if not relative_ok or not 0.0 < rebalance_relative_limit <= 1.0:
            raise ConfigurationError(
                f"rebalance_relative_limit must be in (0, 1], got {rebalance_relative_limit!r}"
            )
        self._absolute_limit = rebalance_absolute_limit
        self._relative_limit = float(rebalance_relative_limit)
        self._tie_break = tie_break

    def allocate_shard(
        self, requester: R, shard_id: int, current: Mapping[R, AbstractSet[int]]
    ) -> R | None:
        """The region with the fewest shards (ties: lowest ``tie_break``); None if none."""
        if not current:
            return None
        return min(current, key=lambda region: (len(current[region]), self._tie_break(region)))

    def rebalance(
        self, current: Mapping[R, AbstractSet[int]], in_progress: AbstractSet[int]
    ) -> set[int]:
        """Shards to move this round, as the class docstring describes; none while one runs."""
        if in_progress or len(current) < 2:
            return set()
        total = sum(len(shards) for shards in current.values())
        floor_optimal, remainder = divmod(total, len(current))
        ceil_optimal = floor_optimal + (1 if remainder else 0)
        limit = max(1, min(self._absolute_limit, int(self._relative_limit * total)))
        # Each region's shards, lowest first; we pop from the end of the reversed list.
        queues = {region: sorted(shards, reverse=True) for region, shards in current.items()}
        by_load = sorted(
            current, key=lambda region: (-len(current[region]), self._tie_break(region))
        )
        chosen: set[int] = set()
        if len(current[by_load[0]]) > ceil_optimal:
            # Phase 1: drain the excess above ceil, most loaded region first each time.
            counts = {region: len(current[region]) for region in current}
            while len(chosen) < limit:
                region = min(counts, key=lambda r: (-counts[r], self._tie_break(r)))
                if counts[region] <= ceil_optimal:
                    break
                chosen.add(queues[region].pop())
                counts[region] -= 1
            return chosen
        # Phase 2: nobody is above ceil; fill regions below floor, one shard per full region.
        needed = sum(max(0, floor_optimal - len(shards)) for shards in current.values())
        donors = [region for region in by_load if len(current[region]) > floor_optimal]
        for region in donors[: min(needed, limit)]:
            chosen.add(queues[region].pop())
        return chosen


@final
class RoleFilter(ShardAllocationStrategy[R]):
    """Wraps a strategy so that only regions whose node has every role in ``roles`` host shards.

    Regions lacking a role are hidden from the wrapped strategy, in both allocation and
    rebalance (roles are fixed when a node starts, so such regions never held shards of this
    type). With no eligible region, `allocate_shard` returns None.

    Args:
        inner: the strategy that places shards among eligible regions.
        roles: the roles a region's node must all have; empty means every region.
        region_roles: the roles of a region's node (from its `RegisterRegion`).
    """

    def __init__(
        self,
        inner: ShardAllocationStrategy[R],
        *,
        roles: Collection[str],
        region_roles: Callable[[R], AbstractSet[str]],
    ) -> None:
        self._inner = inner
        self._roles = frozenset(roles)
        self._region_roles = region_roles

    def _eligible(self, current: Mapping[R, AbstractSet[int]]) -> dict[R, AbstractSet[int]]:
        return {
            region: shards
            for region, shards in current.items()
            if self._roles <= self._region_roles(region)
        }

    def allocate_shard(
        self, requester: R, shard_id: int, current: Mapping[R, AbstractSet[int]]
    ) -> R | None:
        """The wrapped strategy's choice among eligible regions; None if none is eligible."""
        return self._inner.allocate_shard(requester, shard_id, self._eligible(current))

    def rebalance(
        self, current: Mapping[R, AbstractSet[int]], in_progress: AbstractSet[int]
    ) -> set[int]:
        """The wrapped strategy's rebalance over eligible regions."""
        return self._inner.rebalance(self._eligible(current), in_progress)
