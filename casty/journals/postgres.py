"""`PostgresJournal`: a journal in PostgreSQL (asyncpg, a connection pool, group commit)."""

from __future__ import annotations

import asyncio
import re
import ssl as ssl_module
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import contextmanager
from operator import itemgetter
from typing import Any, ClassVar, TypeVar, final
from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg

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

__all__ = ["PostgresJournal"]

T = TypeVar("T")

_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,39}")
_serializer_of = itemgetter(2)  # of a row of the recovery page

# Every read here is a range of the primary key, in its order. Without statistics (a new or
# fast-growing table, before autovacuum's ANALYZE) the planner expects one row and picks a
# bitmap scan plus a sort of all the rest of the id's log, for every page: a replay of n
# events then costs O(n^2/page). With bitmap scans off it walks the index, in order.
_SESSION = {"enable_bitmapscan": "off"}

# Everything asyncpg and the socket layer raise; InternalClientError appears when a connection
# terminated by the server is used before its closing is noticed.
_DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)

# A connection the server closed (pg_terminate_backend, restart): class 08 errors, class 57
# (admin shutdown), or asyncpg refusing to use it.
_LOST_CONNECTION = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.InterfaceError,
)

# SQLSTATE classes that say "this input can never be stored": data exception, integrity
# violation, program limit exceeded (a row too large).
_REJECTED_CLASSES = ("22", "23", "54")


def _schema(table: str) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS {table} (
    ordering BIGSERIAL NOT NULL,
    persistence_id TEXT NOT NULL,
    sequence_nr BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    timestamp_ms BIGINT NOT NULL,
    serializer TEXT NOT NULL,
    manifest TEXT NOT NULL,
    payload BYTEA NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (persistence_id, sequence_nr)
);
CREATE UNIQUE INDEX IF NOT EXISTS {table}_ordering_idx ON {table} (ordering);
CREATE TABLE IF NOT EXISTS {table}_snapshots (
    persistence_id TEXT NOT NULL,
    sequence_nr BIGINT NOT NULL,
    timestamp_ms BIGINT NOT NULL,
    serializer TEXT NOT NULL,
    manifest TEXT NOT NULL,
    payload BYTEA NOT NULL,
    PRIMARY KEY (persistence_id, sequence_nr)
);
"""


# How a write is checked, in every statement below: the id's newest row (kept as a tombstone by
# delete_to, so it outlives deletion) must be numbered first_nr - 1 and carry an epoch no newer
# than the write's. Epochs never decrease along a log, so the newest row holds the highest.
# Racing writers of one id both pass the check only when they insert the same first number;
# the primary key then lets exactly one commit. A writer whose check ran before a rival's
# commit fails it as a gap instead, so the accepted writes of an id always form one sequence.


# One write of one entry: plain parameters, the cheapest form.
def _write_single(table: str) -> str:
    return f"""
INSERT INTO {table} (persistence_id, sequence_nr, epoch, timestamp_ms, serializer, manifest,
                     payload)
SELECT $1, $2::bigint, $3::bigint, $4::bigint, $5, $6, $7
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT sequence_nr, epoch FROM {table} WHERE persistence_id = $1
    ORDER BY sequence_nr DESC LIMIT 1
) AS last ON true
WHERE COALESCE(last.sequence_nr, 0) = $2::bigint - 1 AND COALESCE(last.epoch, 0) <= $3::bigint
"""


# One write of several entries, numbered first_nr ($2) onwards.
def _write_one(table: str) -> str:
    return f"""
INSERT INTO {table} (persistence_id, sequence_nr, epoch, timestamp_ms, serializer, manifest,
                     payload)
SELECT $1, $2::bigint + e.ord - 1, $3::bigint, e.timestamp_ms, e.serializer, e.manifest,
       e.payload
FROM unnest($4::bigint[], $5::text[], $6::text[], $7::bytea[])
    WITH ORDINALITY AS e(timestamp_ms, serializer, manifest, payload, ord)
LEFT JOIN LATERAL (
    SELECT sequence_nr, epoch FROM {table} WHERE persistence_id = $1
    ORDER BY sequence_nr DESC LIMIT 1
) AS last ON true
WHERE COALESCE(last.sequence_nr, 0) = $2::bigint - 1 AND COALESCE(last.epoch, 0) <= $3::bigint
ORDER BY e.ord
"""


# A round of writes (one per persistence id, see GroupCommit) in one statement, so the whole
# round costs one round trip and one commit. Returns the ids whose writes were stored.
def _write_many(table: str) -> str:
    return f"""
WITH w AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])
        AS w(persistence_id, first_nr, epoch)
), ok AS (
    SELECT w.persistence_id, w.epoch FROM w
    LEFT JOIN LATERAL (
        SELECT j.sequence_nr, j.epoch FROM {table} AS j
        WHERE j.persistence_id = w.persistence_id
        ORDER BY j.sequence_nr DESC LIMIT 1
    ) AS last ON true
    WHERE COALESCE(last.sequence_nr, 0) = w.first_nr - 1 AND COALESCE(last.epoch, 0) <= w.epoch
), ins AS (
    INSERT INTO {table} (persistence_id, sequence_nr, epoch, timestamp_ms, serializer,
                         manifest, payload)
    SELECT e.persistence_id, e.sequence_nr, ok.epoch, e.timestamp_ms, e.serializer, e.manifest,
           e.payload
    FROM unnest($4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::text[], $9::bytea[])
        WITH ORDINALITY AS e(persistence_id, sequence_nr, timestamp_ms, serializer, manifest,
                             payload, ord)
    JOIN ok ON ok.persistence_id = e.persistence_id
    ORDER BY e.ord
)
SELECT persistence_id FROM ok
"""


# delete_to removes the rows in range but keeps the id's newest row, emptied and flagged, as
# the high-water mark and epoch fence (Akka's JDBC journal keeps it the same way).
def _delete_to(table: str) -> str:
    return f"""
WITH newest AS (
    SELECT max(sequence_nr) AS nr FROM {table} WHERE persistence_id = $1
), mark AS (
    UPDATE {table} SET deleted = true, payload = ''::bytea
    WHERE persistence_id = $1 AND sequence_nr = (SELECT nr FROM newest)
      AND sequence_nr <= $2 AND NOT deleted
)
DELETE FROM {table}
WHERE persistence_id = $1 AND sequence_nr <= $2 AND sequence_nr < (SELECT nr FROM newest)
"""


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Pool reset hook: this journal never changes session state, so skip the reset query."""


async def _in_task(work: Coroutine[Any, Any, T]) -> T:
    """Await ``work``, in a task of its own when the caller runs outside any task.

    asyncpg opens connections (and returns them to a pool) inside ``asyncio.timeout``, which
    raises a bare ``RuntimeError`` outside a task; an actor's handler runs outside one until it
    first suspends (see `casty.actors.cell`). The task is awaited at once, so it ends with the
    call, and it is cancelled if the caller is.
    """
    if asyncio.current_task() is not None:
        return await work
    task = asyncio.ensure_future(work)
    try:
        return await task
    finally:
        task.cancel()  # a no-op once it is done; otherwise the caller was cancelled


@final
class PostgresJournal(Journal):
    """A journal in PostgreSQL tables, through an asyncpg connection pool, with group commit.

    Concurrent `write` calls are committed together: each round is one ``INSERT ... SELECT
    unnest(...)`` statement on a connection held by the writer, with per-write checks inside
    the statement (one write's conflict never fails the others). Reads use the other pool
    connections. Tables: ``<table>`` (primary key ``(persistence_id, sequence_nr)``, an
    ``ordering`` BIGSERIAL column with a unique index, and a ``deleted`` flag: `delete_to` keeps
    an id's newest row as an empty marker, its high-water mark) and ``<table>_snapshots``;
    created on first use unless ``auto_create_schema`` is false, or by `create_schema`.
    Several processes may share the tables.

    URL: ``postgresql://user[:password]@host[:port]/database`` or ``postgresql+asyncpg://...``
    (``postgres://`` works too). Query options: ``table`` (default ``casty_journal``),
    ``min_size`` and ``max_size`` (pool bounds, default 1 and 10), ``command_timeout``
    (seconds), ``auto_create_schema`` (``true``/``false``); any other query parameter (such
    as ``sslmode``) goes to asyncpg. Pass secrets and an ``ssl`` context as keyword options.
    Extra: ``pip install 'casty[postgres]'``.

    Capabilities: atomic batches, durable, snapshots, concurrent writers, `replace_suffix`.

    Args:
        dsn: a libpq connection URL for asyncpg.
        table: base name of the tables: lower-case letters, digits and ``_``, at most 40.
        min_size, max_size: bounds of the pool that serves reads; writes use one more
            connection of their own.
        connect_timeout: seconds to wait for a new connection.
        command_timeout: seconds a statement may run before `JournalUnavailable`.
        auto_create_schema: create the tables on first use.
        max_batch_entries: at most this many entries per group-commit round.
        replay_page_size: entries fetched per query while replaying (bounds replay memory).
        password: overrides the DSN's password.
        ssl: an `ssl.SSLContext`, or an asyncpg ``sslmode`` string.
        server_settings: session settings, such as ``{"application_name": "billing"}``.

    Raises:
        ConfigurationError: an option is out of range (at construction; no I/O happens then).
    """

    capabilities: ClassVar[JournalCapabilities] = JournalCapabilities(replace_suffix=True)

    def __init__(
        self,
        dsn: str,
        *,
        table: str = "casty_journal",
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
        command_timeout: float = 30.0,
        auto_create_schema: bool = True,
        max_batch_entries: int = 4096,
        replay_page_size: int = 1024,
        password: str | None = None,
        ssl: ssl_module.SSLContext | str | None = None,
        server_settings: Mapping[str, str] | None = None,
    ) -> None:
        if type(dsn) is not str or not dsn:
            raise ConfigurationError(f"dsn must be a PostgreSQL URL, got {dsn!r}")
        if type(table) is not str or not _TABLE_NAME.fullmatch(table):
            raise ConfigurationError(
                f"table must be lower-case letters, digits and '_' (at most 40), got {table!r}"
            )
        for name, value, low in (
            ("min_size", min_size, 0),
            ("max_size", max_size, 1),
            ("max_batch_entries", max_batch_entries, 1),
            ("replay_page_size", replay_page_size, 1),
        ):
            if type(value) is not int or value < low:
                raise ConfigurationError(f"{name} must be an int >= {low}, got {value!r}")
        if min_size > max_size:
            raise ConfigurationError(f"min_size {min_size} is above max_size {max_size}")
        for name, seconds in (
            ("connect_timeout", connect_timeout),
            ("command_timeout", command_timeout),
        ):
            if not isinstance(seconds, int | float) or seconds <= 0:
                raise ConfigurationError(f"{name} must be seconds > 0, got {seconds!r}")
        self._dsn = dsn
        self._table = table
        self._connect_options: dict[str, Any] = {
            "timeout": float(connect_timeout),
            "command_timeout": float(command_timeout),
            "password": password,
            "ssl": ssl,
            "server_settings": {**_SESSION, **(server_settings or {})},
        }
        self._pool_sizes = {"min_size": min_size, "max_size": max_size}
        self._auto_create_schema = bool(auto_create_schema)
        self._page_size = replay_page_size
        self._sql_write_single = _write_single(table)
        self._sql_write_one = _write_one(table)
        self._sql_write_many = _write_many(table)
        self._sql_delete_to = _delete_to(table)
        self._sql_lock = f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"
        self._sql_epoch_at = (
            f"SELECT epoch FROM {table} WHERE persistence_id = $1 AND sequence_nr = $2"
            " AND NOT deleted"
        )
        self._sql_delete_from = (
            f"DELETE FROM {table} WHERE persistence_id = $1 AND sequence_nr >= $2"
        )
        self._sql_delete_snapshots_from = (
            f"DELETE FROM {table}_snapshots WHERE persistence_id = $1 AND sequence_nr >= $2"
        )
        self._sql_insert = f"""
INSERT INTO {table} (persistence_id, sequence_nr, epoch, timestamp_ms, serializer, manifest,
                     payload)
SELECT $1, e.sequence_nr, e.epoch, e.timestamp_ms, e.serializer, e.manifest, e.payload
FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::bytea[])
    WITH ORDINALITY AS e(sequence_nr, epoch, timestamp_ms, serializer, manifest, payload, ord)
ORDER BY e.ord
"""
        self._sql_newest = (
            f"SELECT sequence_nr, epoch FROM {table} WHERE persistence_id = $1"
            " ORDER BY sequence_nr DESC LIMIT 1"
        )
        self._sql_replay_rows = (  # recovery's page: only what it decodes (see RowReplay)
            f"SELECT sequence_nr, payload, serializer FROM {table}"
            " WHERE persistence_id = $1 AND sequence_nr >= $2 AND NOT deleted"
            " ORDER BY sequence_nr LIMIT $3"
        )
        self._sql_replay = (
            f"SELECT sequence_nr, payload, serializer, manifest, epoch, timestamp_ms FROM {table}"
            " WHERE persistence_id = $1 AND sequence_nr BETWEEN $2 AND $3 AND NOT deleted"
            " ORDER BY sequence_nr LIMIT $4"
        )
        self._pool: asyncpg.Pool | None = None
        self._writer: asyncpg.Connection | None = None  # held by the group-commit writer
        self._closed = False
        self._open_lock = asyncio.Lock()
        self._commits = GroupCommit(self._flush, max_entries=max_batch_entries, name=repr(self))

    @classmethod
    def from_url(cls, url: BackendURL, **options: Any) -> PostgresJournal:
        """Build from ``postgresql://user@host:5432/db?table=casty_journal&max_size=10``.

        Casty's query options are taken out; the rest of the URL goes to asyncpg. Keyword
        options override query values.

        Raises:
            ConfigurationError: an option has an invalid value.
        """
        parts = urlsplit(url.raw)
        query = dict(url.query)
        kwargs: dict[str, Any] = {}
        if "table" in query:
            kwargs["table"] = query.pop("table")
        for name in ("min_size", "max_size"):
            if name in query:
                kwargs[name] = _parse(query.pop(name), int, name)
        for name in ("command_timeout", "connect_timeout"):
            if name in query:
                kwargs[name] = _parse(query.pop(name), float, name)
        if "auto_create_schema" in query:
            raw = query.pop("auto_create_schema").lower()
            if raw not in ("true", "false", "1", "0"):
                raise ConfigurationError(f"auto_create_schema must be true or false, got {raw!r}")
            kwargs["auto_create_schema"] = raw in ("true", "1")
        kwargs.update(options)
        dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(query), ""))
        return cls(dsn, **kwargs)

    def __repr__(self) -> str:
        parts = urlsplit(self._dsn)
        where = f"{parts.hostname or 'localhost'}{parts.path}"
        return f"PostgresJournal({where!r}, table={self._table!r})"

    # ----------------------------------------------------------------------------------------
    # the pool and the error choke point

    def _translate(self, exc: BaseException) -> JournalError:
        """Map an asyncpg/OS error to the casty error tree (the only place that does)."""
        if isinstance(exc, asyncpg.UniqueViolationError):
            return SequenceConflict(f"{self._table}: a sequence_nr is already taken")
        if isinstance(exc, asyncpg.PostgresError):
            state = exc.sqlstate or ""
            if state[:2] in _REJECTED_CLASSES:
                return WriteRejected(f"{self._table}: {exc}")
            if state == "42P01":  # undefined_table
                return JournalUnavailable(
                    f"{self._table}: the journal tables do not exist; call create_schema() "
                    f"or enable auto_create_schema ({exc})"
                )
            return JournalUnavailable(f"{self!r}: {type(exc).__name__}: {exc}")
        return JournalUnavailable(f"{self!r}: {type(exc).__name__}: {exc}")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except _DRIVER_ERRORS as exc:
            raise self._translate(exc) from exc

    async def _get_pool(self) -> asyncpg.Pool:
        if self._closed:
            raise ResourceClosed(f"{self!r} is closed")
        pool = self._pool
        if pool is not None:
            return pool
        async with self._open_lock:
            if self._pool is None:
                self._pool = await _in_task(self._open_pool())
            return self._pool

    async def _open_pool(self) -> asyncpg.Pool:
        with self._errors():
            pool = await asyncpg.create_pool(
                self._dsn, reset=_keep_session, **self._pool_sizes, **self._connect_options
            )
        try:
            if self._auto_create_schema:
                await self._create_schema(pool)
        except BaseException:
            await asyncio.shield(pool.close())
            raise
        return pool

    async def _create_schema(self, pool: asyncpg.Pool) -> None:
        if asyncio.current_task() is None:
            return await _in_task(self._create_schema(pool))
        with self._errors():
            async with pool.acquire() as connection, connection.transaction():
                # Concurrent CREATE ... IF NOT EXISTS can still collide in the catalogs; the
                # advisory lock makes processes opening at once take turns.
                await connection.execute(
                    "SELECT pg_advisory_xact_lock(hashtext($1))", f"casty:{self._table}"
                )
                await connection.execute(_schema(self._table))

    async def create_schema(self) -> None:
        """Create the tables and index if they do not exist; idempotent.

        Raises:
            JournalUnavailable: the server cannot be reached, or refuses (permissions).
            ResourceClosed: after `aclose`.
        """
        await self._create_schema(await self._get_pool())

    async def open(self) -> None:
        """Create the pool now (and the schema, unless ``auto_create_schema`` is false).

        Raises:
            JournalUnavailable: the server cannot be reached.
            ResourceClosed: after `aclose`.
        """
        await self._get_pool()

    # ----------------------------------------------------------------------------------------
    # writes

    async def write(self, entries: Sequence[JournalEntry]) -> None:
        """Append ``entries`` atomically, committed with concurrent writes; see `Journal.write`.

        A connection lost while the round commits gives `JournalUnavailable`: the write may
        or may not be stored (re-reading `highest_sequence_nr` tells). A connection found dead
        before anything was sent is replaced and the round retried once, invisibly.
        """
        if self._pool is None or self._closed:
            await self._get_pool()
        if not entries:
            return
        persistence_id = check_write(entries)
        await self._commits.submit(persistence_id, entries)

    def _write_nowait(
        self, entries: Sequence[JournalEntry], callback: WriteCallback
    ) -> Callable[[], None] | None:
        """`write` for a caller that must not suspend (see `casty.journals._checks.WriteNowait`)."""
        if self._pool is None or self._closed:
            return None  # opening awaits: the caller uses `write`
        return self._commits.submit_nowait(check_write(entries), entries, callback).withdraw

    async def _writer_connection(self) -> asyncpg.Connection:
        """The write path's own connection, outside the pool (no proxy, no reset on release)."""
        if self._writer is None or self._writer.is_closed():
            self._drop_writer()
            with self._errors():
                self._writer = await _in_task(asyncpg.connect(self._dsn, **self._connect_options))
        return self._writer

    def _drop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None and not writer.is_closed():
            writer.terminate()  # after a failure or a cancellation its state is unknown

    async def _flush(self, batch: list[PendingWrite]) -> None:
        try:
            try:
                await self._flush_on(await self._writer_connection(), batch)
            except asyncpg.exceptions.InternalClientError:
                # The server closed the idle connection and asyncpg refused to start the
                # statement: nothing was sent, so one retry on a new connection is safe.
                self._drop_writer()
                await self._flush_on(await self._writer_connection(), batch)
        except _DRIVER_ERRORS as exc:
            self._drop_writer()
            raise self._translate(exc) from exc
        except asyncio.CancelledError:
            # A statement cut short leaves the connection mid-protocol; the server rolls the
            # statement back (or has committed it whole) when the connection goes.
            self._drop_writer()
            raise

    async def _flush_on(self, connection: asyncpg.Connection, batch: list[PendingWrite]) -> None:
        if len(batch) == 1:
            await self._write_alone(connection, batch[0])
            return
        columns = _columns(batch)
        try:
            stored = {row[0] for row in await connection.fetch(self._sql_write_many, *columns)}
        except asyncpg.PostgresError as exc:
            if not _rejects_input(exc):
                raise
            # One write's input broke the statement (or it met a rival's uncommitted row of
            # the same number): retry each alone so only the offender fails.
            for pending in batch:
                await self._write_alone(connection, pending)
            return
        rejected = [pending for pending in batch if pending.persistence_id not in stored]
        if rejected:
            await self._explain_rejections(connection, rejected)
        for pending in batch:
            pending.resolve()

    async def _write_alone(self, connection: asyncpg.Connection, pending: PendingWrite) -> None:
        entries = pending.entries
        first = entries[0]
        try:
            if len(entries) == 1:
                status = await connection.execute(
                    self._sql_write_single,
                    pending.persistence_id,
                    first.sequence_nr,
                    first.epoch,
                    first.timestamp_ms,
                    first.serializer,
                    first.manifest,
                    first.payload,
                )
            else:
                status = await connection.execute(
                    self._sql_write_one,
                    pending.persistence_id,
                    first.sequence_nr,
                    first.epoch,
                    [entry.timestamp_ms for entry in entries],
                    [entry.serializer for entry in entries],
                    [entry.manifest for entry in entries],
                    [entry.payload for entry in entries],
                )
        except asyncpg.PostgresError as exc:
            if not _rejects_input(exc):
                raise
            pending.resolve(self._translate(exc))
            return
        if status.endswith(" 0"):  # "INSERT 0 <rows>": the check let nothing through
            await self._explain_rejections(connection, [pending])
        else:
            pending.resolve()

    async def _explain_rejections(
        self, connection: asyncpg.Connection, rejected: list[PendingWrite]
    ) -> None:
        """Tell each rejected write whether its epoch was stale or its number not the next."""
        for pending in rejected:
            newest = await connection.fetchrow(self._sql_newest, pending.persistence_id)
            highest, stored_epoch = (newest[0], newest[1]) if newest else (0, 0)
            first = pending.entries[0]
            if stored_epoch > first.epoch:
                pending.resolve(
                    StaleEpoch(
                        f"{pending.persistence_id!r}: epoch {first.epoch} is older than the "
                        f"stored epoch {stored_epoch}"
                    )
                )
            else:
                pending.resolve(
                    SequenceConflict(
                        f"{pending.persistence_id!r}: sequence_nr {first.sequence_nr} is not "
                        f"the next one (the highest written is {highest})"
                    )
                )

    async def _execute(self, sql: str, *args: Any) -> None:
        pool = await self._get_pool()
        if asyncio.current_task() is None:  # the pool may open a connection: see _in_task
            return await _in_task(self._execute(sql, *args))
        with self._errors():
            await pool.execute(sql, *args)

    async def replace_suffix(self, entries: Sequence[JournalEntry]) -> None:
        """Replace the entries from ``entries[0].sequence_nr`` on; see `Journal.replace_suffix`.

        One transaction on a pool connection. It first takes ``LOCK TABLE <table> IN SHARE
        ROW EXCLUSIVE MODE``: writes (every process's, every id's) wait for it, and it waits
        for writes in flight, so no write interleaves with it; the lock lasts only this short
        transaction (one round trip per statement). A call cancelled or failing in the
        store closes its connection, and the server rolls the transaction back.

        Raises:
            WriteRejected, SequenceConflict, StaleEpoch, ResourceClosed: see
                `Journal.replace_suffix`.
            JournalUnavailable: the server failed or timed out (``command_timeout``); a
                connection lost while committing leaves the outcome unknown, as for `write`.
        """
        pool = await self._get_pool()
        persistence_id = check_replace(entries)
        await self._replace(pool, persistence_id, entries)

    async def _replace(
        self, pool: asyncpg.Pool, persistence_id: str, entries: Sequence[JournalEntry]
    ) -> None:
        if asyncio.current_task() is None:  # the pool may open a connection: see _in_task
            return await _in_task(self._replace(pool, persistence_id, entries))
        with self._errors():
            async with pool.acquire() as connection:
                transaction = connection.transaction()
                try:
                    await transaction.start()
                    await self._replace_on(connection, persistence_id, entries)
                    await transaction.commit()
                except (SequenceConflict, StaleEpoch):
                    await transaction.rollback()  # nothing changed yet; releases the lock
                    raise
                except BaseException:
                    connection.terminate()  # its state is unknown; the server rolls back
                    raise

    async def _replace_on(
        self, connection: asyncpg.Connection, persistence_id: str, entries: Sequence[JournalEntry]
    ) -> None:
        n = entries[0].sequence_nr
        await connection.execute(self._sql_lock)
        # The newest row (a tombstone after delete_to) holds the id's epoch.
        newest = await connection.fetchrow(self._sql_newest, persistence_id)
        highest, stored = (newest[0], newest[1]) if newest else (0, 0)

        async def kept_epoch() -> int:
            kept = await connection.fetchval(self._sql_epoch_at, persistence_id, n - 1)
            return 0 if kept is None else int(kept)

        await check_replace_against(persistence_id, entries, highest, stored, kept_epoch)
        await connection.execute(self._sql_delete_from, persistence_id, n)
        await connection.execute(self._sql_delete_snapshots_from, persistence_id, n)
        await connection.execute(
            self._sql_insert,
            persistence_id,
            [entry.sequence_nr for entry in entries],
            [entry.epoch for entry in entries],
            [entry.timestamp_ms for entry in entries],
            [entry.serializer for entry in entries],
            [entry.manifest for entry in entries],
            [entry.payload for entry in entries],
        )

    async def delete_to(self, persistence_id: str, to_sequence_nr: int) -> None:
        """Delete the entries up to ``to_sequence_nr`` inclusive; idempotent.

        The high-water mark stays (only `replace_suffix` lowers `highest_sequence_nr`).

        Raises:
            JournalUnavailable: the server failed or timed out.
        """
        bound = check_bound(to_sequence_nr, "to_sequence_nr")
        await self._execute(self._sql_delete_to, check_id(persistence_id), bound)

    async def save_snapshot(self, snapshot: SnapshotEntry) -> None:
        """Store ``snapshot``, replacing one with the same id and sequence number.

        Raises:
            WriteRejected: a field of the wrong type.
            JournalUnavailable: the server failed or timed out.
        """
        await self._get_pool()
        check_snapshot(snapshot)
        await self._execute(
            f"INSERT INTO {self._table}_snapshots (persistence_id, sequence_nr, timestamp_ms,"
            " serializer, manifest, payload) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (persistence_id, sequence_nr) DO UPDATE SET"
            " timestamp_ms = EXCLUDED.timestamp_ms, serializer = EXCLUDED.serializer,"
            " manifest = EXCLUDED.manifest, payload = EXCLUDED.payload",
            snapshot.persistence_id,
            snapshot.sequence_nr,
            snapshot.timestamp_ms,
            snapshot.serializer,
            snapshot.manifest,
            snapshot.payload,
        )

    async def delete_snapshots(
        self, persistence_id: str, max_sequence_nr: int, min_sequence_nr: int = 0
    ) -> None:
        """Delete the snapshots within the inclusive bounds; idempotent."""
        high = check_bound(max_sequence_nr, "max_sequence_nr")
        low = check_bound(min_sequence_nr, "min_sequence_nr")
        await self._execute(
            f"DELETE FROM {self._table}_snapshots"
            " WHERE persistence_id = $1 AND sequence_nr BETWEEN $2 AND $3",
            check_id(persistence_id),
            low,
            high,
        )

    # ----------------------------------------------------------------------------------------
    # reads

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run a read on a pool connection, replacing pooled connections the server dropped.

        Reads change nothing, so a read that finds its connection lost is retried on another
        one, at most once per pooled connection; other failures are not retried.
        """
        pool = await self._get_pool()
        if asyncio.current_task() is None:  # the pool may open a connection: see _in_task
            return await _in_task(self._fetch(sql, *args))
        retries = self._pool_sizes["max_size"]
        with self._errors():
            while True:
                async with pool.acquire() as connection:
                    try:
                        rows: list[asyncpg.Record] = await connection.fetch(sql, *args)
                        return rows
                    except _LOST_CONNECTION:
                        connection.terminate()  # the pool opens a new one in its place
                        if retries == 0:
                            raise
                        retries -= 1

    async def replay(
        self,
        persistence_id: str,
        from_sequence_nr: int = 1,
        to_sequence_nr: int = MAX_SEQUENCE_NR,
        limit: int | None = None,
    ) -> AsyncIterator[JournalEntry]:
        """Stream the entries in the inclusive range, ``replay_page_size`` rows per query.

        Each page borrows a pool connection only while it is fetched. See `Journal.replay`.
        """
        persistence_id, low, high, remaining = check_replay(
            persistence_id, from_sequence_nr, to_sequence_nr, limit
        )
        while remaining > 0 and low <= high:
            page = min(remaining, self._page_size)
            rows = await self._fetch(self._sql_replay, persistence_id, low, high, page)
            for sequence_nr, payload, serializer, manifest, epoch, timestamp_ms in rows:
                # The column types guarantee the Python types; only the serializer name can
                # be unusable.
                if not serializer:
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
    ) -> AsyncGenerator[list[asyncpg.Record], None]:
        """Recovery's fast path (see `casty.journals._checks.RowReplay`)."""
        persistence_id = check_id(persistence_id)
        low = check_bound(from_sequence_nr, "from_sequence_nr")
        page = self._page_size

        async def fetch(low: int) -> list[asyncpg.Record]:
            rows = await self._fetch(self._sql_replay_rows, persistence_id, low, page)
            # The column types guarantee the Python types; only the serializer name can be
            # unusable.
            if not all(map(_serializer_of, rows)):
                bad = next(row for row in rows if not row[2])
                raise CorruptEntry(entry_error(persistence_id, bad[0]))
            return rows

        return read_ahead(fetch, low, page)

    async def highest_sequence_nr(self, persistence_id: str) -> int:
        """The high-water mark of the id (0 when never written); see `Journal`."""
        rows = await self._fetch(self._sql_newest, check_id(persistence_id))
        return int(rows[0][0]) if rows else 0

    async def load_snapshot(
        self,
        persistence_id: str,
        max_sequence_nr: int = MAX_SEQUENCE_NR,
        min_sequence_nr: int = 0,
        max_timestamp_ms: int | None = None,
    ) -> SnapshotEntry | None:
        """The snapshot with the highest sequence number within the inclusive bounds.

        Raises:
            CorruptEntry: the stored snapshot has an empty serializer name.
            JournalUnavailable: the server failed or timed out.
        """
        persistence_id, low, high, newest = check_snapshot_query(
            persistence_id, max_sequence_nr, min_sequence_nr, max_timestamp_ms
        )
        rows = await self._fetch(
            "SELECT sequence_nr, payload, serializer, manifest, timestamp_ms"
            f" FROM {self._table}_snapshots WHERE persistence_id = $1"
            " AND sequence_nr BETWEEN $2 AND $3 AND timestamp_ms <= $4"
            " ORDER BY sequence_nr DESC LIMIT 1",
            persistence_id,
            low,
            high,
            newest,
        )
        return snapshot_from_row(persistence_id, rows[0]) if rows else None

    # ----------------------------------------------------------------------------------------

    def statistics(self) -> GroupCommitStatistics:
        """Group-commit counters: writes, entries and rounds (writes per round = batching)."""
        return self._commits.statistics()

    async def aclose(self) -> None:
        """Let queued writes commit, then close the pool; idempotent.

        Every method raises `ResourceClosed` afterwards.
        """
        self._closed = True
        await self._commits.aclose()
        async with self._open_lock:
            pool, self._pool = self._pool, None
            writer, self._writer = self._writer, None
            timeout = self._connect_options["timeout"]
            if writer is not None and not writer.is_closed():
                try:
                    await writer.close(timeout=timeout)
                except _DRIVER_ERRORS:
                    writer.terminate()  # the server is gone; drop the socket without goodbyes
            if pool is None:
                return
            try:
                await asyncio.wait_for(pool.close(), timeout=timeout)
            except _DRIVER_ERRORS:
                pool.terminate()


def _rejects_input(exc: asyncpg.PostgresError) -> bool:
    return (exc.sqlstate or "")[:2] in _REJECTED_CLASSES


def _parse(raw: str, kind: type[int] | type[float], name: str) -> int | float:
    try:
        return kind(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None


def _columns(batch: list[PendingWrite]) -> list[list[Any]]:
    """The nine array parameters of the round statement."""
    ids: list[str] = []
    firsts: list[int] = []
    epochs: list[int] = []
    entry_ids: list[str] = []
    sequence_nrs: list[int] = []
    timestamps: list[int] = []
    serializers: list[str] = []
    manifests: list[str] = []
    payloads: list[bytes] = []
    for pending in batch:
        entries = pending.entries
        ids.append(pending.persistence_id)
        firsts.append(entries[0].sequence_nr)
        epochs.append(entries[0].epoch)
        for entry in entries:
            entry_ids.append(entry.persistence_id)
            sequence_nrs.append(entry.sequence_nr)
            timestamps.append(entry.timestamp_ms)
            serializers.append(entry.serializer)
            manifests.append(entry.manifest)
            payloads.append(entry.payload)
    return [
        ids,
        firsts,
        epochs,
        entry_ids,
        sequence_nrs,
        timestamps,
        serializers,
        manifests,
        payloads,
    ]
