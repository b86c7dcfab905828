"""Journal write and replay throughput beside the raw driver, for SQLite and PostgreSQL.

Figures (each the median of ``--runs`` runs, ours and the baseline interleaved):

- ``<backend>.sequential_write``: one task writes single-event batches, each awaited;
  baseline: the same rows inserted one per transaction with the bare driver.
- ``<backend>.concurrent_write_vs_single``: 100 tasks write single-event batches at once
  (group commit); baseline: the driver's single-row-per-transaction rate (as above).
- ``<backend>.concurrent_write_vs_batch``: the same figure; baseline: the driver inserting
  100 rows per transaction (``executemany``).
- ``<backend>.concurrent_write_vs_pool`` (PostgreSQL only): baseline: 100 tasks each committing
  single rows through a pool of as many connections as the journal's pool.
- ``<backend>.replay``: streaming 100,000 events of one id; baseline: one plain ``SELECT`` of
  the same rows, iterated.
- ``<backend>.replay_peak_memory``: tracemalloc peak while replaying 100,000 events; baseline:
  the plain ``SELECT``. ``replay_peak_memory_10k`` shows ours does not grow with the log.

Durability is equal on both sides: SQLite WAL with the journal's ``synchronous`` (FULL unless
``--synchronous normal``), PostgreSQL's default ``synchronous_commit``. The baseline tables have
the same columns and the ``(persistence_id, sequence_nr)`` primary key, without the journal's
high-water-mark table and ordering column.

Run: ``python benchmarks/journal_write.py [--backend sqlite|postgres|all] [--runs 5]``.
PostgreSQL uses ``--dsn`` or ``CASTY_TEST_POSTGRES_DSN`` (skipped when neither is given).
Prints one JSON object per line: name, ours, baseline, ratio, unit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import asyncpg
from _journal_bench import RawPostgres, RawSQLite, emit, fresh_id, timed

from casty.abc import Journal, JournalEntry
from casty.journals.postgres import PostgresJournal
from casty.journals.sqlite import SQLiteJournal

PAYLOAD = b"x" * 100
WRITERS = 100
REPLAY_EVENTS = 100_000


def entry(persistence_id: str, sequence_nr: int) -> JournalEntry:
    return JournalEntry(persistence_id, sequence_nr, PAYLOAD, "msgpack", "bench:Event", 0, 1)


def row(persistence_id: str, sequence_nr: int) -> tuple[Any, ...]:
    return (persistence_id, sequence_nr, 0, 1, "msgpack", "bench:Event", PAYLOAD)


async def paired(
    ours: Callable[[], Awaitable[int]], theirs: Callable[[], Awaitable[int]], slices: int = 10
) -> tuple[float, float]:
    """Events per second of each side over alternating slices, so both meet the same disk.

    A disk's sync latency drifts over seconds; timing one side after the other would let the
    drift decide the ratio.
    """
    seconds, counts = [0.0, 0.0], [0, 0]
    for _ in range(slices):
        for side, action in enumerate((ours, theirs)):
            start = time.perf_counter()
            counts[side] += await action()
            seconds[side] += time.perf_counter() - start
    return counts[0] / seconds[0], counts[1] / seconds[1]


async def peak_memory(action: Callable[[], Awaitable[int]]) -> float:
    tracemalloc.start()
    try:
        await action()
        return float(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


# --------------------------------------------------------------------------------------------
# our side, identical for both journals


async def ours_sequential(journal: Journal, count: int) -> int:
    persistence_id = fresh_id()
    for nr in range(1, count + 1):
        await journal.write([entry(persistence_id, nr)])
    return count


async def ours_concurrent(journal: Journal, per_writer: int) -> int:
    prefix = fresh_id()

    async def writer(n: int) -> None:
        for nr in range(1, per_writer + 1):
            await journal.write([entry(f"{prefix}-{n}", nr)])

    await asyncio.gather(*(writer(n) for n in range(WRITERS)))
    return WRITERS * per_writer


async def fill(journal: Journal, persistence_id: str, count: int) -> None:
    for start in range(1, count + 1, 4000):
        stop = min(start + 4000, count + 1)
        await journal.write([entry(persistence_id, nr) for nr in range(start, stop)])


async def ours_replay(journal: Journal, persistence_id: str) -> int:
    count = 0
    async for _ in journal.replay(persistence_id):
        count += 1
    return count


# --------------------------------------------------------------------------------------------
# SQLite


async def bench_sqlite(runs: int, synchronous: Literal["FULL", "NORMAL"], scale: float) -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("CASTY_BENCH_DIR")) as directory:
        journal = SQLiteJournal(Path(directory) / "journal.db", synchronous=synchronous)
        async with journal, RawSQLite(Path(directory) / "raw.db", synchronous, row) as raw:
            await report_all("sqlite", journal, raw, runs, scale)


# --------------------------------------------------------------------------------------------
# PostgreSQL


async def bench_postgres(runs: int, dsn: str, scale: float) -> None:
    table = f"casty_bench_{fresh_id()}"
    journal = PostgresJournal(dsn, table=table)
    try:
        async with journal, RawPostgres(dsn, row, pool_size=10) as raw:
            await report_all("postgres", journal, raw, runs, scale)
    finally:
        connection = await asyncpg.connect(dsn)
        await connection.execute(f"DROP TABLE IF EXISTS {table}, {table}_snapshots")
        await connection.close()


# --------------------------------------------------------------------------------------------


async def report_all(
    backend: str, journal: Journal, raw: RawSQLite | RawPostgres, runs: int, scale: float
) -> None:
    sequential = max(20, int(200 * scale))  # per slice; 10 slices per run
    per_writer = max(2, int(10 * scale))
    await ours_sequential(journal, 50)  # warm up: open, prepare statements
    await raw.single(50)

    ours_a, raw_single, ours_b, raw_batch, raw_pool = [], [], [], [], []
    for _ in range(runs):
        ours, theirs = await paired(
            lambda: ours_sequential(journal, sequential), lambda: raw.single(sequential)
        )
        ours_a.append(ours)
        raw_single.append(theirs)
        ours, theirs = await paired(
            lambda: ours_concurrent(journal, per_writer),
            lambda: raw.batches(WRITERS * per_writer),
        )
        ours_b.append(ours)
        raw_batch.append(theirs)
        if isinstance(raw, RawPostgres):
            raw_pool.append(await timed(lambda: raw.pooled(per_writer * 2)))
    median = statistics.median
    emit(f"{backend}.sequential_write", median(ours_a), median(raw_single), "events/s")
    emit(f"{backend}.concurrent_write_vs_single", median(ours_b), median(raw_single), "events/s")
    emit(f"{backend}.concurrent_write_vs_batch", median(ours_b), median(raw_batch), "events/s")
    if raw_pool:
        emit(f"{backend}.concurrent_write_vs_pool", median(ours_b), median(raw_pool), "events/s")

    replay_events = max(10_000, int(REPLAY_EVENTS * scale))
    persistence_id, small_id = fresh_id(), fresh_id()
    await fill(journal, persistence_id, replay_events)
    await fill(journal, small_id, replay_events // 10)
    await raw.fill(persistence_id, replay_events)
    ours_c, raw_c = [], []
    for _ in range(runs):
        ours, theirs = await paired(
            lambda: ours_replay(journal, persistence_id), lambda: raw.select(persistence_id), 2
        )
        ours_c.append(ours)
        raw_c.append(theirs)
    emit(f"{backend}.replay", median(ours_c), median(raw_c), "events/s")
    ours_peak = await peak_memory(lambda: ours_replay(journal, persistence_id))
    raw_peak = await peak_memory(lambda: raw.select(persistence_id))
    small_peak = await peak_memory(lambda: ours_replay(journal, small_id))
    emit(f"{backend}.replay_peak_memory", ours_peak, raw_peak, "bytes")
    emit(f"{backend}.replay_peak_memory_10k", small_peak, ours_peak, "bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--synchronous", choices=["full", "normal"], default="full")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the workloads (0-1]")
    parser.add_argument("--dsn", default=os.environ.get("CASTY_TEST_POSTGRES_DSN", ""))
    args = parser.parse_args()
    if args.backend in ("sqlite", "all"):
        synchronous: Literal["FULL", "NORMAL"] = "FULL" if args.synchronous == "full" else "NORMAL"
        asyncio.run(bench_sqlite(args.runs, synchronous, args.scale))
    if args.backend in ("postgres", "all"):
        if args.dsn:
            asyncio.run(bench_postgres(args.runs, args.dsn, args.scale))
        else:
            print(json.dumps({"name": "postgres", "skipped": "no --dsn"}), flush=True)


if __name__ == "__main__":
    main()
