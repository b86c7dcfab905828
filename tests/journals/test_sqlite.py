"""SQLiteJournal specifics: URLs, WAL, bad files, locks, corrupt rows, group commit."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from casty.abc import JournalEntry
from casty.errors import (
    ConfigurationError,
    CorruptEntry,
    JournalUnavailable,
    SequenceConflict,
    WriteRejected,
)
from casty.journals import as_journal
from casty.journals.sqlite import SQLiteJournal
from casty.testing.journal_contract import make_entries


@pytest_asyncio.fixture
async def journal(tmp_path: Path) -> AsyncIterator[SQLiteJournal]:
    journal = SQLiteJournal(tmp_path / "j.db", busy_timeout=0.05)
    try:
        yield journal
    finally:
        await journal.aclose()


async def _sequence_nrs(journal: SQLiteJournal, persistence_id: str) -> list[int]:
    return [entry.sequence_nr async for entry in journal.replay(persistence_id)]


def test_relative_absolute_and_memory_urls(tmp_path: Path) -> None:
    assert repr(as_journal("sqlite:///rel/j.db")) == "SQLiteJournal('rel/j.db', synchronous='FULL')"
    absolute = as_journal(f"sqlite:///{tmp_path}/j.db")
    assert repr(absolute) == f"SQLiteJournal('{tmp_path}/j.db', synchronous='FULL')"
    assert repr(as_journal("sqlite://")) == "SQLiteJournal(':memory:', synchronous='FULL')"
    normal = as_journal("sqlite+aiosqlite:///j.db?synchronous=normal&busy_timeout=0.5")
    assert repr(normal) == "SQLiteJournal('j.db', synchronous='NORMAL')"


@pytest.mark.parametrize(
    "url",
    ["sqlite:///j.db?synchronous=off", "sqlite:///j.db?busy_timeout=soon", "sqlite:///j.db?x=1"],
)
def test_bad_url_options_raise_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        as_journal(url)


async def test_file_is_in_wal_mode_with_the_journal_tables(
    journal: SQLiteJournal, tmp_path: Path
) -> None:
    await journal.write(make_entries("p", 1, 1))
    with sqlite3.connect(tmp_path / "j.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
    assert {"casty_journal", "casty_journal_meta", "casty_snapshots"} <= tables


async def test_in_memory_database_works_and_is_private() -> None:
    first, second = SQLiteJournal(":memory:"), SQLiteJournal(":memory:")
    try:
        await first.write(make_entries("p", 1, 3))
        assert await _sequence_nrs(first, "p") == [1, 2, 3]
        assert await second.highest_sequence_nr("p") == 0
    finally:
        await first.aclose()
        await second.aclose()


async def test_ordering_column_follows_commit_order(journal: SQLiteJournal, tmp_path: Path) -> None:
    await journal.write(make_entries("b", 1, 2))
    await journal.write(make_entries("a", 1, 1))
    await journal.write(make_entries("b", 3, 1))
    with sqlite3.connect(tmp_path / "j.db") as raw:
        rows = raw.execute(
            "SELECT persistence_id, sequence_nr FROM casty_journal ORDER BY ordering"
        ).fetchall()
    assert rows == [("b", 1), ("b", 2), ("a", 1), ("b", 3)]


async def test_file_that_is_not_sqlite_raises_journal_unavailable_naming_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    path.write_bytes(b"this is not a database, just some text " * 200)
    journal = SQLiteJournal(path)
    try:
        with pytest.raises(JournalUnavailable, match=str(path)) as info:
            await journal.write(make_entries("p", 1, 1))
        assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
        path.unlink()  # the store comes back: the same object opens it on next use
        await journal.write(make_entries("p", 1, 1))
        assert await journal.highest_sequence_nr("p") == 1
    finally:
        await journal.aclose()


async def test_unopenable_path_raises_journal_unavailable(tmp_path: Path) -> None:
    journal = SQLiteJournal(tmp_path / "missing-dir" / "j.db")
    try:
        with pytest.raises(JournalUnavailable, match="missing-dir"):
            await journal.open()
    finally:
        await journal.aclose()


async def test_locked_file_raises_journal_unavailable_then_recovers(
    journal: SQLiteJournal, tmp_path: Path
) -> None:
    await journal.write(make_entries("p", 1, 2))
    raw = sqlite3.connect(tmp_path / "j.db", isolation_level=None)
    try:
        raw.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        with pytest.raises(JournalUnavailable, match="locked"):
            await journal.write(make_entries("p", 3, 1))
        raw.execute("ROLLBACK")
    finally:
        raw.close()
    await journal.write(make_entries("p", 3, 2))
    assert await _sequence_nrs(journal, "p") == [1, 2, 3, 4]


async def test_corrupt_row_raises_corrupt_entry_after_the_good_entries(
    journal: SQLiteJournal, tmp_path: Path
) -> None:
    await journal.write(make_entries("p", 1, 2))
    with sqlite3.connect(tmp_path / "j.db") as raw:
        raw.execute(
            "INSERT INTO casty_journal (persistence_id, sequence_nr, epoch, timestamp_ms,"
            " serializer, manifest, payload) VALUES ('p', 3, 0, 0, 'test', '', 'text, not blob')"
        )
    seen: list[int] = []
    with pytest.raises(CorruptEntry, match="sequence_nr 3"):
        async for entry in journal.replay("p"):
            seen.append(entry.sequence_nr)
    assert seen == [1, 2]


async def test_concurrent_writes_share_commits(journal: SQLiteJournal) -> None:
    async def writer(n: int) -> None:
        for nr in range(1, 11):
            await journal.write(make_entries(f"p{n}", nr, 1))

    await asyncio.gather(*(writer(n) for n in range(50)))
    stats = journal.statistics()
    assert stats.writes == 500
    assert stats.rounds <= 100, stats  # 50 writers wait together: rounds hold many writes


@pytest.mark.parametrize("conflict", [False, True])
@pytest.mark.parametrize("size", [512, 600, 1024])
async def test_rounds_longer_than_one_statement_commit_whole(
    journal: SQLiteJournal, size: int, conflict: bool
) -> None:
    # A round of more than one multi-row statement (128 rows) is one transaction, whether its
    # last statement is full or shorter; a conflict in it fails only its own write. (Queued
    # writes of this many entries go as one round: only small ones are split in two.)
    await journal.write(make_entries("taken", 1, 1))
    writes = [make_entries(f"w{n}", 1, size // 4) for n in range(4)]
    if conflict:
        writes.append([JournalEntry("taken", 1, b"x", "test")])
    results = await asyncio.gather(
        journal.write(make_entries("first", 1, 1)),  # the idle path: the others queue
        *(journal.write(entries) for entries in writes),
        return_exceptions=True,
    )
    expected = ["NoneType"] * 5 + (["SequenceConflict"] if conflict else [])
    assert [type(r).__name__ for r in results] == expected
    for n in range(4):
        assert await _sequence_nrs(journal, f"w{n}") == list(range(1, size // 4 + 1))
    stats = journal.statistics()
    assert stats.rounds == 3, stats  # "taken", "first", then the queued writes together


async def test_conflict_in_a_round_fails_only_that_write(journal: SQLiteJournal) -> None:
    await journal.write(make_entries("taken", 1, 1))
    results = await asyncio.gather(
        *(journal.write(make_entries(f"free{n}", 1, 2)) for n in range(5)),
        journal.write([JournalEntry("taken", 1, b"x", "test")]),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == ["NoneType"] * 5 + ["SequenceConflict"]
    for n in range(5):
        assert await _sequence_nrs(journal, f"free{n}") == [1, 2]


def test_a_journal_left_open_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    # aiosqlite >= 0.22 starts non-daemon worker threads: an unclosed journal used to hang the
    # interpreter at exit forever. The acknowledged write must still be there afterwards.
    path = tmp_path / "left-open.db"
    script = f"""
import asyncio
from casty.journals.sqlite import SQLiteJournal
from casty.testing.journal_contract import make_entries

async def main():
    journal = SQLiteJournal({str(path)!r})
    await journal.write(make_entries("left-open", 1, 1))

asyncio.run(main())
"""
    done = subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()

    async def highest() -> int:
        async with SQLiteJournal(path) as journal:
            return await journal.highest_sequence_nr("left-open")

    assert asyncio.run(highest()) == 1


async def test_write_nowait_commits_then_calls_back_with_the_outcome(
    journal: SQLiteJournal,
) -> None:
    outcomes: dict[str, asyncio.Future[BaseException | None]] = {}

    def callback(name: str) -> Callable[[BaseException | None], None]:
        outcomes[name] = asyncio.get_running_loop().create_future()
        return outcomes[name].set_result

    # Not open yet: opening awaits, so the caller is told to use `write`.
    assert journal._write_nowait(make_entries("p", 1, 2), callback("unopened")) is None
    await journal.open()
    assert journal._write_nowait(make_entries("p", 1, 2), callback("first")) is not None
    assert journal._write_nowait(make_entries("q", 1, 1), callback("other")) is not None
    assert journal._write_nowait(make_entries("p", 2, 1), callback("conflict")) is not None
    with pytest.raises(WriteRejected):  # checked at once; no callback
        journal._write_nowait(make_entries("p", 3, 1) + make_entries("x", 1, 1), print)
    assert await outcomes["first"] is None
    assert await outcomes["other"] is None
    assert isinstance(await outcomes["conflict"], SequenceConflict)
    assert not outcomes["unopened"].done()
    assert await _sequence_nrs(journal, "p") == [1, 2]
    assert await _sequence_nrs(journal, "q") == [1]
    await journal.aclose()
    assert journal._write_nowait(make_entries("p", 3, 1), callback("closed")) is None
