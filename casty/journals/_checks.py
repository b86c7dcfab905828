"""Input checks shared by the journals, so every backend rejects bad input the same way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import fields
from typing import Any, Protocol, TypeVar, runtime_checkable

from casty.abc import MAX_SEQUENCE_NR, JournalEntry, SnapshotEntry
from casty.errors import (
    ConfigurationError,
    CorruptEntry,
    SequenceConflict,
    StaleEpoch,
    WriteRejected,
)

__all__ = [
    "RowReplay",
    "WriteCallback",
    "WriteNowait",
    "check_bound",
    "check_id",
    "check_limit",
    "check_replace",
    "check_replace_against",
    "check_replay",
    "check_snapshot",
    "check_snapshot_query",
    "check_write",
    "entry_error",
    "make_entry",
    "read_ahead",
    "snapshot_from_row",
]

R = TypeVar("R", bound=Sequence[Any])


@runtime_checkable
class RowReplay(Protocol):
    """The recovery fast path of the SQL journals (internal: not part of `Journal`).

    Recovery needs only each event's number, payload and serializer name, so it skips the
    public `Journal.replay`, which builds a `JournalEntry` per row (about as costly as
    fetching the row). ``casty.persistence`` uses it when a journal has it, and ``replay``
    otherwise.
    """

    def _replay_rows(
        self, persistence_id: str, from_sequence_nr: int
    ) -> AsyncGenerator[Sequence[Sequence[Any]], None]:
        """Pages of the entries from ``from_sequence_nr`` on, ascending, in bounded memory:
        rows whose first three items are ``(sequence_nr, payload, serializer)``, the row
        already checked (`CorruptEntry` as in `Journal.replay`)."""
        ...


#: ``callback(None)`` once a write is committed, ``callback(error)`` if it is not.
WriteCallback = Callable[[BaseException | None], object]


@runtime_checkable
class WriteNowait(Protocol):
    """The non-suspending write of the group-commit journals (internal: not part of `Journal`).

    An event-sourced entity that writes through it need not suspend its handler (which would
    cost the actor a task per write): it goes on, and waits only if a message arrives before
    the write is committed. ``casty.persistence`` uses it when a journal has it.
    """

    def _write_nowait(
        self, entries: Sequence[JournalEntry], callback: WriteCallback
    ) -> Callable[[], None] | None:
        """Check non-empty ``entries`` and queue them as `Journal.write` would, without
        suspending; ``callback(None)`` once they are committed, ``callback(error)`` if not
        (the errors of `Journal.write`). Returns a function that withdraws the write if its
        round has not begun (``callback`` is then never called), as cancelling `Journal.write`
        would; or ``None``, doing nothing, when the write cannot start without awaiting (the
        store is not open yet): the caller uses ``write``.

        Raises:
            WriteRejected, ResourceClosed: as `Journal.write` (``callback`` is not called).
        """
        ...


async def read_ahead(
    fetch: Callable[[int], Awaitable[list[R]]], low: int, page: int
) -> AsyncGenerator[list[R], None]:
    """Pages of rows numbered ``low`` onwards, the next page read while the caller uses this one.

    ``fetch(low)`` returns at most ``page`` rows, ascending, each starting with its
    ``sequence_nr``; a shorter page is the last. While the caller decodes a page in the event
    loop, the store (the PostgreSQL server, SQLite's worker thread) already reads the next, so
    a replay costs about the larger of the two rather than their sum. At most two pages are
    held at once, so memory stays bounded whatever the log's length. Errors of a page are
    raised in order, after the pages before it were yielded.
    """
    rows = await fetch(low)
    while True:
        ahead = asyncio.ensure_future(fetch(rows[-1][0] + 1)) if len(rows) == page else None
        try:
            if rows:
                yield rows
            if ahead is None:
                return
            rows = await ahead
        finally:
            if ahead is not None:
                if not ahead.done():
                    ahead.cancel()  # the caller stopped early (or was cancelled)
                elif not ahead.cancelled():
                    ahead.exception()  # retrieved: an unread page's error is not logged


def _text(value: object, what: str, *, empty: bool) -> None:
    if type(value) is not str:
        raise WriteRejected(f"{what} must be a str, got {type(value).__name__}")
    if not empty and not value:
        raise WriteRejected(f"{what} must not be empty")
    # NUL and lone surrogates cannot be stored as text in PostgreSQL (nor encoded as UTF-8);
    # rejecting them everywhere keeps the journals interchangeable.
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise WriteRejected(f"{what} {value!r} is not valid UTF-8 text") from exc
    if "\x00" in value:
        raise WriteRejected(f"{what} {value!r} contains a NUL character")


def _int(value: object, what: str, low: int) -> None:
    if type(value) is not int or not low <= value <= MAX_SEQUENCE_NR:
        raise WriteRejected(f"{what} must be an int in {low}..{MAX_SEQUENCE_NR}, got {value!r}")


# Non-empty texts already found storable. Serializer names and manifests repeat from one entry
# to the next, and a set lookup costs a fraction of the check; the bound keeps a stream of
# distinct names from growing it without end.
_STORABLE: set[str] = set()
_STORABLE_MAX = 4096


def _check_text(value: object, what: str, *, empty: bool) -> None:
    """`_text`, remembering the non-empty values that pass (the caller skips those)."""
    _text(value, what, empty=empty)
    if value:
        assert type(value) is str
        if len(_STORABLE) >= _STORABLE_MAX:
            _STORABLE.clear()
        _STORABLE.add(value)


def check_write(entries: Sequence[JournalEntry], *, one_epoch: bool = True) -> str:
    """Check a non-empty `Journal.write` batch and return its persistence id.

    With ``one_epoch=False`` (`check_replace`) the epochs may differ but must not decrease.

    Raises:
        WriteRejected: a non-entry, mixed persistence ids, sequence numbers that are not
            consecutive or out of 1..MAX_SEQUENCE_NR, mixed (or, with ``one_epoch=False``,
            decreasing) epochs, or a field of the wrong type.
    """
    first = entries[0]
    if type(first) is not JournalEntry:
        raise WriteRejected(f"expected JournalEntry, got {type(first).__name__}")
    persistence_id = first.persistence_id
    _text(persistence_id, "persistence_id", empty=False)
    start = first.sequence_nr
    _int(start, "sequence_nr", 1)
    epoch = first.epoch
    _int(epoch, "epoch", 0)
    # Runs for every entry written: the common case costs a few identity and set tests, and
    # anything unusual goes through the full checks, which raise the errors.
    storable = _STORABLE
    for offset, entry in enumerate(entries):
        if type(entry) is not JournalEntry:
            raise WriteRejected(f"expected JournalEntry, got {type(entry).__name__}")
        if entry.persistence_id != persistence_id:
            raise WriteRejected(
                f"one write must carry one persistence id, got {persistence_id!r} "
                f"and {entry.persistence_id!r}"
            )
        if entry.sequence_nr != start + offset:
            raise WriteRejected(
                f"sequence numbers of one write must be consecutive: expected "
                f"{start + offset}, got {entry.sequence_nr!r}"
            )
        if type(entry.payload) is not bytes:
            raise WriteRejected(f"payload must be bytes, got {type(entry.payload).__name__}")
        serializer = entry.serializer
        if type(serializer) is not str or serializer not in storable:
            _check_text(serializer, "serializer", empty=False)
        manifest = entry.manifest
        if type(manifest) is not str or (manifest and manifest not in storable):
            _check_text(manifest, "manifest", empty=True)
        if entry.epoch != epoch:
            if one_epoch:
                raise WriteRejected(
                    f"one write must carry one epoch, got {epoch} and {entry.epoch!r}"
                )
            _int(entry.epoch, "epoch", 0)
            if entry.epoch < epoch:
                raise WriteRejected(f"epochs must not decrease, got {epoch} then {entry.epoch}")
            epoch = entry.epoch
        timestamp_ms = entry.timestamp_ms
        if type(timestamp_ms) is not int or not 0 <= timestamp_ms <= MAX_SEQUENCE_NR:
            _int(timestamp_ms, "timestamp_ms", 0)
    _int(entries[-1].sequence_nr, "sequence_nr", 1)
    return persistence_id


def check_replace(entries: Sequence[JournalEntry]) -> str:
    """Check the input of `Journal.replace_suffix` and return its persistence id.

    Raises:
        WriteRejected: empty (or not a sequence), or as `check_write` with epochs that may
            differ but never decrease.
    """
    if not isinstance(entries, Sequence):
        raise WriteRejected(f"expected a sequence of JournalEntry, got {type(entries).__name__}")
    if not entries:
        raise WriteRejected("replace_suffix needs at least one entry")
    return check_write(entries, one_epoch=False)


async def check_replace_against(
    persistence_id: str,
    entries: Sequence[JournalEntry],
    highest: int,
    stored_epoch: int,
    kept_epoch: Callable[[], Awaitable[int]],
) -> None:
    """Check checked ``entries`` of `Journal.replace_suffix` against the stored log: its
    ``highest`` number and ``stored_epoch`` (the epoch of its highest entry, deleted or not:
    epochs never decrease along a log). ``kept_epoch`` reads the epoch of the kept entry just
    below ``entries`` (0 when deleted); it is awaited only when ``entries`` replace some.

    Raises:
        SequenceConflict: ``entries`` would leave a gap after ``highest``.
        StaleEpoch: a replaced entry is newer than ``entries[-1]``, or ``entries[0]`` is older
            than the kept entry (for a plain append: than ``stored_epoch``, as for a write).
    """
    n = entries[0].sequence_nr
    if n > highest + 1:
        raise SequenceConflict(
            f"{persistence_id!r}: sequence_nr {n} would leave a gap (the highest written is "
            f"{highest})"
        )
    if n == highest + 1:
        below, replaced = stored_epoch, 0  # a plain append: fenced as a write is
    else:
        below, replaced = await kept_epoch(), stored_epoch
    first, last = entries[0].epoch, entries[-1].epoch
    if replaced > last:
        raise StaleEpoch(
            f"{persistence_id!r}: a replaced entry has epoch {replaced}, newer than the "
            f"replacement's {last}"
        )
    if first < below:
        raise StaleEpoch(
            f"{persistence_id!r}: epoch {first} is older than the kept entry's {below}"
        )


def check_snapshot(snapshot: SnapshotEntry) -> None:
    """Check a snapshot before it is stored.

    Raises:
        WriteRejected: not a `SnapshotEntry`, or a field of the wrong type or out of range.
    """
    if type(snapshot) is not SnapshotEntry:
        raise WriteRejected(f"expected SnapshotEntry, got {type(snapshot).__name__}")
    _text(snapshot.persistence_id, "persistence_id", empty=False)
    _int(snapshot.sequence_nr, "sequence_nr", 0)
    if type(snapshot.payload) is not bytes:
        raise WriteRejected(f"payload must be bytes, got {type(snapshot.payload).__name__}")
    _text(snapshot.serializer, "serializer", empty=False)
    _text(snapshot.manifest, "manifest", empty=True)
    _int(snapshot.timestamp_ms, "timestamp_ms", 0)


def check_bound(value: object, what: str) -> int:
    """Return an inclusive sequence or timestamp bound clamped to 0..MAX_SEQUENCE_NR.

    Bounds outside the stored range are legal (they select nothing or everything); clamping
    keeps them inside the 64-bit columns of the SQL stores.

    Raises:
        ConfigurationError: ``value`` is not an int.
    """
    if type(value) is not int:
        raise ConfigurationError(f"{what} must be an int, got {type(value).__name__}")
    return min(max(value, 0), MAX_SEQUENCE_NR)


def check_limit(limit: object) -> int:
    """Return a replay ``limit`` as an int (``None`` means no limit).

    Raises:
        ConfigurationError: ``limit`` is negative or not an int.
    """
    if limit is None:
        return MAX_SEQUENCE_NR
    if type(limit) is not int or limit < 0:
        raise ConfigurationError(f"limit must be None or an int >= 0, got {limit!r}")
    return limit


def check_id(persistence_id: object) -> str:
    """Return ``persistence_id`` if it can name a log.

    Raises:
        ConfigurationError: not a str, or text no journal can store (NUL, lone surrogates).
    """
    try:
        _text(persistence_id, "persistence_id", empty=True)
    except WriteRejected as exc:
        raise ConfigurationError(str(exc)) from None
    assert isinstance(persistence_id, str)
    return persistence_id


def check_replay(
    persistence_id: object, from_sequence_nr: object, to_sequence_nr: object, limit: object
) -> tuple[str, int, int, int]:
    """Check the arguments of `Journal.replay`: ``(persistence_id, low, high, limit)``.

    The bounds are clamped as by `check_bound`; a ``None`` limit becomes MAX_SEQUENCE_NR.

    Raises:
        ConfigurationError: as `check_id`, `check_bound` and `check_limit`.
    """
    return (
        check_id(persistence_id),
        check_bound(from_sequence_nr, "from_sequence_nr"),
        check_bound(to_sequence_nr, "to_sequence_nr"),
        check_limit(limit),
    )


def check_snapshot_query(
    persistence_id: object,
    max_sequence_nr: object,
    min_sequence_nr: object,
    max_timestamp_ms: object,
) -> tuple[str, int, int, int]:
    """Check the arguments of `Journal.load_snapshot`: ``(persistence_id, low, high, newest)``.

    The bounds are clamped as by `check_bound`; a ``None`` ``max_timestamp_ms`` becomes
    MAX_SEQUENCE_NR (no limit).

    Raises:
        ConfigurationError: as `check_id` and `check_bound`.
    """
    persistence_id = check_id(persistence_id)
    high = check_bound(max_sequence_nr, "max_sequence_nr")
    low = check_bound(min_sequence_nr, "min_sequence_nr")
    newest = MAX_SEQUENCE_NR
    if max_timestamp_ms is not None:
        newest = check_bound(max_timestamp_ms, "max_timestamp_ms")
    return persistence_id, low, high, newest


_new = object.__new__
(
    _set_persistence_id,
    _set_sequence_nr,
    _set_payload,
    _set_serializer,
    _set_manifest,
    _set_epoch,
    _set_timestamp_ms,
) = (JournalEntry.__dict__[field.name].__set__ for field in fields(JournalEntry))


def make_entry(
    persistence_id: str,
    sequence_nr: int,
    payload: bytes,
    serializer: str,
    manifest: str,
    epoch: int,
    timestamp_ms: int,
) -> JournalEntry:
    """Build a `JournalEntry` from values a replay already knows to be well typed.

    Equal to ``JournalEntry(...)`` but about twice as fast: it fills the slots directly instead
    of going through the frozen dataclass's ``__init__`` (one ``object.__setattr__`` call per
    field), which is most of a replay's per-entry cost. The result is as frozen as any entry.
    """
    entry: JournalEntry = _new(JournalEntry)
    _set_persistence_id(entry, persistence_id)
    _set_sequence_nr(entry, sequence_nr)
    _set_payload(entry, payload)
    _set_serializer(entry, serializer)
    _set_manifest(entry, manifest)
    _set_epoch(entry, epoch)
    _set_timestamp_ms(entry, timestamp_ms)
    return entry


def entry_error(persistence_id: str, sequence_nr: object) -> str:
    """The `CorruptEntry` message for a stored entry that cannot be read."""
    return (
        f"{persistence_id!r}: the stored entry at sequence_nr {sequence_nr!r} cannot be read "
        "(a column has the wrong type, or the serializer name is empty)"
    )


def snapshot_from_row(persistence_id: str, row: Sequence[Any]) -> SnapshotEntry:
    """Build a snapshot from ``(sequence_nr, payload, serializer, manifest, timestamp_ms)``.

    Raises:
        CorruptEntry: a column holds a value of the wrong type, or the serializer is empty.
    """
    sequence_nr, payload, serializer, manifest, timestamp_ms = row
    if (
        type(sequence_nr) is int
        and type(payload) is bytes
        and type(serializer) is str
        and serializer
        and type(manifest) is str
        and type(timestamp_ms) is int
    ):
        return SnapshotEntry(
            persistence_id, sequence_nr, payload, serializer, manifest, timestamp_ms
        )
    raise CorruptEntry(
        f"{persistence_id!r}: the stored snapshot at sequence_nr {sequence_nr!r} cannot be read "
        f"(column types {tuple(type(value).__name__ for value in row)})"
    )
