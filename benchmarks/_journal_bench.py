"""What the journal benchmarks share (not a benchmark itself): output, timing, baselines.

The bare-driver baselines `RawSQLite` and `RawPostgres` store the journal's columns in one
table with the ``(persistence_id, sequence_nr)`` primary key, without the journal's
high-water-mark table and ordering column. ``row(persistence_id, sequence_nr)`` gives the
values of one row, in `COLUMNS` order, so each benchmark stores the payload it measures.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg

COLUMNS = "persistence_id, sequence_nr, epoch, timestamp_ms, serializer, manifest, payload"
BATCH = 100  # rows per transaction of ``batches`` (one per writer of the concurrent runs)

Row = Callable[[str, int], tuple[Any, ...]]


def emit(name: str, ours: float, baseline: float, unit: str, **extra: Any) -> None:
    """Print one figure as a JSON line: name, ours, baseline, ratio (ours / baseline), unit."""
    record = {
        "name": name,
        "ours": round(ours, 1),
        "baseline": round(baseline, 1),
        "ratio": round(ours / baseline, 3),
        "unit": unit,
        **extra,
    }
    print(json.dumps(record), flush=True)


def fresh_id() -> str:
    return uuid.uuid4().hex[:12]


async def timed(action: Callable[[], Awaitable[int]]) -> float:
    """Events per second of ``action``, which returns how many events it handled."""
    start = time.perf_counter()
    count = await action()
    return count / (time.perf_counter() - start)


class RawSQLite:
    def __init__(self, path: Path, synchronous: str, row: Row) -> None:
        self.path, self.synchronous, self.row = path, synchronous, row
        self.insert = f"INSERT INTO raw ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"

    async def __aenter__(self) -> RawSQLite:
        self.db = await aiosqlite.connect(self.path)
        await self.db.execute("PRAGMA journal_mode = WAL")
        await self.db.execute(f"PRAGMA synchronous = {self.synchronous}")
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS raw (persistence_id TEXT NOT NULL, sequence_nr INTEGER"
            " NOT NULL, epoch INTEGER NOT NULL, timestamp_ms INTEGER NOT NULL, serializer TEXT"
            " NOT NULL, manifest TEXT NOT NULL, payload BLOB NOT NULL,"
            " PRIMARY KEY (persistence_id, sequence_nr))"
        )
        await self.db.commit()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.db.close()

    async def single(self, count: int) -> int:
        """Insert ``count`` rows of one id, one per transaction."""
        row, persistence_id = self.row, fresh_id()
        for nr in range(1, count + 1):
            await self.db.execute(self.insert, row(persistence_id, nr))
            await self.db.commit()
        return count

    async def batches(self, count: int) -> int:
        """Insert ``count`` rows, `BATCH` per transaction (``executemany``)."""
        row, prefix = self.row, fresh_id()
        for nr in range(1, count // BATCH + 1):
            await self.db.executemany(self.insert, [row(f"{prefix}-{n}", nr) for n in range(BATCH)])
            await self.db.commit()
        return count

    async def fill(self, persistence_id: str, count: int) -> None:
        rows = [self.row(persistence_id, nr) for nr in range(1, count + 1)]
        await self.db.executemany(self.insert, rows)
        await self.db.commit()

    async def select(self, persistence_id: str) -> int:
        """Fetch the id's rows in order with one plain ``SELECT`` and iterate them."""
        rows = await self.db.execute_fetchall(
            f"SELECT {COLUMNS} FROM raw WHERE persistence_id = ? ORDER BY sequence_nr",
            (persistence_id,),
        )
        count = 0
        for _ in rows:
            count += 1
        return count


class RawPostgres:
    """As `RawSQLite`, in a fresh table; ``pool_size`` > 0 also opens a pool for ``pooled``."""

    def __init__(self, dsn: str, row: Row, pool_size: int = 0) -> None:
        self.dsn, self.row, self.pool_size = dsn, row, pool_size
        self.table = f"casty_bench_raw_{fresh_id()}"
        self.insert = f"INSERT INTO {self.table} ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        self.pool: asyncpg.Pool | None = None

    async def __aenter__(self) -> RawPostgres:
        self.connection = await asyncpg.connect(self.dsn)
        if self.pool_size:
            self.pool = await asyncpg.create_pool(
                self.dsn, min_size=self.pool_size, max_size=self.pool_size
            )
        await self.connection.execute(
            f"CREATE TABLE {self.table} (persistence_id TEXT NOT NULL, sequence_nr BIGINT"
            " NOT NULL, epoch BIGINT NOT NULL, timestamp_ms BIGINT NOT NULL, serializer TEXT"
            " NOT NULL, manifest TEXT NOT NULL, payload BYTEA NOT NULL,"
            " PRIMARY KEY (persistence_id, sequence_nr))"
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.execute(f"DROP TABLE {self.table}")
        await self.connection.close()
        if self.pool is not None:
            await self.pool.close()

    async def single(self, count: int) -> int:
        row, persistence_id = self.row, fresh_id()
        for nr in range(1, count + 1):
            await self.connection.execute(self.insert, *row(persistence_id, nr))
        return count

    async def batches(self, count: int) -> int:
        row, prefix = self.row, fresh_id()
        for nr in range(1, count // BATCH + 1):
            async with self.connection.transaction():
                await self.connection.executemany(
                    self.insert, [row(f"{prefix}-{n}", nr) for n in range(BATCH)]
                )
        return count

    async def pooled(self, per_writer: int) -> int:
        """`BATCH` tasks each inserting ``per_writer`` single rows through the pool."""
        pool, row, prefix = self.pool, self.row, fresh_id()
        assert pool is not None, "RawPostgres(pool_size=...) opens the pool"

        async def writer(n: int) -> None:
            for nr in range(1, per_writer + 1):
                await pool.execute(self.insert, *row(f"{prefix}-{n}", nr))

        await asyncio.gather(*(writer(n) for n in range(BATCH)))
        return BATCH * per_writer

    async def fill(self, persistence_id: str, count: int) -> None:
        await self.connection.copy_records_to_table(
            self.table, records=[self.row(persistence_id, nr) for nr in range(1, count + 1)]
        )

    async def select(self, persistence_id: str) -> int:
        rows = await self.connection.fetch(
            f"SELECT {COLUMNS} FROM {self.table} WHERE persistence_id = $1 ORDER BY sequence_nr",
            persistence_id,
        )
        count = 0
        for _ in rows:
            count += 1
        return count
