"""`JournalContract`: the test suite every `casty.abc.Journal` implementation must pass.

It covers Akka's journal TCK (replay ranges and limits, deletion, the highest sequence number
after deletion, unknown ids, atomic batches, snapshot selection) and what that TCK leaves out:
racing writers, cancellation, reopening the storage, epoch fencing, closing, and a Hypothesis
state machine checked against a model. Run it by subclassing once::

    import pytest
    from casty.testing import JournalContract

    class TestMyJournal(JournalContract):
        @pytest.fixture
        def journal_factory(self, tmp_path):
            return lambda: MyJournal(tmp_path / "j.db")

``journal_factory`` must return a *new* journal object over the *same* storage on every call:
the durability tests close one object and open another. Override `capabilities` to declare
less than the class attribute says, and `prepare_persistence_id` when ids need a special form.
The suite needs pytest-asyncio and hypothesis; every test is a coroutine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from casty.abc import MAX_SEQUENCE_NR, Journal, JournalCapabilities, JournalEntry, SnapshotEntry
from casty.actors import ActorSystem, Behavior, Behaviors
from casty.errors import (
    ConfigurationError,
    ResourceClosed,
    SequenceConflict,
    StaleEpoch,
    WriteRejected,
)

__all__ = ["JournalContract", "JournalFactory", "make_entries", "requires"]

JournalFactory = Callable[[], Journal]
F = TypeVar("F", bound=Callable[..., Any])

_CAPABILITY_NAMES = frozenset(JournalCapabilities.__dataclass_fields__)


def requires(*capabilities: str) -> Callable[[F], F]:
    """Mark a contract test as needing ``capabilities`` (names of `JournalCapabilities` fields).

    The test is skipped, with the missing names as the reason, when the journal under test
    does not declare them.

    Raises:
        ValueError: an unknown capability name.
    """
    unknown = set(capabilities) - _CAPABILITY_NAMES
    if unknown:
        raise ValueError(f"unknown journal capabilities: {sorted(unknown)}")

    def mark(function: F) -> F:
        function.__casty_requires__ = capabilities  # type: ignore[attr-defined]
        return function

    return mark


def make_entries(
    persistence_id: str,
    start: int,
    count: int,
    *,
    epoch: int = 0,
    tag: str = "e",
    timestamp_ms: int = 1_700_000_000_000,
) -> list[JournalEntry]:
    """``count`` entries numbered from ``start`` whose payloads name their tag and number."""
    return [
        JournalEntry(
            persistence_id=persistence_id,
            sequence_nr=nr,
            payload=f"{tag}:{nr}".encode(),
            serializer="test",
            manifest="tests:Event",
            epoch=epoch,
            timestamp_ms=timestamp_ms + nr,
        )
        for nr in range(start, start + count)
    ]


async def _collect(entries: AsyncIterable[JournalEntry]) -> list[JournalEntry]:
    return [entry async for entry in entries]


async def _numbers(
    journal: Journal,
    persistence_id: str,
    from_sequence_nr: int = 1,
    to_sequence_nr: int = MAX_SEQUENCE_NR,
    limit: int | None = None,
) -> list[int]:
    replay = journal.replay(persistence_id, from_sequence_nr, to_sequence_nr, limit)
    return [entry.sequence_nr for entry in await _collect(replay)]


def _snapshot(persistence_id: str, sequence_nr: int, timestamp_ms: int = 1000) -> SnapshotEntry:
    return SnapshotEntry(
        persistence_id=persistence_id,
        sequence_nr=sequence_nr,
        payload=f"state:{sequence_nr}".encode(),
        serializer="test",
        manifest="tests:State",
        timestamp_ms=timestamp_ms,
    )


async def _outcome(write: Any) -> type[BaseException] | None:
    try:
        await write
    except (SequenceConflict, StaleEpoch) as exc:
        return type(exc)
    return None


class JournalContract:
    """The journal contract; subclass once and override `journal_factory`."""

    pytestmark = pytest.mark.asyncio

    # ----------------------------------------------------------------------------------------
    # fixtures and hooks

    @pytest.fixture
    def journal_factory(self) -> JournalFactory:
        """Return a callable that builds a new journal object over the same storage each call."""
        raise NotImplementedError(
            "override the journal_factory fixture: return a callable that builds a fresh "
            "journal object over the same storage on every call"
        )

    @pytest.fixture
    def capabilities(self, journal_factory: JournalFactory) -> JournalCapabilities:
        """What the journal supports; defaults to its class's ``capabilities``."""
        return type(journal_factory()).capabilities

    @pytest.fixture(autouse=True)
    def _skip_missing_capabilities(
        self, request: pytest.FixtureRequest, capabilities: JournalCapabilities
    ) -> None:
        needed = getattr(request.function, "__casty_requires__", ())
        missing = [name for name in needed if not getattr(capabilities, name)]
        if missing:
            pytest.skip(f"the journal does not declare: {', '.join(missing)}")

    def prepare_persistence_id(self, name: str) -> str:
        """Return a persistence id for ``name`` not used by any earlier test (hook).

        The default appends a random suffix, so a shared store (one PostgreSQL database for
        many runs) needs no reset between tests.
        """
        return f"{name}-{uuid.uuid4().hex[:12]}"

    @pytest.fixture
    def pid(self, request: pytest.FixtureRequest) -> str:
        """A fresh persistence id for this test."""
        return self.prepare_persistence_id(request.node.name)

    @pytest_asyncio.fixture
    async def journal(self, journal_factory: JournalFactory) -> AsyncIterator[Journal]:
        """A journal from the factory, closed after the test."""
        journal = journal_factory()
        try:
            yield journal
        finally:
            await journal.aclose()

    async def _reopened(self, journal_factory: JournalFactory) -> Journal:
        journal = journal_factory()
        await journal.open()
        return journal

    # ----------------------------------------------------------------------------------------
    # unknown ids and empty logs

    async def test_replay_of_unknown_persistence_id_yields_nothing(
        self, journal: Journal, pid: str
    ) -> None:
        assert await _numbers(journal, pid) == []

    async def test_highest_sequence_nr_of_unknown_persistence_id_is_zero(
        self, journal: Journal, pid: str
    ) -> None:
        assert await journal.highest_sequence_nr(pid) == 0

    async def test_empty_write_stores_nothing(self, journal: Journal, pid: str) -> None:
        await journal.write([])
        assert await journal.highest_sequence_nr(pid) == 0

    # ----------------------------------------------------------------------------------------
    # write and replay

    async def test_replay_returns_written_entries_in_order_with_every_field(
        self, journal: Journal, pid: str
    ) -> None:
        written = make_entries(pid, 1, 3, epoch=2) + make_entries(pid, 4, 2, epoch=2, tag="x")
        await journal.write(written[:3])
        await journal.write(written[3:])
        assert await _collect(journal.replay(pid)) == written

    async def test_replay_respects_inclusive_lower_bound(self, journal: Journal, pid: str) -> None:
        await journal.write(make_entries(pid, 1, 5))
        assert await _numbers(journal, pid, from_sequence_nr=3) == [3, 4, 5]

    async def test_replay_respects_inclusive_upper_bound(self, journal: Journal, pid: str) -> None:
        await journal.write(make_entries(pid, 1, 5))
        assert await _numbers(journal, pid, to_sequence_nr=3) == [1, 2, 3]

    async def test_replay_of_a_single_sequence_nr_returns_that_entry(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 5))
        assert await _numbers(journal, pid, 4, 4) == [4]

    async def test_replay_with_lower_bound_above_upper_bound_yields_nothing(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 5))
        assert await _numbers(journal, pid, 4, 3) == []

    async def test_replay_beyond_highest_yields_nothing(self, journal: Journal, pid: str) -> None:
        await journal.write(make_entries(pid, 1, 5))
        assert await _numbers(journal, pid, from_sequence_nr=6) == []

    async def test_replay_respects_limit(self, journal: Journal, pid: str) -> None:
        await journal.write(make_entries(pid, 1, 5))
        assert await _numbers(journal, pid, 2, 5, limit=2) == [2, 3]

    async def test_replay_with_limit_zero_yields_nothing(self, journal: Journal, pid: str) -> None:
        await journal.write(make_entries(pid, 1, 3))
        assert await _numbers(journal, pid, limit=0) == []

    async def test_replay_with_limit_above_count_returns_everything(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 3))
        assert await _numbers(journal, pid, limit=10) == [1, 2, 3]

    async def test_replay_with_negative_limit_raises_configuration_error(
        self, journal: Journal, pid: str
    ) -> None:
        with pytest.raises(ConfigurationError):
            await _numbers(journal, pid, limit=-1)

    async def test_replay_streams_a_log_longer_than_any_page(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 2500))
        await journal.write(make_entries(pid, 2501, 500))
        assert await _numbers(journal, pid) == list(range(1, 3001))
        assert await _numbers(journal, pid, 1200, 2900, limit=1500) == list(range(1200, 2700))

    async def test_replay_of_one_id_never_returns_another_ids_entries(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 2))
        await journal.write(make_entries(pid + "-1", 1, 3))
        await journal.write(make_entries(pid[:-1], 1, 4))
        entries = await _collect(journal.replay(pid))
        assert [entry.persistence_id for entry in entries] == [pid, pid]

    async def test_writes_to_different_ids_are_independent(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid + "-a", 1, 2))
        await journal.write(make_entries(pid + "-b", 1, 5))
        assert await journal.highest_sequence_nr(pid + "-a") == 2
        assert await journal.highest_sequence_nr(pid + "-b") == 5

    async def test_write_that_skips_sequence_numbers_raises_sequence_conflict(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 2))
        with pytest.raises(SequenceConflict):
            await journal.write(make_entries(pid, 4, 1))
        assert await journal.highest_sequence_nr(pid) == 2
        await journal.write(make_entries(pid, 3, 1))
        assert await _numbers(journal, pid) == [1, 2, 3]

    # ----------------------------------------------------------------------------------------
    # optimistic concurrency and atomicity

    async def test_conflicting_sequence_nr_raises_sequence_conflict(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 3))
        with pytest.raises(SequenceConflict):
            await journal.write(make_entries(pid, 3, 1, tag="late"))
        assert [e.payload for e in await _collect(journal.replay(pid, 3, 3))] == [b"e:3"]

    async def test_first_write_of_an_id_must_start_at_one(self, journal: Journal, pid: str) -> None:
        with pytest.raises(SequenceConflict):
            await journal.write(make_entries(pid, 2, 1))
        assert await journal.highest_sequence_nr(pid) == 0

    async def test_reusing_a_deleted_sequence_nr_raises_sequence_conflict(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 3))
        await journal.delete_to(pid, 3)
        with pytest.raises(SequenceConflict):
            await journal.write(make_entries(pid, 2, 2))
        assert await _numbers(journal, pid) == []

    @requires("atomic_batches")
    async def test_write_is_atomic(self, journal: Journal, pid: str) -> None:
        await journal.write(make_entries(pid, 1, 2))
        batch: list[Any] = make_entries(pid, 3, 3)
        batch.append(JournalEntry(pid, 6, "not bytes", "test"))  # type: ignore[arg-type]
        with pytest.raises(WriteRejected):
            await journal.write(batch)
        with pytest.raises(SequenceConflict):
            await journal.write(make_entries(pid, 2, 5, tag="batch"))  # 2 is taken, 3..6 free
        assert await _numbers(journal, pid) == [1, 2]
        assert await journal.highest_sequence_nr(pid) == 2

    async def test_failed_write_does_not_fail_concurrent_writes_to_other_ids(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 1))
        outcomes = await asyncio.gather(
            *(_outcome(journal.write(make_entries(f"{pid}-{n}", 1, 3))) for n in range(10)),
            _outcome(journal.write(make_entries(pid, 1, 2, tag="dup"))),
            *(_outcome(journal.write(make_entries(f"{pid}-{n}", 1, 3))) for n in range(10, 20)),
        )
        assert outcomes.count(SequenceConflict) == 1
        assert outcomes.count(None) == 20
        for n in range(20):
            assert await _numbers(journal, f"{pid}-{n}") == [1, 2, 3]

    async def test_two_writers_racing_on_one_id_produce_one_winner_and_one_conflict(
        self, journal_factory: JournalFactory, capabilities: JournalCapabilities, pid: str
    ) -> None:
        first = journal_factory()
        second = journal_factory() if capabilities.concurrent_writers else first
        try:
            await asyncio.gather(first.open(), second.open())
            await first.write(make_entries(pid, 1, 1))
            outcomes = await asyncio.gather(
                _outcome(first.write(make_entries(pid, 2, 3, tag="first"))),
                _outcome(second.write(make_entries(pid, 2, 3, tag="second"))),
            )
            assert sorted(outcomes, key=str) == sorted([None, SequenceConflict], key=str)
            winner = "first" if outcomes[0] is None else "second"
            stored = await _collect(first.replay(pid, 2))
            assert [entry.payload for entry in stored] == [
                f"{winner}:{nr}".encode() for nr in (2, 3, 4)
            ]
        finally:
            await first.aclose()
            await second.aclose()

    async def test_many_writers_racing_on_one_sequence_nr_produce_exactly_one_winner(
        self, journal: Journal, pid: str
    ) -> None:
        outcomes = await asyncio.gather(
            *(_outcome(journal.write(make_entries(pid, 1, 2, tag=f"w{n}"))) for n in range(8))
        )
        assert outcomes.count(None) == 1
        assert outcomes.count(SequenceConflict) == 7
        winner = outcomes.index(None)
        assert [e.payload for e in await _collect(journal.replay(pid))] == [
            f"w{winner}:1".encode(),
            f"w{winner}:2".encode(),
        ]

    async def test_concurrent_writers_to_many_ids_all_succeed(
        self, journal: Journal, pid: str
    ) -> None:
        async def writer(n: int) -> None:
            for nr in range(1, 6):
                await journal.write(make_entries(f"{pid}-{n}", nr, 1))

        await asyncio.gather(*(writer(n) for n in range(40)))
        for n in (0, 17, 39):
            assert await _numbers(journal, f"{pid}-{n}") == [1, 2, 3, 4, 5]

    async def test_queued_writes_of_one_id_keep_their_order(
        self, journal: Journal, pid: str
    ) -> None:
        outcomes = await asyncio.gather(
            *(_outcome(journal.write(make_entries(pid, nr, 1))) for nr in range(1, 21))
        )
        assert outcomes == [None] * 20
        assert await _numbers(journal, pid) == list(range(1, 21))

    @pytest.mark.slow
    @requires("atomic_batches", "durable")
    async def test_cancelled_write_leaves_all_or_nothing(
        self, journal_factory: JournalFactory, pid: str
    ) -> None:
        journal = journal_factory()
        await journal.open()
        for steps in range(24):
            task = asyncio.ensure_future(journal.write(make_entries(f"{pid}-{steps}", 1, 40)))
            # Let the write run for a varying number of event-loop steps before cancelling it,
            # so the cancellation lands before, during and after the commit.
            for _ in range(steps):
                await asyncio.sleep(0)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await journal.aclose()  # pending writes finish or fail before aclose returns
        journal = await self._reopened(journal_factory)
        try:
            for steps in range(24):
                stored = await _numbers(journal, f"{pid}-{steps}")
                assert stored in ([], list(range(1, 41))), f"partial write after {steps} steps"
                highest = await journal.highest_sequence_nr(f"{pid}-{steps}")
                assert highest == len(stored)
                await journal.write(make_entries(f"{pid}-{steps}", highest + 1, 1))
        finally:
            await journal.aclose()

    # ----------------------------------------------------------------------------------------
    # epochs (fencing)

    async def test_write_with_an_older_epoch_raises_stale_epoch(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 2, epoch=3))
        with pytest.raises(StaleEpoch):
            await journal.write(make_entries(pid, 3, 1, epoch=2))
        assert await journal.highest_sequence_nr(pid) == 2

    async def test_stale_epoch_is_a_write_rejected(self, journal: Journal, pid: str) -> None:
        await journal.write(make_entries(pid, 1, 1, epoch=1))
        with pytest.raises(WriteRejected):
            await journal.write(make_entries(pid, 2, 1, epoch=0))

    async def test_write_with_the_same_or_a_newer_epoch_is_accepted(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 1, epoch=1))
        await journal.write(make_entries(pid, 2, 1, epoch=1))
        await journal.write(make_entries(pid, 3, 1, epoch=4))
        assert [e.epoch for e in await _collect(journal.replay(pid))] == [1, 1, 4]

    async def test_newer_epoch_fences_the_older_writer_for_good(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 1, epoch=1))
        await journal.write(make_entries(pid, 2, 1, epoch=2))
        for nr in (3, 10):
            with pytest.raises(StaleEpoch):
                await journal.write(make_entries(pid, nr, 1, epoch=1))
        await journal.write(make_entries(pid, 3, 1, epoch=2))

    async def test_epoch_fence_survives_delete_to(self, journal: Journal, pid: str) -> None:
        await journal.write(make_entries(pid, 1, 2, epoch=5))
        await journal.delete_to(pid, 2)
        with pytest.raises(StaleEpoch):
            await journal.write(make_entries(pid, 3, 1, epoch=4))

    async def test_epochs_of_one_id_do_not_fence_another(self, journal: Journal, pid: str) -> None:
        await journal.write(make_entries(pid + "-a", 1, 1, epoch=9))
        await journal.write(make_entries(pid + "-b", 1, 1, epoch=0))
        assert await journal.highest_sequence_nr(pid + "-b") == 1

    # ----------------------------------------------------------------------------------------
    # bad input

    @pytest.mark.parametrize(
        "case", ["mixed ids", "gap", "zero", "payload", "serializer", "mixed epochs", "type"]
    )
    async def test_write_of_malformed_input_raises_write_rejected(
        self, journal: Journal, pid: str, case: str
    ) -> None:
        good = make_entries(pid, 1, 2)
        cases: dict[str, list[Any]] = {
            "mixed ids": [good[0], make_entries(pid + "-x", 2, 1)[0]],
            "gap": [good[0], make_entries(pid, 3, 1)[0]],
            "zero": make_entries(pid, 0, 2),
            "payload": [JournalEntry(pid, 1, "text", "test")],  # type: ignore[arg-type]
            "serializer": [JournalEntry(pid, 1, b"x", "")],
            "mixed epochs": [good[0], make_entries(pid, 2, 1, epoch=1)[0]],
            "type": [(pid, 1, b"x", "test")],
        }
        with pytest.raises(WriteRejected):
            await journal.write(cases[case])
        assert await journal.highest_sequence_nr(pid) == 0

    # ----------------------------------------------------------------------------------------
    # deletion and the high-water mark

    async def test_delete_to_removes_entries_up_to_the_bound_inclusive(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 5))
        await journal.delete_to(pid, 3)
        assert await _numbers(journal, pid) == [4, 5]
        assert await _numbers(journal, pid, 2, 4) == [4]

    async def test_delete_to_is_idempotent(self, journal: Journal, pid: str) -> None:
        await journal.write(make_entries(pid, 1, 5))
        await journal.delete_to(pid, 3)
        await journal.delete_to(pid, 3)
        await journal.delete_to(pid, 2)
        assert await _numbers(journal, pid) == [4, 5]

    async def test_delete_to_zero_deletes_nothing(self, journal: Journal, pid: str) -> None:
        await journal.write(make_entries(pid, 1, 2))
        await journal.delete_to(pid, 0)
        assert await _numbers(journal, pid) == [1, 2]

    async def test_delete_to_beyond_highest_deletes_everything_and_spares_later_writes(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 3))
        await journal.delete_to(pid, 100)
        assert await _numbers(journal, pid) == []
        await journal.write(make_entries(pid, 4, 2))
        assert await _numbers(journal, pid) == [4, 5]

    async def test_delete_to_with_the_largest_bound_deletes_everything(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 3))
        await journal.delete_to(pid, MAX_SEQUENCE_NR)
        assert await _numbers(journal, pid) == []

    async def test_delete_to_of_an_unknown_id_is_a_no_op(self, journal: Journal, pid: str) -> None:
        await journal.delete_to(pid, 10)
        assert await journal.highest_sequence_nr(pid) == 0
        await journal.write(make_entries(pid, 1, 1))
        assert await _numbers(journal, pid) == [1]

    async def test_delete_to_of_one_id_spares_other_ids(self, journal: Journal, pid: str) -> None:
        await journal.write(make_entries(pid + "-a", 1, 3))
        await journal.write(make_entries(pid + "-b", 1, 3))
        await journal.delete_to(pid + "-a", 3)
        assert await _numbers(journal, pid + "-b") == [1, 2, 3]

    async def test_highest_sequence_nr_survives_delete_to(self, journal: Journal, pid: str) -> None:
        await journal.write(make_entries(pid, 1, 5))
        await journal.delete_to(pid, 5)
        assert await journal.highest_sequence_nr(pid) == 5
        await journal.delete_to(pid, 3)
        assert await journal.highest_sequence_nr(pid) == 5

    @requires("durable")
    async def test_highest_sequence_nr_survives_delete_to_and_reopening(
        self, journal_factory: JournalFactory, pid: str
    ) -> None:
        journal = journal_factory()
        try:
            await journal.write(make_entries(pid, 1, 4))
            await journal.delete_to(pid, 4)
        finally:
            await journal.aclose()
        journal = await self._reopened(journal_factory)
        try:
            assert await journal.highest_sequence_nr(pid) == 4
            assert await _numbers(journal, pid) == []
        finally:
            await journal.aclose()

    # ----------------------------------------------------------------------------------------
    # durability

    @requires("durable")
    async def test_reopened_journal_keeps_every_acknowledged_entry(
        self, journal_factory: JournalFactory, pid: str
    ) -> None:
        journal = journal_factory()
        written: list[JournalEntry] = []
        try:
            for start in range(1, 31, 3):
                batch = make_entries(pid, start, 3, epoch=1)
                await journal.write(batch)
                written += batch
            await journal.save_snapshot(_snapshot(pid, 12))
        finally:
            await journal.aclose()
        journal = await self._reopened(journal_factory)
        try:
            assert await _collect(journal.replay(pid)) == written
            assert await journal.highest_sequence_nr(pid) == 30
            with pytest.raises(StaleEpoch):
                await journal.write(make_entries(pid, 31, 1, epoch=0))
        finally:
            await journal.aclose()

    @requires("durable", "snapshots")
    async def test_reopened_journal_keeps_snapshots(
        self, journal_factory: JournalFactory, pid: str
    ) -> None:
        journal = journal_factory()
        try:
            await journal.save_snapshot(_snapshot(pid, 7))
        finally:
            await journal.aclose()
        journal = await self._reopened(journal_factory)
        try:
            assert await journal.load_snapshot(pid) == _snapshot(pid, 7)
        finally:
            await journal.aclose()

    # ----------------------------------------------------------------------------------------
    # snapshots

    @requires("snapshots")
    async def test_load_snapshot_of_unknown_id_is_none(self, journal: Journal, pid: str) -> None:
        assert await journal.load_snapshot(pid) is None

    @requires("snapshots")
    async def test_load_snapshot_returns_the_newest(self, journal: Journal, pid: str) -> None:
        for nr in (5, 15, 10):
            await journal.save_snapshot(_snapshot(pid, nr))
        assert await journal.load_snapshot(pid) == _snapshot(pid, 15)

    @requires("snapshots")
    async def test_load_snapshot_respects_inclusive_max_sequence_nr(
        self, journal: Journal, pid: str
    ) -> None:
        for nr in (5, 10, 15):
            await journal.save_snapshot(_snapshot(pid, nr))
        assert await journal.load_snapshot(pid, max_sequence_nr=10) == _snapshot(pid, 10)
        assert await journal.load_snapshot(pid, max_sequence_nr=9) == _snapshot(pid, 5)
        assert await journal.load_snapshot(pid, max_sequence_nr=4) is None

    @requires("snapshots")
    async def test_load_snapshot_respects_inclusive_min_sequence_nr(
        self, journal: Journal, pid: str
    ) -> None:
        for nr in (5, 10):
            await journal.save_snapshot(_snapshot(pid, nr))
        assert await journal.load_snapshot(pid, 10, min_sequence_nr=10) == _snapshot(pid, 10)
        assert await journal.load_snapshot(pid, 9, min_sequence_nr=6) is None

    @requires("snapshots")
    async def test_load_snapshot_respects_inclusive_max_timestamp(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.save_snapshot(_snapshot(pid, 5, timestamp_ms=100))
        await journal.save_snapshot(_snapshot(pid, 10, timestamp_ms=200))
        assert await journal.load_snapshot(pid, max_timestamp_ms=200) == _snapshot(pid, 10, 200)
        assert await journal.load_snapshot(pid, max_timestamp_ms=199) == _snapshot(pid, 5, 100)
        assert await journal.load_snapshot(pid, max_timestamp_ms=99) is None

    @requires("snapshots")
    async def test_save_snapshot_replaces_one_with_the_same_sequence_nr(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.save_snapshot(_snapshot(pid, 5))
        replacement = SnapshotEntry(pid, 5, b"new", "test", "tests:State2", 2000)
        await journal.save_snapshot(replacement)
        assert await journal.load_snapshot(pid) == replacement

    @requires("snapshots")
    async def test_delete_snapshots_removes_those_within_inclusive_bounds(
        self, journal: Journal, pid: str
    ) -> None:
        for nr in (5, 10, 15, 20):
            await journal.save_snapshot(_snapshot(pid, nr))
        await journal.delete_snapshots(pid, max_sequence_nr=15, min_sequence_nr=10)
        assert await journal.load_snapshot(pid) == _snapshot(pid, 20)
        assert await journal.load_snapshot(pid, max_sequence_nr=19) == _snapshot(pid, 5)

    @requires("snapshots")
    async def test_delete_snapshots_is_idempotent(self, journal: Journal, pid: str) -> None:
        await journal.save_snapshot(_snapshot(pid, 5))
        await journal.delete_snapshots(pid, 5)
        await journal.delete_snapshots(pid, 5)
        assert await journal.load_snapshot(pid) is None

    @requires("snapshots")
    async def test_snapshots_of_one_id_do_not_affect_another(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.save_snapshot(_snapshot(pid + "-a", 5))
        await journal.save_snapshot(_snapshot(pid + "-b", 9))
        await journal.delete_snapshots(pid + "-b", 100)
        assert await journal.load_snapshot(pid + "-a") == _snapshot(pid + "-a", 5)

    @requires("snapshots")
    async def test_snapshots_are_independent_of_deleted_entries(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 5))
        await journal.save_snapshot(_snapshot(pid, 5))
        await journal.delete_to(pid, 5)
        assert await journal.load_snapshot(pid) == _snapshot(pid, 5)

    # ----------------------------------------------------------------------------------------
    # callers outside a task

    async def test_usable_from_an_actor_handler_before_it_suspends(
        self, journal_factory: JournalFactory, pid: str, capabilities: JournalCapabilities
    ) -> None:
        # An actor's handler runs outside any task until it first suspends (see
        # casty.actors.cell), and an event-sourced entity writes from there; so nothing may
        # need a current task (asyncio.timeout does). Each step is a message of its own, so
        # each call starts outside a task, the first one opening the journal.
        journal = journal_factory()
        steps: dict[str, Callable[[], Any]] = {
            "highest": lambda: journal.highest_sequence_nr(pid),
            "write": lambda: journal.write(make_entries(pid, 1, 3)),
            "replay": lambda: _numbers(journal, pid),
            "save_snapshot": lambda: journal.save_snapshot(_snapshot(pid, 2)),
            "load_snapshot": lambda: journal.load_snapshot(pid),
            "delete_to": lambda: journal.delete_to(pid, 1),
            "delete_snapshots": lambda: journal.delete_snapshots(pid, 2),
        }

        async def receive(ctx: Any, message: tuple[str, Any]) -> Behavior[Any]:
            step, reply_to = message
            reply_to.tell(await steps[step]())
            return Behaviors.same()

        try:
            async with ActorSystem(name="journal-contract") as system:
                ref = system.spawn(Behaviors.receive(receive), "user")

                async def ask(step: str) -> Any:
                    return await system.ask(ref, lambda reply_to: (step, reply_to))

                assert await ask("highest") == 0
                assert await ask("write") is None
                assert await ask("replay") == [1, 2, 3]
                if capabilities.snapshots:
                    assert await ask("save_snapshot") is None
                    assert await ask("load_snapshot") == _snapshot(pid, 2)
                    assert await ask("delete_snapshots") is None
                assert await ask("delete_to") is None
                assert await ask("replay") == [2, 3]
        finally:
            await journal.aclose()

    # ----------------------------------------------------------------------------------------
    # closing

    async def test_async_with_opens_and_closes(
        self, journal_factory: JournalFactory, pid: str
    ) -> None:
        async with journal_factory() as journal:
            await journal.write(make_entries(pid, 1, 1))
        with pytest.raises(ResourceClosed):
            await journal.highest_sequence_nr(pid)

    async def test_aclose_is_idempotent(self, journal_factory: JournalFactory) -> None:
        journal = journal_factory()
        await journal.open()
        await journal.aclose()
        await journal.aclose()

    async def test_aclose_of_a_never_opened_journal_is_fine(
        self, journal_factory: JournalFactory
    ) -> None:
        journal = journal_factory()
        await journal.aclose()
        with pytest.raises(ResourceClosed):
            await journal.open()

    async def test_every_method_raises_resource_closed_after_aclose(
        self, journal_factory: JournalFactory, pid: str
    ) -> None:
        journal = journal_factory()
        await journal.write(make_entries(pid, 1, 1))
        await journal.aclose()
        calls: list[Callable[[], Any]] = [
            lambda: journal.write(make_entries(pid, 2, 1)),
            lambda: journal.write([]),
            lambda: _collect(journal.replay(pid)),
            lambda: journal.highest_sequence_nr(pid),
            lambda: journal.delete_to(pid, 1),
            lambda: journal.save_snapshot(_snapshot(pid, 1)),
            lambda: journal.load_snapshot(pid),
            lambda: journal.delete_snapshots(pid, 1),
            journal.open,
        ]
        for call in calls:
            with pytest.raises(ResourceClosed):
                await call()

    @requires("durable")
    async def test_writes_pending_at_aclose_finish_or_fail_cleanly(
        self, journal_factory: JournalFactory, pid: str
    ) -> None:
        journal = journal_factory()
        await journal.open()
        writes = [
            asyncio.ensure_future(journal.write(make_entries(f"{pid}-{n}", 1, 2)))
            for n in range(20)
        ]
        await asyncio.sleep(0)  # let the writes start before closing
        await journal.aclose()
        results = await asyncio.gather(*writes, return_exceptions=True)
        assert all(r is None or isinstance(r, ResourceClosed) for r in results), results
        journal = await self._reopened(journal_factory)
        try:
            for n, result in enumerate(results):
                if result is None:
                    assert await _numbers(journal, f"{pid}-{n}") == [1, 2]
        finally:
            await journal.aclose()

    # ----------------------------------------------------------------------------------------
    # replace_suffix (Raft's truncate-then-append)

    @requires("replace_suffix")
    async def test_replace_suffix_replaces_the_entries_from_its_first_number(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 5, epoch=1))
        await journal.replace_suffix(make_entries(pid, 3, 4, epoch=2, tag="new"))
        expected = make_entries(pid, 1, 2, epoch=1) + make_entries(pid, 3, 4, epoch=2, tag="new")
        assert await _collect(journal.replay(pid)) == expected
        assert await journal.highest_sequence_nr(pid) == 6

    @requires("replace_suffix")
    async def test_replace_suffix_with_a_shorter_suffix_lowers_the_highest_number(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 5, epoch=1))
        await journal.replace_suffix(make_entries(pid, 2, 1, epoch=1, tag="new"))
        assert await journal.highest_sequence_nr(pid) == 2
        assert [e.payload for e in await _collect(journal.replay(pid))] == [b"e:1", b"new:2"]
        await journal.write(make_entries(pid, 3, 1, epoch=1, tag="after"))
        assert await _numbers(journal, pid) == [1, 2, 3]
        with pytest.raises(SequenceConflict):
            await journal.write(make_entries(pid, 6, 1, epoch=1))

    @requires("replace_suffix")
    async def test_replace_suffix_from_one_replaces_the_whole_log(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 3, epoch=1))
        await journal.replace_suffix(make_entries(pid, 1, 1, epoch=1, tag="new"))
        assert [e.payload for e in await _collect(journal.replay(pid))] == [b"new:1"]
        assert await journal.highest_sequence_nr(pid) == 1

    @requires("replace_suffix")
    async def test_replace_suffix_at_the_next_number_is_a_plain_append(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.replace_suffix(make_entries(pid, 1, 2, epoch=1))
        await journal.replace_suffix(make_entries(pid, 3, 2, epoch=1))
        assert await _collect(journal.replay(pid)) == make_entries(pid, 1, 4, epoch=1)
        assert await journal.highest_sequence_nr(pid) == 4

    @requires("replace_suffix")
    async def test_replace_suffix_accepts_entries_of_several_epochs(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 3, epoch=1))
        entries = [
            dataclasses.replace(entry, epoch=epoch)
            for entry, epoch in zip(make_entries(pid, 2, 4, tag="new"), [1, 2, 2, 3], strict=True)
        ]
        await journal.replace_suffix(entries)
        assert [e.epoch for e in await _collect(journal.replay(pid))] == [1, 1, 2, 2, 3]
        assert await _collect(journal.replay(pid, 2)) == entries

    @requires("replace_suffix")
    async def test_writes_after_replace_suffix_are_fenced_by_its_last_epoch(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 2, epoch=1))
        await journal.write(make_entries(pid, 3, 2, epoch=2))
        entries = make_entries(pid, 3, 1, epoch=2, tag="new") + make_entries(pid, 4, 1, epoch=3)
        await journal.replace_suffix(entries)
        with pytest.raises(StaleEpoch):
            await journal.write(make_entries(pid, 5, 1, epoch=2))
        await journal.write(make_entries(pid, 5, 1, epoch=3))
        assert [e.epoch for e in await _collect(journal.replay(pid))] == [1, 1, 2, 3, 3]

    @requires("replace_suffix")
    async def test_replace_suffix_never_replaces_newer_entries_with_older(
        self, journal: Journal, pid: str, capabilities: JournalCapabilities
    ) -> None:
        await journal.write(make_entries(pid, 1, 2, epoch=1))
        await journal.write(make_entries(pid, 3, 2, epoch=3))
        if capabilities.snapshots:
            await journal.save_snapshot(_snapshot(pid, 4))
        before = await _collect(journal.replay(pid))
        with pytest.raises(StaleEpoch):
            await journal.replace_suffix(make_entries(pid, 3, 3, epoch=2, tag="new"))
        with pytest.raises(StaleEpoch):  # several epochs, all older than the replaced 3
            await journal.replace_suffix(
                make_entries(pid, 3, 1, epoch=1, tag="new") + make_entries(pid, 4, 1, epoch=2)
            )
        assert await _collect(journal.replay(pid)) == before
        assert await journal.highest_sequence_nr(pid) == 4
        if capabilities.snapshots:
            assert await journal.load_snapshot(pid) == _snapshot(pid, 4)
        with pytest.raises(StaleEpoch):  # the fence is unchanged too
            await journal.write(make_entries(pid, 5, 1, epoch=2))

    @requires("replace_suffix")
    async def test_replace_suffix_older_than_the_kept_entries_raises_stale_epoch(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 2, epoch=2))
        await journal.write(make_entries(pid, 3, 1, epoch=3))
        with pytest.raises(StaleEpoch):  # entry 2, kept, has epoch 2
            await journal.replace_suffix(
                make_entries(pid, 3, 1, epoch=1, tag="new") + make_entries(pid, 4, 1, epoch=3)
            )
        with pytest.raises(StaleEpoch):  # a plain append is fenced as a write is
            await journal.replace_suffix(make_entries(pid, 4, 1, epoch=2))
        assert await _collect(journal.replay(pid)) == make_entries(
            pid, 1, 2, epoch=2
        ) + make_entries(pid, 3, 1, epoch=3)

    @requires("replace_suffix")
    async def test_replace_suffix_that_would_leave_a_gap_raises_sequence_conflict(
        self, journal: Journal, pid: str
    ) -> None:
        with pytest.raises(SequenceConflict):
            await journal.replace_suffix(make_entries(pid, 2, 1))
        await journal.write(make_entries(pid, 1, 2))
        with pytest.raises(SequenceConflict):
            await journal.replace_suffix(make_entries(pid, 4, 2))
        assert await _numbers(journal, pid) == [1, 2]
        assert await journal.highest_sequence_nr(pid) == 2

    @requires("replace_suffix")
    @pytest.mark.parametrize(
        "case", ["empty", "mixed ids", "gap", "decreasing epochs", "zero", "serializer", "type"]
    )
    async def test_replace_suffix_of_malformed_input_raises_write_rejected(
        self, journal: Journal, pid: str, case: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 3, epoch=1))
        good = make_entries(pid, 2, 2, epoch=1, tag="new")
        cases: dict[str, list[Any]] = {
            "empty": [],
            "mixed ids": [good[0], make_entries(pid + "-x", 3, 1, epoch=1)[0]],
            "gap": [good[0], make_entries(pid, 4, 1, epoch=1)[0]],
            "decreasing epochs": (
                make_entries(pid, 2, 1, epoch=2) + make_entries(pid, 3, 1, epoch=1)
            ),
            "zero": make_entries(pid, 0, 2, epoch=1),
            "serializer": [JournalEntry(pid, 2, b"x", "", epoch=1)],
            "type": [(pid, 2, b"x", "test")],
        }
        with pytest.raises(WriteRejected):
            await journal.replace_suffix(cases[case])
        assert await _collect(journal.replay(pid)) == make_entries(pid, 1, 3, epoch=1)
        assert await journal.highest_sequence_nr(pid) == 3

    @requires("replace_suffix", "snapshots")
    async def test_replace_suffix_deletes_the_snapshots_of_replaced_entries(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 6))
        for nr in (2, 4, 6):
            await journal.save_snapshot(_snapshot(pid, nr))
        await journal.save_snapshot(_snapshot(pid + "-other", 6))
        await journal.replace_suffix(make_entries(pid, 4, 3, tag="new"))
        assert await journal.load_snapshot(pid) == _snapshot(pid, 2)
        assert await journal.load_snapshot(pid, min_sequence_nr=3) is None
        assert await journal.load_snapshot(pid + "-other") == _snapshot(pid + "-other", 6)

    @requires("replace_suffix")
    async def test_replace_suffix_keeps_entries_deleted_by_delete_to_deleted(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 5, epoch=1))
        await journal.delete_to(pid, 3)
        await journal.replace_suffix(make_entries(pid, 4, 3, epoch=1, tag="new"))
        assert await _collect(journal.replay(pid)) == make_entries(pid, 4, 3, epoch=1, tag="new")
        assert await journal.highest_sequence_nr(pid) == 6

    @requires("replace_suffix")
    async def test_replace_suffix_respects_the_fence_of_a_fully_deleted_log(
        self, journal: Journal, pid: str
    ) -> None:
        await journal.write(make_entries(pid, 1, 3, epoch=2))
        await journal.delete_to(pid, 3)
        with pytest.raises(StaleEpoch):
            await journal.replace_suffix(make_entries(pid, 2, 1, epoch=1))
        await journal.replace_suffix(make_entries(pid, 2, 1, epoch=2, tag="new"))
        assert await _collect(journal.replay(pid)) == make_entries(pid, 2, 1, epoch=2, tag="new")
        assert await journal.highest_sequence_nr(pid) == 2

    @requires("replace_suffix")
    async def test_replace_suffix_leaves_other_ids_alone(self, journal: Journal, pid: str) -> None:
        await journal.write(make_entries(pid, 1, 3))
        await journal.write(make_entries(pid + "-other", 1, 3))
        await journal.replace_suffix(make_entries(pid, 2, 1, tag="new"))
        assert await _collect(journal.replay(pid + "-other")) == make_entries(pid + "-other", 1, 3)
        assert await journal.highest_sequence_nr(pid + "-other") == 3

    @requires("replace_suffix", "durable")
    async def test_reopened_journal_keeps_the_replaced_suffix(
        self, journal_factory: JournalFactory, pid: str
    ) -> None:
        journal = journal_factory()
        try:
            await journal.write(make_entries(pid, 1, 6, epoch=1))
            await journal.replace_suffix(make_entries(pid, 3, 2, epoch=2, tag="new"))
        finally:
            await journal.aclose()
        journal = await self._reopened(journal_factory)
        try:
            expected = make_entries(pid, 1, 2, epoch=1) + make_entries(
                pid, 3, 2, epoch=2, tag="new"
            )
            assert await _collect(journal.replay(pid)) == expected
            assert await journal.highest_sequence_nr(pid) == 4
            with pytest.raises(StaleEpoch):
                await journal.write(make_entries(pid, 5, 1, epoch=1))
            await journal.write(make_entries(pid, 5, 1, epoch=2))
        finally:
            await journal.aclose()

    @requires("replace_suffix")
    async def test_replace_suffix_racing_a_write_leaves_one_of_the_two_orders(
        self, journal_factory: JournalFactory, capabilities: JournalCapabilities, pid: str
    ) -> None:
        first = journal_factory()
        second = journal_factory() if capabilities.concurrent_writers else first
        try:
            for round_ in range(10):
                rid = f"{pid}-{round_}"
                await first.write(make_entries(rid, 1, 5, epoch=1))
                replacement = make_entries(rid, 3, 1, epoch=1, tag="new")
                replaced, written = await asyncio.gather(
                    _outcome(first.replace_suffix(replacement)),
                    _outcome(second.write(make_entries(rid, 6, 2, epoch=1, tag="w"))),
                )
                assert replaced is None
                # Write first: it is stored, then replaced. Replace first: it finds 6 is no
                # longer the next number. Never a mix (the write's entries after the new 3).
                assert written in (None, SequenceConflict)
                expected = make_entries(rid, 1, 2, epoch=1) + replacement
                assert await _collect(first.replay(rid)) == expected
                assert await second.highest_sequence_nr(rid) == 3
                await second.write(make_entries(rid, 4, 1, epoch=1))
                assert await _numbers(first, rid) == [1, 2, 3, 4]
        finally:
            await first.aclose()
            await second.aclose()

    @pytest.mark.slow
    @requires("replace_suffix", "durable")
    async def test_cancelled_replace_suffix_leaves_all_or_nothing(
        self, journal_factory: JournalFactory, pid: str
    ) -> None:
        journal = journal_factory()
        await journal.open()
        old = make_entries(pid, 1, 30, epoch=1)
        new = make_entries(pid, 11, 5, epoch=2, tag="new")
        for steps in range(24):
            rid = f"{pid}-{steps}"
            await journal.write([dataclasses.replace(entry, persistence_id=rid) for entry in old])
            task = asyncio.ensure_future(
                journal.replace_suffix([dataclasses.replace(e, persistence_id=rid) for e in new])
            )
            for _ in range(steps):
                await asyncio.sleep(0)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await journal.aclose()
        journal = await self._reopened(journal_factory)
        try:
            for steps in range(24):
                rid = f"{pid}-{steps}"
                stored = [(e.sequence_nr, e.payload) for e in await _collect(journal.replay(rid))]
                before = [(e.sequence_nr, e.payload) for e in old]
                after = before[:10] + [(e.sequence_nr, e.payload) for e in new]
                assert stored in (before, after), f"partial replace after {steps} steps"
                assert await journal.highest_sequence_nr(rid) == len(stored)
        finally:
            await journal.aclose()

    @requires("replace_suffix")
    async def test_replace_suffix_raises_resource_closed_after_aclose(
        self, journal_factory: JournalFactory, pid: str
    ) -> None:
        journal = journal_factory()
        await journal.write(make_entries(pid, 1, 1))
        await journal.aclose()
        with pytest.raises(ResourceClosed):
            await journal.replace_suffix(make_entries(pid, 1, 1))

    # ----------------------------------------------------------------------------------------
    # model-based

    @pytest.mark.slow
    async def test_random_operation_sequences_match_a_model(
        self, journal_factory: JournalFactory, capabilities: JournalCapabilities
    ) -> None:
        loop = asyncio.get_running_loop()
        machine = _machine(journal_factory, capabilities, self.prepare_persistence_id, loop)
        # Hypothesis drives the machine synchronously; each step runs on this test's event
        # loop through run_coroutine_threadsafe while this coroutine waits for the thread.
        await asyncio.to_thread(
            run_state_machine_as_test,
            machine,
            settings=settings(
                max_examples=20,
                stateful_step_count=15,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )


# --------------------------------------------------------------------------------------------
# the model


@dataclass
class _ModelLog:
    entries: dict[int, JournalEntry] = field(default_factory=dict)
    highest: int = 0
    max_epoch: int = 0
    snapshots: dict[int, SnapshotEntry] = field(default_factory=dict)

    def write(self, entries: list[JournalEntry]) -> type[BaseException] | None:
        if entries[0].epoch < self.max_epoch:
            return StaleEpoch
        if entries[0].sequence_nr != self.highest + 1:
            return SequenceConflict
        self.entries.update((entry.sequence_nr, entry) for entry in entries)
        self.highest = entries[-1].sequence_nr
        self.max_epoch = entries[0].epoch
        return None

    def replay(self, low: int, high: int, limit: int | None) -> list[JournalEntry]:
        chosen = [self.entries[nr] for nr in sorted(self.entries) if low <= nr <= high]
        return chosen if limit is None else chosen[:limit]

    def load_snapshot(self, high: int, low: int, newest: int | None) -> SnapshotEntry | None:
        eligible = [
            snapshot
            for nr, snapshot in self.snapshots.items()
            if low <= nr <= high and (newest is None or snapshot.timestamp_ms <= newest)
        ]
        return max(eligible, key=lambda snapshot: snapshot.sequence_nr, default=None)


def _machine(
    journal_factory: JournalFactory,
    capabilities: JournalCapabilities,
    prepare_persistence_id: Callable[[str], str],
    loop: asyncio.AbstractEventLoop,
) -> type[RuleBasedStateMachine]:
    def run(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=60)

    which = st.integers(0, 1)
    bound = st.integers(0, 14)

    class JournalAgainstModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.journal = journal_factory()
            self.ids = [prepare_persistence_id(f"model-{n}") for n in range(2)]
            self.model = [_ModelLog(), _ModelLog()]

        @rule(
            which=which,
            count=st.integers(1, 3),
            offset=st.sampled_from([0, 0, 0, -2, -1, 1]),
            epoch=st.integers(0, 3),
        )
        def write(self, which: int, count: int, offset: int, epoch: int) -> None:
            log = self.model[which]
            # 0 continues the log; below reuses numbers, above leaves a gap (both conflict)
            start = max(1, log.highest + 1 + offset)
            entries = make_entries(self.ids[which], start, count, epoch=epoch)
            assert run(_outcome(self.journal.write(entries))) is log.write(entries)

        @rule(which=which, to=bound)
        def delete_to(self, which: int, to: int) -> None:
            run(self.journal.delete_to(self.ids[which], to))
            log = self.model[which]
            log.entries = {nr: e for nr, e in log.entries.items() if nr > to}

        @rule(which=which, low=bound, high=bound, limit=st.none() | st.integers(0, 4))
        def replay(self, which: int, low: int, high: int, limit: int | None) -> None:
            replay = self.journal.replay(self.ids[which], low, high, limit)
            assert run(_collect(replay)) == self.model[which].replay(low, high, limit)

        @precondition(lambda self: capabilities.snapshots)
        @rule(which=which, nr=bound, timestamp_ms=st.integers(0, 3))
        def save_snapshot(self, which: int, nr: int, timestamp_ms: int) -> None:
            snapshot = _snapshot(self.ids[which], nr, timestamp_ms)
            run(self.journal.save_snapshot(snapshot))
            self.model[which].snapshots[nr] = snapshot

        @precondition(lambda self: capabilities.snapshots)
        @rule(which=which, high=bound, low=bound, newest=st.none() | st.integers(0, 3))
        def load_snapshot(self, which: int, high: int, low: int, newest: int | None) -> None:
            loaded = run(self.journal.load_snapshot(self.ids[which], high, low, newest))
            assert loaded == self.model[which].load_snapshot(high, low, newest)

        @precondition(lambda self: capabilities.snapshots)
        @rule(which=which, high=bound, low=bound)
        def delete_snapshots(self, which: int, high: int, low: int) -> None:
            run(self.journal.delete_snapshots(self.ids[which], high, low))
            snapshots = self.model[which].snapshots
            for nr in [nr for nr in snapshots if low <= nr <= high]:
                del snapshots[nr]

        @precondition(lambda self: capabilities.durable)
        @rule()
        def reopen(self) -> None:
            run(self.journal.aclose())
            self.journal = journal_factory()

        @invariant()
        def highest_and_log_match(self) -> None:
            for persistence_id, log in zip(self.ids, self.model, strict=True):
                assert run(self.journal.highest_sequence_nr(persistence_id)) == log.highest
                assert run(_collect(self.journal.replay(persistence_id))) == log.replay(
                    0, MAX_SEQUENCE_NR, None
                )

        def teardown(self) -> None:
            run(self.journal.aclose())

    return JournalAgainstModel
