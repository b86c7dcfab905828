"""The coordinator's state: which region hosts each shard, at which epoch, and its replica slots.

`ShardAllocationTable` is a plain, synchronous value with no I/O. The coordinator mutates it
as its protocol advances (`allocate`, `begin_handoff`, `complete_handoff`, `remove_region`),
ships `to_wire` to other nodes so that a successor coordinator starts from it (`from_wire`),
and, when no copy survives, rebuilds it from what the regions report (`rebuild_from_reports`).

Regions are identified by `str` keys (the coordinator uses each region's address). Epochs are
fencing tokens: every allocation of a shard gets a higher epoch than any before it, so a region
or replica holding an older epoch knows it was superseded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, final

from casty.errors import ConfigurationError, DecodeError, ShardingError

__all__ = ["WIRE_FORMAT", "ShardAllocationTable"]

WIRE_FORMAT = 1
"""Version of the `ShardAllocationTable.to_wire` layout; `from_wire` refuses other values."""


@final
class ShardAllocationTable:
    """Shard to region, region to shards, epoch per shard, handoffs in progress, replica slots.

    Invariants (checked by `from_wire`, kept by every operation): every allocated shard's region
    is registered and its epoch is >= 1; a shard in handoff is allocated; a shard's replica
    regions are registered, distinct, and never its owner. `version` increases by one on every
    change, so copies can be ordered (the higher version is newer).

    Not thread-safe; the coordinator owns it and mutates it from one task.

    Args:
        num_shards: the sharded type's shard count; shard ids are ``0 .. num_shards - 1``.

    Raises:
        ConfigurationError: ``num_shards`` is not an int >= 1.
    """

    __slots__ = (
        "_epochs",
        "_handoff",
        "_marks",
        "_num_shards",
        "_owner",
        "_replicas",
        "_shards",
        "version",
    )

    def __init__(self, num_shards: int) -> None:
        if type(num_shards) is not int or num_shards < 1:
            raise ConfigurationError(f"num_shards must be an int >= 1, got {num_shards!r}")
        self._num_shards = num_shards
        self._owner: dict[int, str] = {}
        self._shards: dict[str, set[int]] = {}
        self._epochs: dict[int, int] = {}
        self._handoff: set[int] = set()
        self._replicas: dict[int, tuple[str, ...]] = {}
        self._marks: dict[int, tuple[int, int]] = {}  # shard -> most advanced copy promoted
        self.version = 0

    # ------------------------------------------------------------------------ queries

    @property
    def num_shards(self) -> int:
        """The shard count this table was made for."""
        return self._num_shards

    @property
    def regions(self) -> frozenset[str]:
        """Every registered region, with or without shards."""
        return frozenset(self._shards)

    @property
    def in_handoff(self) -> frozenset[int]:
        """Shards whose handoff has begun and not completed (still allocated to their owner)."""
        return frozenset(self._handoff)

    def owner(self, shard_id: int) -> str | None:
        """The region hosting ``shard_id``, or None when it is unallocated."""
        return self._owner.get(shard_id)

    def epoch(self, shard_id: int) -> int:
        """The epoch of ``shard_id``'s latest allocation; 0 if it was never allocated."""
        return self._epochs.get(shard_id, 0)

    def shards_of(self, region: str) -> frozenset[int]:
        """The shards ``region`` hosts; empty for an unknown region."""
        return frozenset(self._shards.get(region, ()))

    def allocations(self) -> dict[str, frozenset[int]]:
        """Every registered region with its shards: the ``current`` argument of a strategy."""
        return {region: frozenset(shards) for region, shards in self._shards.items()}

    def unallocated(self) -> list[int]:
        """Shard ids without a home, ascending."""
        return [s for s in range(self._num_shards) if s not in self._owner]

    def replicas(self, shard_id: int) -> tuple[str, ...]:
        """The replica regions of ``shard_id``, in the order they were set; empty if none."""
        return self._replicas.get(shard_id, ())

    def is_current(self, shard_id: int, region: str, epoch: int) -> bool:
        """Whether ``region`` running ``shard_id`` at ``epoch`` is the coordinator's view.

        A region whose report fails this check must stop the shard (it was superseded).
        """
        return self._owner.get(shard_id) == region and self.epoch(shard_id) == epoch

    # ------------------------------------------------------------------------ operations

    def add_region(self, region: str) -> None:
        """Register ``region`` with no shards; idempotent (a known region keeps its shards).

        Raises:
            ConfigurationError: ``region`` is not a non-empty `str`.
        """
        if not isinstance(region, str) or not region:
            raise ConfigurationError(f"a region key must be a non-empty str, got {region!r}")
        if region not in self._shards:
            self._shards[region] = set()
            self.version += 1

    def remove_region(self, region: str) -> frozenset[int]:
        """Unregister ``region`` (its node was downed or it stopped): its shards lose their home.

        The shards keep their epochs, so their next allocation gets a higher one. Handoffs of
        those shards are cancelled and the region leaves every replica list. Idempotent: an
        unknown region changes nothing and returns an empty set.

        Returns:
            The shards that were allocated to ``region``.
        """
        shards = self._shards.pop(region, None)
        if shards is None:
            return frozenset()
        for shard_id in shards:
            del self._owner[shard_id]
            self._handoff.discard(shard_id)
        for shard_id, replicas in list(self._replicas.items()):
            if region in replicas:
                self._set_replicas(shard_id, tuple(r for r in replicas if r != region))
        self.version += 1
        return frozenset(shards)

    def allocate(self, shard_id: int, region: str) -> int:
        """Give the unallocated ``shard_id`` to the registered ``region`` at a new epoch.

        If ``region`` was one of the shard's replicas (a promoted replica), it leaves the
        replica list.

        Returns:
            The new epoch: one more than the shard's previous epoch (1 the first time).

        Raises:
            ConfigurationError: ``shard_id`` is out of range.
            ShardingError: the shard already has a home, or ``region`` is not registered.
        """
        self._check_shard(shard_id)
        current = self._owner.get(shard_id)
        if current is not None:
            raise ShardingError(f"shard {shard_id} is already allocated to {current!r}")
        if region not in self._shards:
            raise ShardingError(f"cannot allocate shard {shard_id} to unregistered {region!r}")
        epoch = self.epoch(shard_id) + 1
        self._place(shard_id, region, epoch)
        return epoch

    def raise_epoch(self, shard_id: int, epoch: int) -> None:
        """Make ``shard_id``'s next allocation outrank ``epoch`` (never lowers its epoch): a
        replica store reported a fence the table does not know (it was rebuilt without the
        shard's history).

        Raises:
            ConfigurationError: ``shard_id`` is out of range.
        """
        self._check_shard(shard_id)
        if epoch > self.epoch(shard_id):
            self._epochs[shard_id] = epoch

    def mark(self, shard_id: int) -> tuple[int, int]:
        """The ``(epoch, total)`` progress of the most advanced copy of ``shard_id`` that was
        ever promoted (`casty.replication.protocol.ShardProgress`); ``(0, 0)`` if none."""
        return self._marks.get(shard_id, (0, 0))

    def raise_mark(self, shard_id: int, progress: tuple[int, int]) -> None:
        """Record that a copy of ``shard_id`` at ``progress`` was promoted (never lowers it).

        Raises:
            ConfigurationError: ``shard_id`` is out of range.
        """
        self._check_shard(shard_id)
        if progress > self.mark(shard_id):
            self._marks[shard_id] = (int(progress[0]), int(progress[1]))

    def begin_handoff(self, shard_id: int) -> str:
        """Mark ``shard_id`` as moving; it stays allocated to its owner until completed.

        Returns:
            The owner region, which receives the `Handoff`.

        Raises:
            ConfigurationError: ``shard_id`` is out of range.
            ShardingError: the shard is unallocated or already in handoff.
        """
        owner = self._allocated_owner(shard_id)
        if shard_id in self._handoff:
            raise ShardingError(f"shard {shard_id} is already in handoff")
        self._handoff.add(shard_id)
        self.version += 1
        return owner

    def complete_handoff(self, shard_id: int) -> str:
        """The owner stopped ``shard_id``: it becomes unallocated (its epoch is kept).

        Returns:
            The former owner.

        Raises:
            ConfigurationError: ``shard_id`` is out of range.
            ShardingError: the shard is not in handoff.
        """
        self._check_shard(shard_id)
        if shard_id not in self._handoff:
            raise ShardingError(f"shard {shard_id} is not in handoff")
        self._handoff.remove(shard_id)
        owner = self._owner.pop(shard_id)
        self._shards[owner].remove(shard_id)
        self.version += 1
        return owner

    def abort_handoff(self, shard_id: int) -> None:
        """Give up moving ``shard_id`` (an ack timed out); it stays with its owner.

        Idempotent: a shard not in handoff changes nothing.

        Raises:
            ConfigurationError: ``shard_id`` is out of range.
        """
        self._check_shard(shard_id)
        if shard_id in self._handoff:
            self._handoff.remove(shard_id)
            self.version += 1

    def choose_replicas(
        self, shard_id: int, primary: str, regions: Iterable[str], n: int
    ) -> tuple[str, ...]:
        """Pick up to ``n`` replica regions for ``shard_id``: never ``primary``, spread evenly.

        Current replicas of the shard that are still candidates are kept (moving a replica
        costs a copy of its journal); the rest are the candidates holding the fewest replica
        slots of other shards, ties broken by region key. One region runs per node for a
        sharded type, so a region other than the primary is on another node. Pure: record the
        choice with `set_replicas`.

        Args:
            shard_id: the shard.
            primary: the shard's (new) owner; never chosen.
            regions: candidate regions (for example, the reachable ones with the role).
            n: how many replicas, >= 0.

        Returns:
            Distinct regions, fewer than ``n`` when there are not enough candidates.

        Raises:
            ConfigurationError: ``shard_id`` is out of range or ``n`` is negative.
        """
        self._check_shard(shard_id)
        if n < 0:
            raise ConfigurationError(f"n must be >= 0, got {n!r}")
        candidates = set(regions) - {primary}
        chosen = [r for r in self.replicas(shard_id) if r in candidates][:n]
        load = dict.fromkeys(candidates, 0)
        for other, replicas in self._replicas.items():
            if other != shard_id:
                for region in replicas:
                    if region in load:
                        load[region] += 1
        rest = sorted(candidates - set(chosen), key=lambda r: (load[r], r))
        return (*chosen, *rest[: n - len(chosen)])

    def set_replicas(self, shard_id: int, replicas: Iterable[str]) -> None:
        """Record ``shard_id``'s replica regions (an empty iterable clears them).

        Raises:
            ConfigurationError: ``shard_id`` is out of range.
            ShardingError: a region is unregistered, repeated, or the shard's owner.
        """
        self._check_shard(shard_id)
        chosen = tuple(replicas)
        if len(set(chosen)) != len(chosen):
            raise ShardingError(f"replicas of shard {shard_id} repeat a region: {chosen!r}")
        for region in chosen:
            if region not in self._shards:
                raise ShardingError(f"replica {region!r} of shard {shard_id} is not registered")
            if region == self._owner.get(shard_id):
                raise ShardingError(f"replica {region!r} of shard {shard_id} is its owner")
        self._set_replicas(shard_id, chosen)
        self.version += 1

    def apply_report(self, region: str, hosted: Mapping[int, int]) -> list[tuple[str, int, int]]:
        """Merge what ``region`` says it runs (shard id to epoch); registers the region.

        A reported shard is adopted when its epoch is higher than the table's, or equal and the
        shard is unallocated; the higher epoch wins a conflict and an equal epoch keeps the
        current owner. A shard taken from another region leaves any handoff.

        Returns:
            ``(region, shard_id, epoch)`` triples naming a region that must stop the shard it
            runs at that epoch: the reporter's outdated shards and the owners it displaced, in
            shard order.

        Raises:
            ConfigurationError: ``region`` is not a non-empty str, a shard id is out of range,
                or an epoch is not an int >= 1.
        """
        self.add_region(region)
        stale: list[tuple[str, int, int]] = []
        for shard_id in sorted(hosted):
            self._check_shard(shard_id)
            epoch = hosted[shard_id]
            if type(epoch) is not int or epoch < 1:
                raise ConfigurationError(f"epoch of shard {shard_id} must be >= 1, got {epoch!r}")
            owner = self._owner.get(shard_id)
            known = self.epoch(shard_id)
            if owner == region and epoch == known:
                continue
            if epoch < known or (epoch == known and owner is not None):
                stale.append((region, shard_id, epoch))
                continue
            if owner is not None and owner != region:
                stale.append((owner, shard_id, known))
                self._shards[owner].remove(shard_id)
                self._handoff.discard(shard_id)
            self._place(shard_id, region, epoch)
        return stale

    @classmethod
    def rebuild_from_reports(
        cls,
        reports: Mapping[str, Mapping[int, int]],
        *,
        num_shards: int,
        previous: ShardAllocationTable | None = None,
    ) -> ShardAllocationTable:
        """A table rebuilt from the regions' reports (region to {shard id: epoch}).

        Owners come from the reports only (they say what actually runs); conflicts go to the
        highest epoch, and equal epochs to the first region in key order. Epochs never go
        back: a shard's epoch is the highest of the reports and of ``previous`` (a possibly
        outdated copy), so its next allocation still outranks every earlier one. Replica
        slots of ``previous`` are kept for reporting regions; handoffs are dropped (the new
        coordinator starts rebalancing afresh). Use `is_current` to find the reporters whose
        shards lost.

        Raises:
            ConfigurationError: as `apply_report`, or ``num_shards`` differs from
                ``previous``'s.
        """
        table = cls(num_shards)
        if previous is not None:
            if previous.num_shards != num_shards:
                raise ConfigurationError(
                    f"num_shards={num_shards} differs from the previous table's "
                    f"{previous.num_shards}"
                )
            table._epochs = dict(previous._epochs)
            table._marks = dict(previous._marks)
            table.version = previous.version
        for region in sorted(reports):
            table.apply_report(region, reports[region])
        if previous is not None:
            for shard_id, replicas in previous._replicas.items():
                owner = table._owner.get(shard_id)
                kept = tuple(r for r in replicas if r in table._shards and r != owner)
                table._set_replicas(shard_id, kept)
        table.version += 1
        return table

    # ------------------------------------------------------------------------ wire

    def to_wire(self) -> dict[str, Any]:
        """The table as primitives only (dict, list, str, int), for any serializer.

        Layout (format 1)::

            {"format": 1, "num_shards": int, "version": int,
             "regions": [[region, [shard_id, ...]], ...],     # every region, sorted
             "epochs": [[shard_id, epoch], ...],              # every shard ever allocated
             "handoff": [shard_id, ...],
             "replicas": [[shard_id, [region, ...]], ...],
             "marks": [[shard_id, epoch, total], ...]}        # optional (`mark`)

        Lists are sorted, so equal tables give equal wire forms.
        """
        return {
            "format": WIRE_FORMAT,
            "num_shards": self._num_shards,
            "version": self.version,
            "regions": [[region, sorted(self._shards[region])] for region in sorted(self._shards)],
            "epochs": [[shard_id, self._epochs[shard_id]] for shard_id in sorted(self._epochs)],
            "handoff": sorted(self._handoff),
            "replicas": [
                [shard_id, list(self._replicas[shard_id])] for shard_id in sorted(self._replicas)
            ],
            "marks": [[shard_id, *self._marks[shard_id]] for shard_id in sorted(self._marks)],
        }

    @classmethod
    def from_wire(cls, data: object) -> ShardAllocationTable:
        """Rebuild a table from `to_wire`'s output (lists may arrive as tuples).

        Unknown keys are ignored, so a newer node's extra fields do not stop an older one.

        Raises:
            DecodeError: not a format-1 table, or any field is malformed or breaks an invariant.
        """
        try:
            return cls._from_wire(data)
        except _Invalid as exc:
            raise DecodeError(f"invalid shard allocation table: {exc}") from None

    @classmethod
    def _from_wire(cls, data: object) -> ShardAllocationTable:
        if not isinstance(data, Mapping):
            raise _Invalid(f"expected a mapping, got {type(data).__name__}")
        if _int(data, "format") != WIRE_FORMAT:
            raise _Invalid(f"format {data['format']!r} is not {WIRE_FORMAT}")
        num_shards = _int(data, "num_shards")
        if num_shards < 1:
            raise _Invalid(f"num_shards {num_shards} < 1")
        table = cls(num_shards)
        table.version = _int(data, "version")
        if table.version < 0:
            raise _Invalid("version < 0")

        def shard(value: object) -> int:
            if type(value) is not int or not 0 <= value < num_shards:
                raise _Invalid(f"shard id {value!r} not in 0..{num_shards - 1}")
            return value

        for entry in _pairs(data, "regions"):
            region, shards = entry
            if not isinstance(region, str) or not region or region in table._shards:
                raise _Invalid(f"region key {region!r} is empty, not a str, or repeated")
            table._shards[region] = set()
            for shard_id in _list(shards, "regions"):
                if shard(shard_id) in table._owner:
                    raise _Invalid(f"shard {shard_id} allocated twice")
                table._owner[shard_id] = region
                table._shards[region].add(shard_id)
        for shard_id, epoch in _pairs(data, "epochs"):
            if shard(shard_id) in table._epochs or type(epoch) is not int or epoch < 1:
                raise _Invalid(f"epoch entry {[shard_id, epoch]!r} repeated or < 1")
            table._epochs[shard_id] = epoch
        if not table._owner.keys() <= table._epochs.keys():
            raise _Invalid("an allocated shard has no epoch")
        for shard_id in _list(data.get("handoff"), "handoff"):
            if shard(shard_id) not in table._owner or shard_id in table._handoff:
                raise _Invalid(f"handoff shard {shard_id} unallocated or repeated")
            table._handoff.add(shard_id)
        for shard_id, replicas in _pairs(data, "replicas"):
            if shard(shard_id) in table._replicas:
                raise _Invalid(f"replicas of shard {shard_id} repeated")
            chosen = tuple(_list(replicas, "replicas"))
            owner = table._owner.get(shard_id)
            if (
                not chosen
                or not all(isinstance(r, str) and r in table._shards and r != owner for r in chosen)
                or len(set(chosen)) != len(chosen)
            ):
                raise _Invalid(f"replicas {chosen!r} of shard {shard_id} invalid")
            table._replicas[shard_id] = chosen
        for entry in _list(data.get("marks", ()), "marks"):
            numbers = list(_list(entry, "marks"))
            if len(numbers) != 3 or not all(type(v) is int and v >= 0 for v in numbers):
                raise _Invalid(f"mark {entry!r} is not three ints >= 0")
            if shard(numbers[0]) in table._marks:
                raise _Invalid(f"mark of shard {numbers[0]} repeated")
            table._marks[numbers[0]] = (numbers[1], numbers[2])
        return table

    # ------------------------------------------------------------------------ helpers

    def _check_shard(self, shard_id: int) -> None:
        if type(shard_id) is not int or not 0 <= shard_id < self._num_shards:
            raise ConfigurationError(
                f"shard id must be an int in 0..{self._num_shards - 1}, got {shard_id!r}"
            )

    def _allocated_owner(self, shard_id: int) -> str:
        self._check_shard(shard_id)
        owner = self._owner.get(shard_id)
        if owner is None:
            raise ShardingError(f"shard {shard_id} is not allocated")
        return owner

    def _place(self, shard_id: int, region: str, epoch: int) -> None:
        """Make ``region`` the shard's owner at ``epoch``; an owner is never its own replica."""
        self._owner[shard_id] = region
        self._shards[region].add(shard_id)
        self._epochs[shard_id] = epoch
        replicas = self._replicas.get(shard_id, ())
        if region in replicas:
            self._set_replicas(shard_id, tuple(r for r in replicas if r != region))
        self.version += 1

    def _set_replicas(self, shard_id: int, replicas: tuple[str, ...]) -> None:
        if replicas:
            self._replicas[shard_id] = replicas
        else:
            self._replicas.pop(shard_id, None)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ShardAllocationTable):
            return NotImplemented
        return self.to_wire() == other.to_wire()

    def __repr__(self) -> str:
        return (
            f"ShardAllocationTable(num_shards={self._num_shards}, version={self.version}, "
            f"regions={len(self._shards)}, allocated={len(self._owner)})"
        )


class _Invalid(Exception):
    """A malformed wire table; `from_wire` turns it into DecodeError."""


def _int(data: Mapping[Any, Any], key: str) -> int:
    value = data.get(key)
    if type(value) is not int:
        raise _Invalid(f"{key} must be an int, got {value!r}")
    return value


def _list(value: object, key: str) -> list[Any] | tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise _Invalid(f"{key} must be a list, got {type(value).__name__}")
    return value


def _pairs(data: Mapping[Any, Any], key: str) -> list[tuple[Any, Any]]:
    pairs = []
    for entry in _list(data.get(key), key):
        if not isinstance(entry, list | tuple) or len(entry) != 2:
            raise _Invalid(f"{key} entries must be pairs, got {entry!r}")
        pairs.append((entry[0], entry[1]))
    return pairs
