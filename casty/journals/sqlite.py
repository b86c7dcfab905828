"""`SQLiteJournal`: a journal in one SQLite file (aiosqlite, WAL, group commit)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Coroutine,
    Generator,
    Iterator,
    Sequence,
)
from contextlib import contextmanager
from operator import itemgetter
from typing import Any, ClassVar, Literal, final

import aiosqlite

from casty.abc import MAX_SEQUENCE_NR, Journal, JournalCapabilities, JournalEntry, SnapshotEntry
from casty.errors import (
    ConfigurationError,
    CorruptEntry,
    JournalError,
    JournalUnavailable,
    ResourceClosed,
    SequenceConflict,
    StaleEpoch,
    WriteRejected,
)
from casty.journals._checks import (
    WriteCallback,
    check_bound,
    check_id,
    check_replace,
    check_replace_against,
    check_replay,
    check_snapshot,
    check_snapshot_query,
    check_write,
    entry_error,
    make_entry,
    read_ahead,
    snapshot_from_row,
)
from casty.journals._groupcommit import (
    GroupCommit,
    GroupCommitStatistics,
    PendingWrite,
)
from casty.registry import BackendURL

__all__ = ["SQLiteJournal"]

Synchronous = Literal["FULL", "NORMAL"]

# The checks live in triggers, inside the INSERT itself: a round then costs one executemany and
# one commit (two hops to aiosqlite's thread), and every writer of the file, other processes
# included, is held to the same rules. A violated rule aborts only the failing statement.
_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS casty_journal (
    ordering INTEGER PRIMARY KEY AUTOINCREMENT,
    persistence_id TEXT NOT NULL,
    sequence_nr INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    serializer TEXT NOT NULL,
    manifest TEXT NOT NULL,
    payload BLOB NOT NULL,
    UNIQUE (persistence_id, sequence_nr)
);
CREATE TABLE IF NOT EXISTS casty_journal_meta (
    persistence_id TEXT PRIMARY KEY,
    highest_sequence_nr INTEGER NOT NULL,
    max_epoch INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS casty_snapshots (
    persistence_id TEXT NOT NULL,
    sequence_nr INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    serializer TEXT NOT NULL,
    manifest TEXT NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (persistence_id, sequence_nr)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS casty_journal_check BEFORE INSERT ON casty_journal
BEGIN
    SELECT RAISE(ABORT, 'casty:stale_epoch') FROM casty_journal_meta
        WHERE persistence_id = NEW.persistence_id AND max_epoch > NEW.epoch;
    SELECT RAISE(ABORT, 'casty:sequence_conflict') WHERE NEW.sequence_nr <> 1 + coalesce(
        (SELECT highest_sequence_nr FROM casty_journal_meta
            WHERE persistence_id = NEW.persistence_id), 0);
END;
CREATE TRIGGER IF NOT EXISTS casty_journal_advance AFTER INSERT ON casty_journal
BEGIN
    INSERT INTO casty_journal_meta (persistence_id, highest_sequence_nr, max_epoch)
        VALUES (NEW.persistence_id, NEW.sequence_nr, NEW.epoch)
        ON CONFLICT (persistence_id) DO UPDATE SET
            highest_sequence_nr = excluded.highest_sequence_nr,
            max_epoch = max(max_epoch, excluded.max_epoch);
END;
COMMIT;
"""

_INSERT = (
    "INSERT INTO casty_journal (persistence_id, sequence_nr, epoch, timestamp_ms, serializer,"
    " manifest, payload) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# A round is written by multi-row INSERTs of at most this many rows. Up to it, a round is one
# statement, committed on its own (the write connection is in autocommit mode): one trip to
# aiosqlite's thread instead of an INSERT and a COMMIT, which matters most when the event loop
# is busy (the thread then waits for the GIL at each trip). Compiling such a statement costs
# more than running it, so compiled statements are cached (`_CACHED_STATEMENTS` of them, about
# 1 KiB per row each, triggers included); the bound keeps that cache to a few MiB.
_STATEMENT_ROWS = 128
_CACHED_STATEMENTS = 32
_INSERTS = [
    _INSERT.replace("(?, ?, ?, ?, ?, ?, ?)", ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * rows))
    for rows in range(_STATEMENT_ROWS + 1)
]
# SQLite columns are dynamically typed; the last column checks a row's types in C, so the
# replay loop needs only one truth test per row.
_REPLAY = (
    "SELECT sequence_nr, payload, serializer, manifest, epoch, timestamp_ms,"
    " typeof(sequence_nr) = 'integer' AND typeof(payload) = 'blob'"
    " AND typeof(serializer) = 'text' AND serializer <> '' AND typeof(manifest) = 'text'"
    " AND typeof(epoch) = 'integer' AND typeof(timestamp_ms) = 'integer'"
    " FROM casty_journal WHERE persistence_id = ? AND sequence_nr BETWEEN ? AND ?"
    " ORDER BY sequence_nr LIMIT ?"
)
# Recovery's page: only what it decodes, with the same check (see RowReplay).
_REPLAY_ROWS = (
    "SELECT sequence_nr, payload, serializer,"
    " typeof(sequence_nr) = 'integer' AND typeof(payload) = 'blob'"
    " AND typeof(serializer) = 'text' AND serializer <> ''"
    " FROM casty_journal WHERE persistence_id = ? AND sequence_nr >= ?"
    " ORDER BY sequence_nr LIMIT ?"
)
_HIGHEST = "SELECT highest_sequence_nr FROM casty_journal_meta WHERE persistence_id = ?"
_DELETE_TO = "DELETE FROM casty_journal WHERE persistence_id = ? AND sequence_nr <= ?"
# replace_suffix: read the id's mark and fence, delete the suffix and its snapshots, rewind the
# mark to n - 1 with the fence at 0 so the triggers accept the new entries (the AFTER trigger
# raises the fence again, to the last entry's epoch).
_META = "SELECT highest_sequence_nr, max_epoch FROM casty_journal_meta WHERE persistence_id = ?"
_EPOCH_AT = "SELECT epoch FROM casty_journal WHERE persistence_id = ? AND sequence_nr = ?"
_DELETE_FROM = "DELETE FROM casty_journal WHERE persistence_id = ? AND sequence_nr >= ?"
_DELETE_SNAPSHOTS_FROM = "DELETE FROM casty_snapshots WHERE persistence_id = ? AND sequence_nr >= ?"
_REWIND = (
    "INSERT INTO casty_journal_meta (persistence_id, highest_sequence_nr, max_epoch)"
    " VALUES (?, ?, 0) ON CONFLICT (persistence_id) DO UPDATE SET"
    " highest_sequence_nr = excluded.highest_sequence_nr, max_epoch = 0"
)
_SAVE_SNAPSHOT = (
    "INSERT OR REPLACE INTO casty_snapshots (persistence_id, sequence_nr, timestamp_ms,"
    " serializer, manifest, payload) VALUES (?, ?, ?, ?, ?, ?)"
)
_LOAD_SNAPSHOT = (
    "SELECT sequence_nr, payload, serializer, manifest, timestamp_ms FROM casty_snapshots"
    " WHERE persistence_id = ? AND sequence_nr BETWEEN ? AND ? AND timestamp_ms <= ?"
    " ORDER BY sequence_nr DESC LIMIT 1"
)
_DELETE_SNAPSHOTS = (
    "DELETE FROM casty_snapshots WHERE persistence_id = ? AND sequence_nr BETWEEN ? AND ?"
)

_Row = tuple[Any, ...]
_checked = itemgetter(3)  # the check column of _REPLAY_ROWS


def _row_of(entry: JournalEntry) -> _Row:
    return (
        entry.persistence_id,
        entry.sequence_nr,
        entry.epoch,
        entry.timestamp_ms,
        entry.serializer,
        entry.manifest,
        entry.payload,
    )


def _values(entries: Sequence[JournalEntry]) -> list[Any]:
    """The parameters of a multi-row INSERT of ``entries``, in order."""
    values: list[Any] = []
    for entry in entries:
        values += (
            entry.persistence_id,
            entry.sequence_nr,
            entry.epoch,
            entry.timestamp_ms,
            entry.serializer,
            entry.manifest,
            entry.payload,
        )
    return values


def _check_directory(path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise JournalUnavailable(f"{path}: the directory {directory} does not exist")


def _daemonic(connecting: aiosqlite.Connection) -> aiosqlite.Connection:
    """Mark a not yet started aiosqlite connection's worker thread as a daemon thread.

    aiosqlite >= 0.22 makes its worker threads non-daemon, so a journal the program never
    closed kept the interpreter waiting forever after ``asyncio.run`` returned. Nothing is
    lost by not waiting: a write is acknowledged only after SQLite committed it, and SQLite
    recovers an interrupted transaction from its journal or WAL on the next open.
    """
    # Before 0.22 the connection is the thread; since, it owns one as ``_thread``.
    thread = connecting if isinstance(connecting, threading.Thread) else None
    thread = thread or getattr(connecting, "_thread", None)
    if isinstance(thread, threading.Thread) and not thread.is_alive():
        thread.daemon = True
    return connecting


@final
class _Resume:
    """Awaits the rest of a coroutine whose first step was taken by hand (it yielded ``first``),
    as if it had been awaited from the start: its result, its exception, cancellation."""

    __slots__ = ("_first", "_job")

    def __init__(self, job: Coroutine[Any, Any, Any], first: object) -> None:
        self._job = job
        self._first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        job, value = self._job, self._first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                job.close()
                raise
            except BaseException as exc:
                try:
                    value = job.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                value = job.send(sent)
            except StopIteration as stop:
                return stop.value


class SQLiteJournal(Journal):
    """A journal in one SQLite database file, in WAL mode, with group commit.

    Concurrent `write` calls are committed together, one transaction per round (see
    `casty.journals._groupcommit`), so many entities writing at once share each disk sync.
    Reads use a second connection and never wait for writes. The tables ``casty_journal``
    (with an ``ordering`` column increasing in commit order, never reused),
    ``casty_journal_meta`` and ``casty_snapshots`` are created on first use. Several processes
    may open the same file; SQLite serialises their transactions.

    URL: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, or ``sqlite://`` for
    a private in-memory database (lost on `aclose`, not shared between instances). Query
    options: ``synchronous`` (``full`` or ``normal``), ``busy_timeout`` (seconds).
    Extra: ``pip install 'casty[sqlite]'``.

    Capabilities: atomic batches, durable, snapshots, concurrent writers (for a file),
    `replace_suffix`.

    Args:
        path: the database file (created if missing), or ``":memory:"``.
        synchronous: ``"FULL"`` (default) syncs the WAL on every commit, so an acknowledged
            write survives power loss; ``"NORMAL"`` syncs only at checkpoints: several times
            faster, still safe if the process crashes, but the last commits may be lost if the
            machine loses power.
        busy_timeout: seconds to wait for another process's lock before `JournalUnavailable`.
        max_batch_entries: at most this many entries per group-commit round.
        replay_page_size: entries fetched per query while replaying (bounds replay memory).

    Raises:
        ConfigurationError: an option is out of range (at construction; no I/O happens then).
    """

    capabilities: ClassVar[JournalCapabilities] = JournalCapabilities(replace_suffix=True)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = 5.0,
        max_batch_entries: int = 4096,
        replay_page_size: int = 1024,
    ) -> None:
        mode = str(synchronous).upper()
        if mode not in ("FULL", "NORMAL"):
            raise ConfigurationError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        if not isinstance(busy_timeout, int | float) or busy_timeout < 0:
            raise ConfigurationError(f"busy_timeout must be seconds >= 0, got {busy_timeout!r}")
        for name, value in (
            ("max_batch_entries", max_batch_entries),
            ("replay_page_size", replay_page_size),
        ):
            if type(value) is not int or value < 1:
                raise ConfigurationError(f"{name} must be an int >= 1, got {value!r}")
        self._path = os.fspath(path) or ":memory:"
        self._in_memory = self._path == ":memory:"
        self._synchronous = mode
        self._busy_timeout = float(busy_timeout)
        self._page_size = replay_page_size
        self._write_db: aiosqlite.Connection | None = None
        # None in memory mode: the one connection then serves reads too, under _lock.
        self._read_db: aiosqlite.Connection | None = None
        self._stale = False  # a store failure: reconnect before the next use
        self._closed = False
        self._open_lock = asyncio.Lock()
        self._lock = asyncio.Lock()  # one transaction at a time on the write connection
        # Depth 2: a round is queued on the worker thread while the one before commits.
        self._commits = GroupCommit(
            self._flush, max_entries=max_batch_entries, name=repr(self), depth=2
        )

    @classmethod
    def from_url(cls, url: BackendURL, **options: Any) -> SQLiteJournal:
        """Build from ``sqlite:///path.db?synchronous=normal&busy_timeout=5``.

        Keyword options override query values.

        Raises:
            ConfigurationError: unknown query option or invalid value.
        """
        query = dict(url.query)
        kwargs: dict[str, Any] = {}
        if "synchronous" in query:
            kwargs["synchronous"] = query.pop("synchronous").upper()
        if "busy_timeout" in query:
            raw = query.pop("busy_timeout")
            try:
                kwargs["busy_timeout"] = float(raw)
            except ValueError:
                raise ConfigurationError(f"busy_timeout must be seconds, got {raw!r}") from None
        if query:
            raise ConfigurationError(f"unknown sqlite:// query options: {sorted(query)}")
        kwargs.update(options)
        return cls(url.path or ":memory:", **kwargs)

    def __repr__(self) -> str:
        return f"SQLiteJournal({self._path!r}, synchronous={self._synchronous!r})"

    # ----------------------------------------------------------------------------------------
    # connections and the error choke point

    def _translate(self, exc: BaseException) -> JournalError:
        """Map an sqlite3/aiosqlite/OS error to the casty error tree (the only place that does)."""
        message = str(exc)
        if isinstance(exc, sqlite3.IntegrityError):
            if "casty:stale_epoch" in message:
                return StaleEpoch(f"{self._path}: the write's epoch is older than the stored one")
            if "casty:sequence_conflict" in message or "UNIQUE" in message:
                return SequenceConflict(
                    f"{self._path}: the first sequence_nr is not the next one (taken, or a gap)"
                )
            return WriteRejected(f"{self._path}: {message}")
        if isinstance(exc, sqlite3.InterfaceError):
            return WriteRejected(f"{self._path}: {message}")
        if "locked" not in message and "busy" not in message:
            self._stale = True
        if "not a database" in message:
            return JournalUnavailable(
                f"{self._path} is not an SQLite database (or is encrypted or damaged)"
            )
        return JournalUnavailable(f"{self._path}: {message or type(exc).__name__}")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, ValueError, OSError) as exc:
            # aiosqlite raises ValueError for a connection that is already closed.
            raise self._translate(exc) from exc

    async def _connect(self, *, reader: bool) -> aiosqlite.Connection:
        if not self._in_memory:
            # Checked first because aiosqlite, failing to open, leaves its thread to finish
            # after this call returns (one stat call; no need for a worker thread).
            _check_directory(self._path)
        # Autocommit on both: a write of one statement commits by itself; longer ones open
        # their transaction with BEGIN IMMEDIATE (taking the write lock up front).
        db = await _daemonic(
            aiosqlite.connect(
                self._path,
                timeout=self._busy_timeout,
                isolation_level=None,
                cached_statements=_CACHED_STATEMENTS,
            )
        )
        try:
            await db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            if reader:
                await db.execute("PRAGMA query_only = ON")
            else:
                if not self._in_memory:
                    await self._use_wal(db)
                await db.execute(f"PRAGMA synchronous = {self._synchronous}")
                await db.executescript(_SCHEMA)
        except BaseException:
            await asyncio.shield(db.close())
            raise
        return db

    async def _use_wal(self, db: aiosqlite.Connection) -> None:
        """Switch the file to WAL mode (a persistent setting) unless it already is.

        Switching needs an exclusive lock, and SQLite answers "locked" at once, without its
        busy handler, when another connection is opening the file at the same moment; so
        retry until ``busy_timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._busy_timeout
        while True:
            rows = list(await db.execute_fetchall("PRAGMA journal_mode"))
            if rows and str(rows[0][0]).lower() == "wal":
                return
            try:
                await db.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or loop.time() >= deadline:
                    raise
                await asyncio.sleep(0.01)

    async def _disconnect(self) -> None:
        write_db, read_db = self._write_db, self._read_db
        self._write_db = self._read_db = None
        for db in (read_db, write_db):
            if db is not None:
                try:
                    await db.close()
                except (sqlite3.Error, ValueError):
                    pass  # the store already failed; the connection is gone either way

    async def _connections(self) -> aiosqlite.Connection:
        """The write connection, (re)opening both connections when needed."""
        if self._write_db is not None and not self._stale:
            return self._write_db
        async with self._open_lock:
            if self._stale:
                async with self._lock:
                    await self._disconnect()
                    self._stale = False
            if self._write_db is None:
                with self._errors():
                    write_db = await self._connect(reader=False)
                    try:
                        read_db = None if self._in_memory else await self._connect(reader=True)
                    except BaseException:
                        await asyncio.shield(write_db.close())
                        raise
                self._write_db, self._read_db = write_db, read_db
            return self._write_db

    async def _ensure_open(self) -> aiosqlite.Connection:
        if self._closed:
            raise ResourceClosed(f"{self!r} is closed")
        return await self._connections()

    async def open(self) -> None:
        """Open the file now (creating it and the schema); see `Journal.open`.

        Raises:
            JournalUnavailable: the file cannot be opened, is not an SQLite database, or is
                locked beyond ``busy_timeout``.
            ResourceClosed: after `aclose`.
        """
        await self._ensure_open()

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[_Row]:
        """Run a read on the read connection (or under the lock in memory mode)."""
        write_db = await self._ensure_open()
        read_db = self._read_db
        # Rows are tuples (no row factory is set), and execute_fetchall returns a list.
        with self._errors():
            if read_db is not None:
                rows = await read_db.execute_fetchall(sql, params)
            else:
                async with self._lock:
                    rows = await write_db.execute_fetchall(sql, params)
        assert type(rows) is list
        return rows

    async def _modify(self, sql: str, params: Sequence[Any]) -> None:
        """Run one statement, committed on its own (autocommit), on the write connection."""
        db = await self._ensure_open()
        async with self._lock:
            with self._errors():
                await db.execute(sql, params)

    async def _rollback(self, db: aiosqlite.Connection) -> None:
        try:
            # Shielded: a cancelled caller must not leave the transaction open for the next one.
            await asyncio.shield(db.rollback())
        except (sqlite3.Error, ValueError):
            self._stale = True  # reconnecting discards whatever the connection still holds

    # ----------------------------------------------------------------------------------------
    # writes

    async def write(self, entries: Sequence[JournalEntry]) -> None:
        """Append ``entries`` atomically, committed with concurrent writes; see `Journal.write`.

        Returns once the round holding the write is committed to the ``synchronous`` level.
        """
        if self._closed or self._write_db is None or self._stale:
            await self._ensure_open()
        if not entries:
            return
        persistence_id = check_write(entries)
        await self._commits.submit(persistence_id, entries)

    def _write_nowait(
        self, entries: Sequence[JournalEntry], callback: WriteCallback
    ) -> Callable[[], None] | None:
        """`write` for a caller that must not suspend (see `casty.journals._checks.WriteNowait`)."""
        if self._closed or self._write_db is None or self._stale:
            return None  # (re)opening awaits: the caller uses `write`
        return self._commits.submit_nowait(check_write(entries), entries, callback).withdraw

    async def _flush(self, batch: list[PendingWrite]) -> None:
        db = await self._connections()
        entries = [entry for pending in batch for entry in pending.entries]
        rows = len(entries)
        size = _STATEMENT_ROWS
        if rows <= size:
            return await self._flush_one(db, batch, _INSERTS[rows], _values(entries))
        async with self._lock:
            try:
                # Full statements in one trip, the rest in another, in one transaction.
                full = rows - rows % size
                await db.execute("BEGIN IMMEDIATE")
                await db.executemany(
                    _INSERTS[size],
                    [_values(entries[start : start + size]) for start in range(0, full, size)],
                )
                if full < rows:
                    await db.execute(_INSERTS[rows - full], _values(entries[full:]))
                await db.commit()
            except BaseException as exc:
                await self._round_failed(db, batch, exc)
                return
        for pending in batch:
            pending.resolve()

    async def _round_failed(
        self, db: aiosqlite.Connection, batch: list[PendingWrite], exc: BaseException
    ) -> None:
        """Roll back a round whose statement raised ``exc`` (the caller holds the lock). When
        some write broke a rule, start over with each write in its own savepoint so only the
        offenders fail; otherwise raise ``exc`` (a storage error as a `JournalError`)."""
        await self._rollback(db)
        if isinstance(exc, sqlite3.IntegrityError):
            await self._flush_each(db, batch)
            return
        if isinstance(exc, sqlite3.Error | ValueError | OSError):
            raise self._translate(exc) from exc
        raise exc

    async def _flush_one(
        self, db: aiosqlite.Connection, batch: list[PendingWrite], sql: str, values: list[Any]
    ) -> None:
        """Commit a round of one statement (its own transaction: autocommit).

        The statement is queued on aiosqlite's thread under the lock, but the lock is not held
        while it runs: the thread runs what it is given in order, so whatever takes the lock
        next (the next round, a ``replace_suffix`` transaction) comes after this statement,
        never inside it. That lets the next round be queued while this one commits (group
        commit ``depth=2``).
        """
        try:
            async with self._lock:
                # aiosqlite's `execute` puts its job on the thread's queue in its first step,
                # then awaits the job's future: take that step here, under the lock.
                job: Any = db.execute(sql, values)  # its `send` is typed as returning None
                first = job.send(None)
                if not isinstance(first, asyncio.Future):
                    # Not the aiosqlite we know: keep the lock until the statement is done.
                    await _Resume(job, first)
                    first = None
            if first is not None:
                await _Resume(job, first)
        except BaseException as exc:
            async with self._lock:
                await self._round_failed(db, batch, exc)
            return
        for pending in batch:
            pending.resolve()

    async def _flush_each(self, db: aiosqlite.Connection, batch: list[PendingWrite]) -> None:
        outcomes: list[JournalError | None] = []
        try:
            with self._errors():
                await db.execute("BEGIN IMMEDIATE")
                for pending in batch:
                    await db.execute("SAVEPOINT casty_write")
                    try:
                        await db.executemany(_INSERT, [_row_of(e) for e in pending.entries])
                    except sqlite3.IntegrityError as exc:
                        await db.execute("ROLLBACK TO casty_write")
                        outcomes.append(self._translate(exc))
                    else:
                        outcomes.append(None)
                    await db.execute("RELEASE casty_write")
                await db.commit()
        except BaseException:
            await self._rollback(db)
            raise
        for pending, outcome in zip(batch, outcomes, strict=True):
            pending.resolve(outcome)

    async def replace_suffix(self, entries: Sequence[JournalEntry]) -> None:
        """Replace the entries from ``entries[0].sequence_nr`` on; see `Journal.replace_suffix`.

        One ``BEGIN IMMEDIATE`` transaction on the write connection, under the lock the
        group-commit rounds take, so no write of this journal interleaves with it (and SQLite's
        write lock keeps other processes out). Cancellation rolls it back.

        Raises:
            WriteRejected, SequenceConflict, StaleEpoch, ResourceClosed: see
                `Journal.replace_suffix`.
            JournalUnavailable: the file failed or stayed locked beyond ``busy_timeout``.
        """
        db = await self._ensure_open()
        persistence_id = check_replace(entries)
        n = entries[0].sequence_nr
        async with self._lock:
            try:
                await db.execute("BEGIN IMMEDIATE")
                meta = list(await db.execute_fetchall(_META, (persistence_id,)))
                highest, stored = (meta[0][0], meta[0][1]) if meta else (0, 0)

                async def kept_epoch() -> int:
                    kept = list(await db.execute_fetchall(_EPOCH_AT, (persistence_id, n - 1)))
                    return int(kept[0][0]) if kept else 0

                await check_replace_against(persistence_id, entries, highest, stored, kept_epoch)
                await db.execute(_DELETE_FROM, (persistence_id, n))
                await db.execute(_DELETE_SNAPSHOTS_FROM, (persistence_id, n))
                await db.execute(_REWIND, (persistence_id, n - 1))
                await db.executemany(_INSERT, [_row_of(entry) for entry in entries])
                await db.commit()
            except BaseException as exc:
                await self._rollback(db)
                if isinstance(exc, sqlite3.Error | ValueError | OSError):
                    raise self._translate(exc) from exc
                raise

    async def delete_to(self, persistence_id: str, to_sequence_nr: int) -> None:
        """Delete the entries up to ``to_sequence_nr`` inclusive; idempotent.

        The high-water mark stays (only `replace_suffix` lowers `highest_sequence_nr`).

        Raises:
            JournalUnavailable: the file failed or stayed locked beyond ``busy_timeout``.
        """
        bound = check_bound(to_sequence_nr, "to_sequence_nr")
        await self._modify(_DELETE_TO, (check_id(persistence_id), bound))

    async def save_snapshot(self, snapshot: SnapshotEntry) -> None:
        """Store ``snapshot`` durably, replacing one with the same id and sequence number.

        Raises:
            WriteRejected: a field of the wrong type.
            JournalUnavailable: the file failed.
        """
        await self._ensure_open()
        check_snapshot(snapshot)
        await self._modify(
            _SAVE_SNAPSHOT,
            (
                snapshot.persistence_id,
                snapshot.sequence_nr,
                snapshot.timestamp_ms,
                snapshot.serializer,
                snapshot.manifest,
                snapshot.payload,
            ),
        )

    async def delete_snapshots(
        self, persistence_id: str, max_sequence_nr: int, min_sequence_nr: int = 0
    ) -> None:
        """Delete the snapshots within the inclusive bounds; idempotent."""
        high = check_bound(max_sequence_nr, "max_sequence_nr")
        low = check_bound(min_sequence_nr, "min_sequence_nr")
        await self._modify(_DELETE_SNAPSHOTS, (check_id(persistence_id), low, high))

    # ----------------------------------------------------------------------------------------
    # reads

    async def replay(
        self,
        persistence_id: str,
        from_sequence_nr: int = 1,
        to_sequence_nr: int = MAX_SEQUENCE_NR,
        limit: int | None = None,
    ) -> AsyncIterator[JournalEntry]:
        """Stream the entries in the inclusive range, ``replay_page_size`` rows per query.

        No statement stays open between pages, so a slow consumer holds no lock.
        See `Journal.replay`.
        """
        persistence_id, low, high, remaining = check_replay(
            persistence_id, from_sequence_nr, to_sequence_nr, limit
        )
        while remaining > 0 and low <= high:
            page = min(remaining, self._page_size)
            rows = await self._fetch(_REPLAY, (persistence_id, low, high, page))
            for sequence_nr, payload, serializer, manifest, epoch, timestamp_ms, ok in rows:
                if not ok:
                    raise CorruptEntry(entry_error(persistence_id, sequence_nr))
                yield make_entry(
                    persistence_id, sequence_nr, payload, serializer, manifest, epoch, timestamp_ms
                )
            if len(rows) < page:
                return
            remaining -= page
            low = rows[-1][0] + 1

    def _replay_rows(
        self, persistence_id: str, from_sequence_nr: int
    ) -> AsyncGenerator[list[_Row], None]:
        """Recovery's fast path (see `casty.journals._checks.RowReplay`)."""
        persistence_id = check_id(persistence_id)
        low = check_bound(from_sequence_nr, "from_sequence_nr")
        page = self._page_size

        async def fetch(low: int) -> list[_Row]:
            rows = await self._fetch(_REPLAY_ROWS, (persistence_id, low, page))
            if not all(map(_checked, rows)):
                bad = next(row for row in rows if not row[3])
                raise CorruptEntry(entry_error(persistence_id, bad[0]))
            return rows

        return read_ahead(fetch, low, page)

    async def highest_sequence_nr(self, persistence_id: str) -> int:
        """The high-water mark of the id (0 when never written); see `Journal`."""
        rows = await self._fetch(_HIGHEST, (check_id(persistence_id),))
        if not rows:
            return 0
        highest = rows[0][0]
        if type(highest) is not int:
            raise CorruptEntry(f"{persistence_id!r}: stored highest_sequence_nr {highest!r}")
        return highest

    async def load_snapshot(
        self,
        persistence_id: str,
        max_sequence_nr: int = MAX_SEQUENCE_NR,
        min_sequence_nr: int = 0,
        max_timestamp_ms: int | None = None,
    ) -> SnapshotEntry | None:
        """The snapshot with the highest sequence number within the inclusive bounds.

        Raises:
            CorruptEntry: the stored snapshot row has columns of the wrong type.
            JournalUnavailable: the file failed.
        """
        persistence_id, low, high, newest = check_snapshot_query(
            persistence_id, max_sequence_nr, min_sequence_nr, max_timestamp_ms
        )
        rows = await self._fetch(_LOAD_SNAPSHOT, (persistence_id, low, high, newest))
        if not rows:
            return None
        return snapshot_from_row(persistence_id, rows[0])

    # ----------------------------------------------------------------------------------------

    def statistics(self) -> GroupCommitStatistics:
        """Group-commit counters: writes, entries and rounds (writes per round = batching)."""
        return self._commits.statistics()

    async def aclose(self) -> None:
        """Let queued writes commit, then close both connections; idempotent.

        Every method raises `ResourceClosed` afterwards.
        """
        self._closed = True
        await self._commits.aclose()
        async with self._open_lock, self._lock:
            await self._disconnect()
