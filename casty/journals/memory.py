"""`InMemoryJournal`: the reference journal, kept in the process's memory."""

from __future__ import annotations

import asyncio
from bisect import bisect_left, bisect_right
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, ClassVar, final

from casty.abc import MAX_SEQUENCE_NR, Journal, JournalCapabilities, JournalEntry, SnapshotEntry
from casty.errors import ConfigurationError, ResourceClosed, SequenceConflict, StaleEpoch
from casty.journals._checks import (
    check_bound,
    check_id,
    check_replace,
    check_replace_against,
    check_replay,
    check_snapshot,
    check_snapshot_query,
    check_write,
)
from casty.registry import BackendURL

__all__ = ["InMemoryJournal"]

#: Entries handed out per step of a replay, so a replay never copies a whole log.
_REPLAY_CHUNK = 256

_sequence_nr = attrgetter("sequence_nr")


@dataclass(slots=True)
class _Log:
    entries: list[JournalEntry] = field(default_factory=list)  # ascending sequence_nr
    highest: int = 0  # high-water mark: survives delete_to
    max_epoch: int = 0
    snapshots: dict[int, SnapshotEntry] = field(default_factory=dict)


@dataclass(slots=True)
class _Store:
    logs: dict[str, _Log] = field(default_factory=dict)


# Named stores live as long as the process, so a journal reopened under the same name (a new
# instance after `aclose`) sees everything acknowledged before.
_NAMED_STORES: dict[str, _Store] = {}


@final
class InMemoryJournal(Journal):
    """A journal held in memory: fast, lost when the process exits.

    Every operation completes without suspending, so a write is atomic even under
    cancellation. Instances created with the same ``name`` share one store for the lifetime of
    the process (reopening after `aclose` keeps every acknowledged entry); ``name=None`` gives a
    private store that disappears with the instance. Use it in tests and for state that
    replication keeps elsewhere; use `SQLiteJournal` or `PostgresJournal` to survive restarts.

    URL: ``memory://`` (private store) or ``memory://shared-name`` (a named store; host names
    are case-insensitive, so ``memory://A`` and ``memory://a`` share one store). No query
    options. Extra: none.

    Capabilities: atomic batches, snapshots, concurrent writers (instances sharing a name),
    `replace_suffix`; ``durable`` holds only within the process, for named stores.

    Args:
        name: the shared store's name, or ``None`` for a private store.
    """

    capabilities: ClassVar[JournalCapabilities] = JournalCapabilities(replace_suffix=True)

    def __init__(self, name: str | None = None) -> None:
        if name is not None and (type(name) is not str or not name):
            raise ConfigurationError(f"name must be a non-empty str or None, got {name!r}")
        self._name = name
        self._store: _Store | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: BackendURL, **options: Any) -> InMemoryJournal:
        """Build from ``memory://`` or ``memory://name``; takes no options.

        Raises:
            ConfigurationError: a query string or keyword option was given.
        """
        if url.query or options:
            raise ConfigurationError(
                f"memory:// journals take no options, got {sorted({*url.query, *options})}"
            )
        name = url.host + (f"/{url.path}" if url.path else "")
        return cls(name or None)

    def __repr__(self) -> str:
        return f"InMemoryJournal(name={self._name!r})"

    def _open_store(self) -> _Store:
        if self._closed:
            raise ResourceClosed(f"{self!r} is closed")
        if self._store is None:
            if self._name is None:
                self._store = _Store()
            else:
                self._store = _NAMED_STORES.setdefault(self._name, _Store())
        return self._store

    def _log(self, persistence_id: str) -> _Log | None:
        return self._open_store().logs.get(persistence_id)

    async def open(self) -> None:
        """Attach to the store; nothing can fail but use after `aclose` (`ResourceClosed`)."""
        self._open_store()

    async def write(self, entries: Sequence[JournalEntry]) -> None:
        """Append ``entries`` atomically; see `Journal.write`."""
        store = self._open_store()
        if not entries:
            return
        persistence_id = check_write(entries)
        log = store.logs.get(persistence_id)
        if log is None:
            log = store.logs[persistence_id] = _Log()
        epoch = entries[0].epoch  # check_write made sure one write carries one epoch
        if epoch < log.max_epoch:
            raise StaleEpoch(
                f"{persistence_id!r}: epoch {epoch} is older than the stored epoch {log.max_epoch}"
            )
        if entries[0].sequence_nr != log.highest + 1:
            raise SequenceConflict(
                f"{persistence_id!r}: sequence_nr {entries[0].sequence_nr} is not the next one "
                f"(the highest written is {log.highest})"
            )
        log.entries.extend(entries)
        log.highest = entries[-1].sequence_nr
        log.max_epoch = epoch

    async def replace_suffix(self, entries: Sequence[JournalEntry]) -> None:
        """Replace the entries from ``entries[0].sequence_nr`` on; see `Journal.replace_suffix`.

        Completes without suspending, so it is atomic even under cancellation.
        """
        store = self._open_store()
        persistence_id = check_replace(entries)
        log = store.logs.get(persistence_id)
        if log is None:
            log = store.logs[persistence_id] = _Log()
        n = entries[0].sequence_nr
        start = bisect_left(log.entries, n, key=_sequence_nr)

        async def kept_epoch() -> int:  # never suspends: the call stays atomic
            kept = log.entries[start - 1] if start else None
            return kept.epoch if kept is not None and kept.sequence_nr == n - 1 else 0

        await check_replace_against(persistence_id, entries, log.highest, log.max_epoch, kept_epoch)
        del log.entries[start:]
        log.entries.extend(entries)
        log.highest = entries[-1].sequence_nr
        log.max_epoch = entries[-1].epoch
        for sequence_nr in [nr for nr in log.snapshots if nr >= n]:
            del log.snapshots[sequence_nr]

    async def replay(
        self,
        persistence_id: str,
        from_sequence_nr: int = 1,
        to_sequence_nr: int = MAX_SEQUENCE_NR,
        limit: int | None = None,
    ) -> AsyncIterator[JournalEntry]:
        """Stream the entries in the inclusive range; see `Journal.replay`."""
        persistence_id, low, high, remaining = check_replay(
            persistence_id, from_sequence_nr, to_sequence_nr, limit
        )
        while remaining > 0 and low <= high:
            log = self._log(persistence_id)
            if log is None:
                return
            # Re-locate by sequence number each chunk: delete_to may have shifted the list.
            start = bisect_left(log.entries, low, key=_sequence_nr)
            stop = bisect_right(log.entries, high, key=_sequence_nr)
            chunk = log.entries[start : min(stop, start + min(remaining, _REPLAY_CHUNK))]
            if not chunk:
                return
            for entry in chunk:
                yield entry
            remaining -= len(chunk)
            low = chunk[-1].sequence_nr + 1
            await asyncio.sleep(0)  # a long replay must not starve the event loop

    async def highest_sequence_nr(self, persistence_id: str) -> int:
        """The high-water mark of the id (0 when never written); see `Journal`."""
        log = self._log(check_id(persistence_id))
        return 0 if log is None else log.highest

    async def delete_to(self, persistence_id: str, to_sequence_nr: int) -> None:
        """Delete the entries up to ``to_sequence_nr`` inclusive; idempotent."""
        bound = check_bound(to_sequence_nr, "to_sequence_nr")
        log = self._log(check_id(persistence_id))
        if log is not None:
            del log.entries[: bisect_right(log.entries, bound, key=_sequence_nr)]

    async def save_snapshot(self, snapshot: SnapshotEntry) -> None:
        """Store ``snapshot``, replacing one with the same id and sequence number."""
        store = self._open_store()
        check_snapshot(snapshot)
        log = store.logs.get(snapshot.persistence_id)
        if log is None:
            log = store.logs[snapshot.persistence_id] = _Log()
        log.snapshots[snapshot.sequence_nr] = snapshot

    async def load_snapshot(
        self,
        persistence_id: str,
        max_sequence_nr: int = MAX_SEQUENCE_NR,
        min_sequence_nr: int = 0,
        max_timestamp_ms: int | None = None,
    ) -> SnapshotEntry | None:
        """The snapshot with the highest sequence number within the inclusive bounds."""
        persistence_id, low, high, newest = check_snapshot_query(
            persistence_id, max_sequence_nr, min_sequence_nr, max_timestamp_ms
        )
        log = self._log(persistence_id)
        if log is None:
            return None
        eligible = [
            snapshot
            for sequence_nr, snapshot in log.snapshots.items()
            if low <= sequence_nr <= high and snapshot.timestamp_ms <= newest
        ]
        return max(eligible, key=_sequence_nr, default=None)

    async def delete_snapshots(
        self, persistence_id: str, max_sequence_nr: int, min_sequence_nr: int = 0
    ) -> None:
        """Delete the snapshots within the inclusive bounds; idempotent."""
        high = check_bound(max_sequence_nr, "max_sequence_nr")
        low = check_bound(min_sequence_nr, "min_sequence_nr")
        log = self._log(check_id(persistence_id))
        if log is not None:
            for sequence_nr in [nr for nr in log.snapshots if low <= nr <= high]:
                del log.snapshots[sequence_nr]

    async def aclose(self) -> None:
        """Detach from the store; idempotent. A named store keeps its contents."""
        self._closed = True
        self._store = None
