"""PostgresJournal specifics: URLs, schema, lost connections, corrupt rows, group commit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from casty.abc import JournalEntry
from casty.errors import (
    ConfigurationError,
    CorruptEntry,
    JournalUnavailable,
    SequenceConflict,
)
from casty.journals import as_journal
from casty.journals.postgres import PostgresJournal
from casty.testing.journal_contract import make_entries
from casty.testing.wait import wait_until


@pytest_asyncio.fixture
async def journal(postgres_dsn: str, postgres_table: str) -> AsyncIterator[PostgresJournal]:
    journal = PostgresJournal(postgres_dsn, table=postgres_table, connect_timeout=2.0)
    try:
        yield journal
    finally:
        await journal.aclose()


async def _sequence_nrs(journal: PostgresJournal, persistence_id: str) -> list[int]:
    return [entry.sequence_nr async for entry in journal.replay(persistence_id)]


def test_url_forms_and_options() -> None:
    journal = as_journal("postgresql+asyncpg://u:secret@db.internal:5433/app?table=events")
    assert repr(journal) == "PostgresJournal('db.internal/app', table='events')"
    assert "secret" not in repr(journal)
    assert isinstance(as_journal("postgres://u@h/db?max_size=4&min_size=0"), PostgresJournal)


@pytest.mark.parametrize(
    "query",
    [
        "table=Bad-Name",
        "max_size=0",
        "min_size=5&max_size=2",
        "command_timeout=never",
        "auto_create_schema=maybe",
    ],
)
def test_bad_url_options_raise_configuration_error(query: str) -> None:
    with pytest.raises(ConfigurationError):
        as_journal(f"postgresql://u@h/db?{query}")


async def test_unreachable_server_raises_journal_unavailable() -> None:
    journal = PostgresJournal("postgresql://postgres@127.0.0.1:1/test", connect_timeout=1.0)
    try:
        with pytest.raises(JournalUnavailable) as info:
            await journal.write(make_entries("p", 1, 1))
        assert isinstance(info.value.__cause__, OSError)
    finally:
        await journal.aclose()


async def test_missing_schema_says_so_until_create_schema(
    postgres_dsn: str, postgres_table: str
) -> None:
    journal = PostgresJournal(postgres_dsn, table=postgres_table, auto_create_schema=False)
    try:
        with pytest.raises(JournalUnavailable, match="create_schema"):
            await journal.write(make_entries("p", 1, 1))
        await journal.create_schema()
        await journal.create_schema()  # idempotent
        await journal.write(make_entries("p", 1, 1))
        assert await journal.highest_sequence_nr("p") == 1
    finally:
        await journal.aclose()


async def test_ordering_column_follows_commit_order(
    journal: PostgresJournal, postgres_dsn: str, postgres_table: str
) -> None:
    await journal.write(make_entries("b", 1, 2))
    await journal.write(make_entries("a", 1, 1))
    await journal.write(make_entries("b", 3, 1))
    connection = await asyncpg.connect(postgres_dsn)
    try:
        rows = await connection.fetch(
            f"SELECT persistence_id, sequence_nr FROM {postgres_table} ORDER BY ordering"
        )
    finally:
        await connection.close()
    assert [tuple(row) for row in rows] == [("b", 1), ("b", 2), ("a", 1), ("b", 3)]


async def test_corrupt_row_raises_corrupt_entry_after_the_good_entries(
    journal: PostgresJournal, postgres_dsn: str, postgres_table: str
) -> None:
    await journal.write(make_entries("p", 1, 2))
    connection = await asyncpg.connect(postgres_dsn)
    try:
        await connection.execute(
            f"INSERT INTO {postgres_table} (persistence_id, sequence_nr, epoch, timestamp_ms,"
            " serializer, manifest, payload) VALUES ('p', 3, 0, 0, '', '', '\\x00')"
        )
    finally:
        await connection.close()
    seen: list[int] = []
    with pytest.raises(CorruptEntry, match="sequence_nr 3"):
        async for entry in journal.replay("p"):
            seen.append(entry.sequence_nr)
    assert seen == [1, 2]


async def test_concurrent_writes_share_commits(journal: PostgresJournal) -> None:
    async def writer(n: int) -> None:
        for nr in range(1, 11):
            await journal.write(make_entries(f"p{n}", nr, 1))

    await asyncio.gather(*(writer(n) for n in range(50)))
    stats = journal.statistics()
    assert stats.writes == 500
    assert stats.rounds <= 100, stats


async def _backends(dsn: str, application_name: str, *, terminate: bool = False) -> set[int]:
    """The server process ids serving ``application_name`` (terminated first, if asked)."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT pid, CASE WHEN $2 THEN pg_terminate_backend(pid) END FROM pg_stat_activity"
            " WHERE application_name = $1",
            application_name,
            terminate,
        )
    finally:
        await connection.close()
    return {row[0] for row in rows}


@pytest.mark.slow
async def test_terminated_connections_lose_nothing_acknowledged_and_recover(
    postgres_dsn: str, postgres_table: str
) -> None:
    name = f"casty-test-{uuid.uuid4().hex[:8]}"
    journal = PostgresJournal(
        postgres_dsn, table=postgres_table, server_settings={"application_name": name}
    )
    acknowledged: dict[str, list[int]] = {f"p{n}": [] for n in range(20)}
    failures: list[BaseException] = []
    stop = asyncio.Event()

    async def writer(persistence_id: str) -> None:
        nr = 1
        while not stop.is_set():
            try:
                await journal.write(make_entries(persistence_id, nr, 1))
            except JournalUnavailable as exc:
                failures.append(exc)
                # The lost write may or may not be stored; the high-water mark says which.
                nr = await _next_after_outage(journal, persistence_id)
                continue
            acknowledged[persistence_id].append(nr)
            nr += 1

    def count() -> int:
        return sum(len(numbers) for numbers in acknowledged.values())

    try:
        async with asyncio.TaskGroup() as tasks:
            for persistence_id in acknowledged:
                tasks.create_task(writer(persistence_id))
            await wait_until(lambda: count() >= 300, timeout=20)
            killed = await _backends(postgres_dsn, name, terminate=True)
            assert killed
            before = count()
            await wait_until(lambda: count() >= before + 300, timeout=20)
            stop.set()
        # Writes went on after the kill, on new connections. (A write may fail with
        # JournalUnavailable, or not at all when its connection died idle: then the
        # statement was never sent and the journal retried it on a new connection.)
        assert not (await _backends(postgres_dsn, name)) & killed
        assert all(isinstance(failure, JournalUnavailable) for failure in failures)
        for persistence_id, numbers in acknowledged.items():
            stored = await _sequence_nrs(journal, persistence_id)
            assert set(numbers) <= set(stored), persistence_id
            assert stored == list(range(1, len(stored) + 1))
    finally:
        await journal.aclose()


async def _next_after_outage(journal: PostgresJournal, persistence_id: str) -> int:
    while True:
        try:
            return await journal.highest_sequence_nr(persistence_id) + 1
        except JournalUnavailable:
            continue  # the pool is reconnecting


@pytest.mark.slow
async def test_batch_cut_by_a_dropped_connection_is_all_or_nothing(
    postgres_dsn: str, postgres_table: str
) -> None:
    name = f"casty-test-{uuid.uuid4().hex[:8]}"
    journal = PostgresJournal(
        postgres_dsn, table=postgres_table, server_settings={"application_name": name}
    )
    try:
        await journal.open()
        big = make_entries("big", 1, 20_000)
        write = asyncio.ensure_future(journal.write(big))
        await wait_until(lambda: journal.statistics().rounds == 1, timeout=5)
        assert await _backends(postgres_dsn, name, terminate=True)
        try:
            await write
        except JournalUnavailable:
            pass
        stored = await _sequence_nrs(journal, "big")
        assert stored in ([], list(range(1, 20_001)))
        assert await journal.highest_sequence_nr("big") == len(stored)
        # the journal works again
        await journal.write(make_entries("big", len(stored) + 1, 1))
    finally:
        await journal.aclose()


async def test_round_with_a_conflict_fails_only_that_write(journal: PostgresJournal) -> None:
    await journal.write(make_entries("taken", 1, 1))
    results = await asyncio.gather(
        *(journal.write(make_entries(f"free{n}", 1, 2)) for n in range(5)),
        journal.write([JournalEntry("taken", 1, b"x", "test")]),
        return_exceptions=True,
    )
    assert [type(r) for r in results[:5]] == [type(None)] * 5
    assert isinstance(results[5], SequenceConflict)


async def test_rounds_racing_from_two_journals_give_each_id_one_winner(
    postgres_dsn: str, postgres_table: str
) -> None:
    first = PostgresJournal(postgres_dsn, table=postgres_table)
    second = PostgresJournal(postgres_dsn, table=postgres_table)
    try:
        await asyncio.gather(first.open(), second.open())
        ids = [f"p{n}" for n in range(30)]
        results = await asyncio.gather(
            *(
                journal.write(make_entries(persistence_id, 1, 2, tag=tag))
                for persistence_id in ids
                for journal, tag in ((first, "first"), (second, "second"))
            ),
            return_exceptions=True,
        )
        for n, persistence_id in enumerate(ids):
            pair = results[2 * n : 2 * n + 2]
            assert sorted(type(r).__name__ for r in pair) == ["NoneType", "SequenceConflict"]
            winner = "first" if pair[0] is None else "second"
            stored = [entry.payload async for entry in first.replay(persistence_id)]
            assert stored == [f"{winner}:1".encode(), f"{winner}:2".encode()]
    finally:
        await first.aclose()
        await second.aclose()


async def test_round_blocked_by_a_concurrent_insert_fails_only_that_write(
    postgres_dsn: str, postgres_table: str
) -> None:
    name = f"casty-test-{uuid.uuid4().hex[:8]}"
    journal = PostgresJournal(
        postgres_dsn, table=postgres_table, server_settings={"application_name": name}
    )
    other = await asyncpg.connect(postgres_dsn)
    observer = await asyncpg.connect(postgres_dsn)
    try:
        await journal.open()
        transaction = other.transaction()
        await transaction.start()
        await other.execute(
            f"INSERT INTO {postgres_table} (persistence_id, sequence_nr, epoch, timestamp_ms,"
            " serializer, manifest, payload) VALUES ('contested', 1, 0, 0, 'test', '', '')"
        )
        # "a" commits alone at once; the other three queue and form one round, which then
        # waits on the uncommitted "contested" row of the other connection.
        writes = asyncio.gather(
            *(
                journal.write(make_entries(persistence_id, 1, 1))
                for persistence_id in ("a", "contested", "b", "c")
            ),
            return_exceptions=True,
        )

        async def round_waits_on_the_lock() -> bool:
            # Not asked on `other`: inside a transaction pg_stat_activity is a frozen snapshot.
            waiting: int = await observer.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = $1 AND wait_event_type = 'Lock'",
                name,
            )
            return waiting > 0

        await wait_until(round_waits_on_the_lock, timeout=5)
        await transaction.commit()
        results = await writes
        assert [type(r).__name__ for r in results] == [
            "NoneType",
            "SequenceConflict",
            "NoneType",
            "NoneType",
        ]
        # "a" alone, then one round; that round's statement failed on the primary key and its
        # writes were retried one by one, so only the contested one failed.
        assert journal.statistics().rounds == 2
        for persistence_id in ("a", "b", "c"):
            assert await _sequence_nrs(journal, persistence_id) == [1]
    finally:
        await observer.close()
        await other.close()
        await journal.aclose()


async def test_sessions_turn_bitmap_scans_off_unless_told_otherwise(
    postgres_dsn: str, postgres_table: str
) -> None:
    # Without statistics (a new or fast-growing table) the planner may answer each replay
    # page with a bitmap scan plus a sort of the whole rest of the log: a replay quadratic in
    # the log's length. The journal's sessions rule that plan out; the caller can override.
    async def setting(journal: PostgresJournal) -> str:
        pool = await journal._get_pool()
        async with pool.acquire() as connection:
            value: str = await connection.fetchval("SHOW enable_bitmapscan")
        return value

    async with PostgresJournal(postgres_dsn, table=postgres_table) as journal:
        assert await setting(journal) == "off"
    overridden = PostgresJournal(
        postgres_dsn, table=postgres_table, server_settings={"enable_bitmapscan": "on"}
    )
    async with overridden:
        assert await setting(overridden) == "on"
