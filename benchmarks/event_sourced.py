"""Event-sourced entities on SQLite and PostgreSQL, beside the raw driver measured in the same run.

Figures (each the median of ``--runs`` runs, ours and the baseline interleaved):

- ``<backend>.sequential_persist``: one entity, ``ask`` after ``ask``, each answered by the
  ``then`` of ``Behaviors.persisted`` (so after the event is durable); baseline: the same rows
  inserted one per transaction with the bare driver.
- ``<backend>.concurrent_persist_vs_single`` / ``..._vs_batch``: 100 entities, each with one
  ask in flight at all times (100 in flight); baselines: the driver's single-row-per-transaction
  rate, and 100 rows per transaction (``executemany``).
- ``<backend>.concurrent_deep_vs_batch``: 100 entities with 10 asks in flight each, so the
  entities also batch the events of stashed commands into one write.
- ``<backend>.recovery``: spawning an entity with 100,000 stored events and waiting for its first
  reply; baseline: one plain ``SELECT`` of the same rows, iterated.
  ``<backend>.recovery_vs_journal_replay`` puts the same figure beside iterating
  ``journal.replay`` alone (no decoding, no ``on_event``): what the entity adds to the journal.
- ``<backend>.recovery_peak_memory``: tracemalloc peak while recovering 100,000 events; baseline:
  the peak for 10,000 events (a ratio near 1 means memory does not grow with the log).

Durability is equal on both sides: SQLite WAL with ``synchronous=FULL`` (the journal's default)
and again with ``NORMAL``; PostgreSQL's default ``synchronous_commit``. The raw tables have the
journal's columns and primary key, and the rows carry the entity's real encoded events.

Run: ``python benchmarks/event_sourced.py [--backend sqlite|postgres|all] [--runs 5]``.
PostgreSQL uses ``--dsn``, else ``CASTY_TEST_POSTGRES_DSN``, else
``postgresql://postgres@127.0.0.1:5432/test``; when it cannot be reached it prints a skip line.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import asyncpg
from _journal_bench import RawPostgres, RawSQLite, emit, fresh_id, timed

from casty.abc import Journal, JournalEntry
from casty.actors import ActorContext, ActorRef, ActorSystem, Behavior, Behaviors
from casty.journals.postgres import PostgresJournal
from casty.journals.sqlite import SQLiteJournal
from casty.serializers import as_serializer

ENTITIES = 100
DEEP = 10  # asks in flight per entity in the "deep" run
RECOVERY_EVENTS = 100_000
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


# -- the entity ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Add:
    amount: int
    reply_to: ActorRef[int]


@dataclass(frozen=True, slots=True)
class Added:
    amount: int


def on_event(total: int, event: Added) -> int:
    return total + event.amount


def on_command(ctx: ActorContext[Add], total: int, command: Add) -> Behavior[Add]:
    reply_to = command.reply_to
    return Behaviors.persisted(Added(command.amount), then=reply_to.tell)


def counter(entity_id: str, journal: Journal) -> Behavior[Add]:
    return Behaviors.event_sourced(
        entity_id=entity_id,
        journal=journal,
        initial_state=0,
        on_event=on_event,
        on_command=on_command,
    )


_SERIALIZER = as_serializer("msgpack")
PAYLOAD = _SERIALIZER.encode(Added(1))
MANIFEST = _SERIALIZER.manifest(Added(1))


def row(persistence_id: str, sequence_nr: int) -> tuple[Any, ...]:
    return (persistence_id, sequence_nr, 0, 1, "msgpack", MANIFEST, PAYLOAD)


# -- our side -----------------------------------------------------------------------------------


async def spawn_ready(system: ActorSystem, journal: Journal, entity_id: str) -> ActorRef[Add]:
    ref = system.spawn(counter(entity_id, journal), entity_id)
    await system.ask(ref, lambda reply_to: Add(0, reply_to))  # recovered (and one event)
    return ref


async def ours_sequential(journal: Journal, count: int) -> float:
    """Events/s of one entity answering asks one after the other (spawn and stop excluded)."""
    async with ActorSystem(name="bench") as system:
        ref = await spawn_ready(system, journal, fresh_id())
        start = time.perf_counter()
        for _ in range(count):
            await system.ask(ref, lambda reply_to: Add(1, reply_to))
        elapsed = time.perf_counter() - start
    return count / elapsed


async def ours_concurrent(journal: Journal, per_entity: int, depth: int) -> float:
    """Events/s of 100 entities with ``depth`` asks in flight each (spawn and stop excluded)."""
    async with ActorSystem(name="bench") as system:
        refs = [await spawn_ready(system, journal, fresh_id()) for _ in range(ENTITIES)]

        async def client(ref: ActorRef[Add]) -> None:
            for _ in range(per_entity):
                await system.ask(ref, lambda reply_to: Add(1, reply_to))

        start = time.perf_counter()
        await asyncio.gather(*(client(ref) for ref in refs for _ in range(depth)))
        elapsed = time.perf_counter() - start
    return ENTITIES * depth * per_entity / elapsed


async def fill(journal: Journal, persistence_id: str, count: int) -> None:
    for start in range(1, count + 1, 4000):
        stop = min(start + 4000, count + 1)
        await journal.write(
            [
                JournalEntry(persistence_id, nr, PAYLOAD, "msgpack", MANIFEST, 0, 1)
                for nr in range(start, stop)
            ]
        )


async def ours_recovery(journal: Journal, persistence_id: str, count: int) -> int:
    async with ActorSystem(name="bench") as system:
        ref = system.spawn(counter(persistence_id, journal), "recovering")
        total = await system.ask(ref, lambda reply_to: Add(0, reply_to), timeout=600.0)
        assert total == count, (total, count)
        await system.stop(ref)
    return count


async def journal_replay(journal: Journal, persistence_id: str) -> int:
    count = 0
    async for _ in journal.replay(persistence_id):
        count += 1
    return count


async def recovery_peak(journal: Journal, persistence_id: str, count: int) -> float:
    tracemalloc.start()
    try:
        await ours_recovery(journal, persistence_id, count)
        return float(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


# -- the figures --------------------------------------------------------------------------------


async def report_all(
    backend: str, journal: Journal, raw: RawSQLite | RawPostgres, runs: int, scale: float
) -> None:
    sequential = max(100, int(1000 * scale))
    per_entity = max(5, int(30 * scale))
    median = statistics.median
    await ours_sequential(journal, 50)  # warm up: open, prepare statements
    await raw.single(50)

    ours_a, raw_single, ours_b, ours_deep, raw_batch = [], [], [], [], []
    for _ in range(runs):
        ours_a.append(await ours_sequential(journal, sequential))
        raw_single.append(await timed(lambda: raw.single(sequential)))
        ours_b.append(await ours_concurrent(journal, per_entity, 1))
        ours_deep.append(await ours_concurrent(journal, per_entity, DEEP))
        raw_batch.append(await timed(lambda: raw.batches(ENTITIES * per_entity)))
    emit(f"{backend}.sequential_persist", median(ours_a), median(raw_single), "events/s", runs=runs)
    emit(
        f"{backend}.concurrent_persist_vs_single",
        median(ours_b),
        median(raw_single),
        "events/s",
        runs=runs,
    )
    emit(
        f"{backend}.concurrent_persist_vs_batch",
        median(ours_b),
        median(raw_batch),
        "events/s",
        runs=runs,
    )
    emit(
        f"{backend}.concurrent_deep_vs_batch",
        median(ours_deep),
        median(raw_batch),
        "events/s",
        runs=runs,
    )

    count = max(10_000, int(RECOVERY_EVENTS * scale))
    persistence_id, small_id = fresh_id(), fresh_id()
    await fill(journal, persistence_id, count)
    await fill(journal, small_id, count // 10)
    await raw.fill(persistence_id, count)
    ours_c, raw_c, replay_c = [], [], []
    for _ in range(runs):
        ours_c.append(await timed(lambda: ours_recovery(journal, persistence_id, count)))
        raw_c.append(await timed(lambda: raw.select(persistence_id)))
        replay_c.append(await timed(lambda: journal_replay(journal, persistence_id)))
    emit(f"{backend}.recovery", median(ours_c), median(raw_c), "events/s", runs=runs)
    emit(
        f"{backend}.recovery_vs_journal_replay",
        median(ours_c),
        median(replay_c),
        "events/s",
        runs=runs,
    )
    large = await recovery_peak(journal, persistence_id, count)
    small = await recovery_peak(journal, small_id, count // 10)
    emit(f"{backend}.recovery_peak_memory", large, small, "bytes", runs=1)


async def bench_sqlite(runs: int, synchronous: Literal["FULL", "NORMAL"], scale: float) -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("CASTY_BENCH_DIR")) as directory:
        journal = SQLiteJournal(Path(directory) / "journal.db", synchronous=synchronous)
        async with journal, RawSQLite(Path(directory) / "raw.db", synchronous, row) as raw:
            await report_all(f"sqlite_{synchronous.lower()}", journal, raw, runs, scale)


async def bench_postgres(runs: int, dsn: str, scale: float) -> None:
    try:
        probe = await asyncpg.connect(dsn, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        print(json.dumps({"name": "postgres", "skipped": f"{dsn} unreachable: {exc}"}), flush=True)
        return
    table = f"casty_bench_es_{fresh_id()}"
    try:
        async with PostgresJournal(dsn, table=table) as journal, RawPostgres(dsn, row) as raw:
            await report_all("postgres", journal, raw, runs, scale)
    finally:
        await probe.execute(f"DROP TABLE IF EXISTS {table}, {table}_snapshots")
        await probe.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the workloads (0-1]")
    parser.add_argument(
        "--synchronous", choices=["full", "normal", "both"], default="both", help="SQLite"
    )
    parser.add_argument("--dsn", default=os.environ.get("CASTY_TEST_POSTGRES_DSN", DEFAULT_DSN))
    args = parser.parse_args()
    if args.backend in ("sqlite", "all"):
        modes: list[Literal["FULL", "NORMAL"]] = ["FULL", "NORMAL"]
        if args.synchronous != "both":
            modes = ["FULL"] if args.synchronous == "full" else ["NORMAL"]
        for mode in modes:
            asyncio.run(bench_sqlite(args.runs, mode, args.scale))
    if args.backend in ("postgres", "all"):
        asyncio.run(bench_postgres(args.runs, args.dsn, args.scale))


if __name__ == "__main__":
    main()
