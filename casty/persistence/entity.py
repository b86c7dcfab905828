"""`event_sourced`: an actor whose state is the fold of its stored events (Akka Typed's
EventSourcedBehavior, made Pythonic).

How one incarnation runs (`_Entity`), and why:

- **Recovery** runs in a task owned by the actor (``ctx.pipe_to_self``): the newest snapshot,
  then the events after it, streamed. Commands arriving meanwhile go to a bounded
  `StashBuffer` (overflow: a dead letter, "stash overflow"); the result arrives as a message,
  and the stash is put back at the head of the mailbox, in order.
- **Persisting**: a command handler returns `persisted`; its events are encoded (an
  `EncodeError` fails only that command), applied with ``on_event`` and numbered. The write is
  then awaited inside the handling of that command: the actor simply suspends, and the
  commands arriving meanwhile wait in its mailbox, in order. This costs no task of the
  entity's own and no trip of the result through the mailbox (the actor cell hands a
  suspended handler to a task only when it really waits), which is most of the cost of a
  write besides the store's. When the write returns, each command's ``then`` runs, in order,
  still inside that handling.
- **Batching**: the commands that queued up during a write (or a recovery) are handled one
  after another and their events form one batch: it stays open while the next thing in the
  mailbox is another command, and is written atomically once it is not (or once it holds
  ``stash_capacity`` commands). This is group commit at the entity level (as in database
  logs: results are released only after the log is durable); the journal groups the writes
  of many entities into one transaction in turn. A command handled while nothing was in
  flight is written at once.
- **Failures** of a write: a rejected one (`WriteRejected`, `StaleEpoch`) fails the batch's
  commands, puts the state back to the last durable one and goes on. A `SequenceConflict`
  means another writer appended to this persistence id: the commands fail, and the entity
  catches up (replays the other writer's events onto its last durable state, stashing
  meanwhile) before it goes on. Anything else (`JournalUnavailable` first of all) fails the
  commands and then the actor, so its supervisor decides (stop by default; restart with
  backoff to recover from scratch; the commands still in the mailbox go to the next
  incarnation).

A command handled in a batch sees the events of the commands before it in that batch before
they are durable (that is what lets one write carry them all); whatever must reflect durable
state only (replies, above all) belongs in ``then``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, final

from casty.abc import Journal, JournalEntry, Serializer, SnapshotEntry
from casty.actors.ask import reply_promises
from casty.actors.behaviors import Behavior, Behaviors
from casty.actors.cell import _PIPE, _Envelope
from casty.actors.context import ActorContext
from casty.actors.events import DeadLetter
from casty.actors.signals import Signal
from casty.actors.stash import StashBuffer
from casty.errors import (
    ActorError,
    ActorStopped,
    ConfigurationError,
    EncodeError,
    PersistFailed,
    SequenceConflict,
    StashOverflow,
    WriteRejected,
)
from casty.journals import as_journal
from casty.journals._checks import WriteNowait, make_entry
from casty.persistence.effects import Persisted
from casty.persistence.recovery import EntryCodec, recover
from casty.persistence.snapshots import SnapshotPolicy
from casty.serializers import as_serializer

__all__ = ["event_sourced"]

C = TypeVar("C")
S = TypeVar("S")

OnCommand = Callable[[ActorContext[C], S, C], "Behavior[Any] | Awaitable[Behavior[Any]]"]

_current_task = asyncio.current_task
_SAME: Behavior[Any] = Behaviors.same()
_UNHANDLED: Behavior[Any] = Behaviors.unhandled()
_STOPPED_TYPE = type(Behaviors.stopped())
_DEFAULT_STASH = 4096


@dataclass(frozen=True, slots=True)
class _Settings(Generic[C, S]):
    persistence_id: str
    journal: Journal | None  # shared by every incarnation; None: build one from the URL
    journal_url: str | None
    initial_state: S
    on_event: Callable[[S, Any], S]
    on_command: OnCommand[C, S]
    snapshot_policy: SnapshotPolicy | None
    serializer: Serializer
    epoch: int
    stash_capacity: int


@final
class _Command:
    """One command's share of a batch: the effect, and the state after its events."""

    __slots__ = ("command", "effect", "sequence_nr", "state")

    def __init__(self, command: object, effect: Persisted, state: object, sequence_nr: int) -> None:
        self.command = command
        self.effect = effect
        self.state = state
        self.sequence_nr = sequence_nr


# Results of the entity's own tasks, delivered through its mailbox. ``entity`` tells them apart
# from the results of a previous incarnation's tasks (a restart does not cancel those).
@final
class _Recovered:
    __slots__ = ("entity", "error", "value")

    def __init__(self, entity: object, value: Any, error: BaseException | None) -> None:
        self.entity = entity
        self.value = value
        self.error = error


@final
class _SnapshotSaved:
    __slots__ = ("entity", "error")

    def __init__(self, entity: object, error: BaseException | None) -> None:
        self.entity = entity
        self.error = error


@final
class _Write:
    """A write handed to the journal without suspending (`WriteNowait`): the journal calls it
    with the outcome; it then wakes the handler waiting for it, or else comes back to the
    entity as a message (``_PIPE``, so a full mailbox cannot drop it)."""

    __slots__ = ("batch", "ctx", "done", "error", "started", "waiter", "withdraw")

    def __init__(self, ctx: ActorContext[Any], batch: list[_Command], started: float) -> None:
        self.ctx = ctx
        self.batch = batch
        self.started = started
        self.done = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.withdraw: Callable[[], None] | None = None  # the journal's, once handed over

    def __call__(self, error: BaseException | None) -> None:
        self.done = True
        self.error = error
        waiter = self.waiter
        if waiter is None:
            self.ctx._enqueue_envelope(_Envelope(_PIPE, _opened, self))
        elif not waiter.done():
            waiter.set_result(None)


def _opened(write: _Write, error: object) -> _Write:
    return write


def event_sourced(
    *,
    entity_id: str,
    journal: Journal | str,
    initial_state: S,
    on_event: Callable[[S, Any], S],
    on_command: OnCommand[C, S],
    snapshot_policy: SnapshotPolicy | None = None,
    serializer: Serializer | str | None = None,
    persistence_id: str | None = None,
    entity_type: str | None = None,
    epoch: int = 0,
    stash_capacity: int = _DEFAULT_STASH,
) -> Behavior[C]:
    """An actor whose state is rebuilt from its events (also ``Behaviors.event_sourced``).

    Each incarnation first recovers (newest snapshot, then the events after it), then handles
    commands with ``on_command(ctx, state, command)``, which returns:

    - ``Behaviors.persisted(events, then=..., on_failure=...)``: store events (see `persisted`);
    - ``Behaviors.same()``: nothing to store;
    - ``Behaviors.unhandled()``: the command becomes a dead letter ("unhandled");
    - ``Behaviors.stopped()``: stop, once the writes already under way are durable and their
      callbacks ran.

    Example::

        def account(account_id: str, journal: Journal) -> Behavior[Command]:
            def on_event(state: Account, event: Deposited) -> Account:
                return Account(state.balance + event.amount)

            def on_command(ctx, state: Account, cmd: Command) -> Behavior[Command]:
                match cmd:
                    case Deposit(amount, reply_to):
                        return Behaviors.persisted(
                            Deposited(amount), then=lambda s: reply_to.tell(s.balance)
                        )
                    case GetBalance(reply_to):
                        reply_to.tell(state.balance)
                        return Behaviors.same()

            return Behaviors.event_sourced(
                entity_id=account_id, journal=journal, initial_state=Account(0),
                on_event=on_event, on_command=on_command,
            )

    Commands that arrive during recovery or a catch-up are stashed, at most ``stash_capacity``
    of them (more become dead letters, "stash overflow"), and handled afterwards in arrival
    order. While a write is in flight the actor waits for it, so commands arriving meanwhile
    wait in its mailbox; the events of the commands that queued up during one write (or a
    recovery) go together in the next atomic `Journal.write`, and a command of such a batch
    sees the events of the commands before it in the batch before they are durable (see the
    module docstring): reply in ``then``, or with ``persisted((), then=...)`` for queries.
    Failures:

    - a rejected write (`WriteRejected`, `StaleEpoch`): the commands of the batch get
      ``on_failure(PersistFailed)`` (or are logged and published as dead letters), the state
      returns to the last durable one, and the entity goes on;
    - a `SequenceConflict` (another writer exists): as above, then the entity replays the other
      writer's events before handling the next command;
    - `JournalUnavailable` or any other journal error: the commands fail as above, then the
      actor fails with that error, and its supervisor decides (the commands still waiting stay
      in the mailbox, so a restarted entity handles them). Wrap it in
      ``Behaviors.supervise(..., SupervisorStrategy.restart(backoff=..., on=JournalUnavailable))``
      to recover once the store is back;
    - a stored event or snapshot that cannot be decoded: the actor fails with `CorruptEntry`
      (retrying cannot help, so restart only on `JournalUnavailable`);
    - ``on_event``, ``on_command``, ``then`` raising: a failure of the actor, as for any
      handler.

    Args:
        entity_id: the entity's identity, a non-empty string.
        journal: a `Journal` (shared by every entity given it; the caller closes it) or a URL
            such as ``"sqlite:///state.db"``, from which each incarnation builds its own journal
            and closes it when it stops or restarts (prefer an object for many entities).
        initial_state: the state before the first event (treat states as immutable values).
        on_event: ``(state, event) -> state``: pure, fast, never fails for a stored event; it
            runs when a command persists and again on every recovery.
        on_command: ``(ctx, state, command) -> Behavior``, sync or async.
        snapshot_policy: when to save snapshots (`SnapshotPolicy`); ``None`` for never.
        serializer: encodes events and snapshots: a `Serializer` or its name (default
            ``"msgpack"``). Entries keep the serializer's name and a manifest; recovery decodes
            each with the serializer it names.
        persistence_id: the log's id in the journal; default ``entity_id``, or
            ``"<entity_type>|<entity_id>"`` when ``entity_type`` is given.
        entity_type: a type prefix for the default persistence id, so that entities of two
            kinds may share ids.
        epoch: the fencing token written with every event (`JournalEntry.epoch`); a journal
            rejects writes with an older epoch than it has seen (`StaleEpoch`).
        stash_capacity: most commands held while recovering, >= 1; also the most commands
            whose events share one write.

    Raises:
        ConfigurationError: a bad argument.
        BackendNotFound: ``journal`` or ``serializer`` names an unknown backend.
    """
    if type(entity_id) is not str or not entity_id:
        raise ConfigurationError(f"entity_id must be a non-empty str, got {entity_id!r}")
    if persistence_id is None:
        if entity_type is None:
            persistence_id = entity_id
        elif type(entity_type) is str and entity_type and "|" not in entity_type:
            persistence_id = f"{entity_type}|{entity_id}"
        else:
            raise ConfigurationError(
                f"entity_type must be a non-empty str without '|', got {entity_type!r}"
            )
    elif entity_type is not None:
        raise ConfigurationError("give persistence_id or entity_type, not both")
    elif type(persistence_id) is not str or not persistence_id:
        raise ConfigurationError(f"persistence_id must be a non-empty str, got {persistence_id!r}")
    if not callable(on_event) or not callable(on_command):
        raise ConfigurationError("on_event and on_command must be callables")
    if snapshot_policy is not None and not isinstance(snapshot_policy, SnapshotPolicy):
        raise ConfigurationError(f"expected a SnapshotPolicy, got {snapshot_policy!r}")
    if type(epoch) is not int or epoch < 0:
        raise ConfigurationError(f"epoch must be an int >= 0, got {epoch!r}")
    # Inside a replicated shard region, writes go through the shard's replicas (its epoch).
    from casty.replication.sharded import bind_entity_journal

    journal, epoch = bind_entity_journal(journal, epoch)
    if type(stash_capacity) is not int or stash_capacity < 1:
        raise ConfigurationError(f"stash_capacity must be an int >= 1, got {stash_capacity!r}")
    try:
        journal_object = as_journal(journal)
        serializer_object = _named_serializer("msgpack" if serializer is None else serializer)
    except TypeError as exc:
        raise ConfigurationError(str(exc)) from exc
    # A URL is checked here (building a journal does no I/O) but opened per incarnation.
    settings: _Settings[C, S] = _Settings(
        persistence_id=persistence_id,
        journal=None if isinstance(journal, str) else journal_object,
        journal_url=journal if isinstance(journal, str) else None,
        initial_state=initial_state,
        on_event=on_event,
        on_command=on_command,
        snapshot_policy=snapshot_policy,
        serializer=serializer_object,
        epoch=epoch,
        stash_capacity=stash_capacity,
    )

    def setup(ctx: ActorContext[C]) -> Behavior[C]:
        return Behaviors.with_stash(
            stash_capacity, lambda stash: _Entity(ctx, stash, settings).start()
        )

    return Behaviors.setup(setup)


@final
class _Entity(Generic[C, S]):
    """One incarnation of an event-sourced actor (see the module docstring)."""

    __slots__ = (
        "_batch",
        "_capacity",
        "_codec",
        "_ctx",
        "_durable_sequence_nr",
        "_durable_state",
        "_encoded",
        "_gathering",
        "_inflight",
        "_journal",
        "_nowait",
        "_on_command",
        "_on_event",
        "_owns_journal",
        "_sequence_nr",
        "_settings",
        "_snapshot_due",
        "_snapshotting",
        "_stash",
        "_stashing",
        "_state",
    )

    def __init__(
        self, ctx: ActorContext[C], stash: StashBuffer[Any], settings: _Settings[C, S]
    ) -> None:
        self._ctx: ActorContext[Any] = ctx
        self._stash = stash
        self._settings = settings
        self._capacity = settings.stash_capacity
        self._on_event = settings.on_event
        self._on_command = settings.on_command
        if settings.journal is None:
            assert settings.journal_url is not None
            self._journal = as_journal(settings.journal_url)
            self._owns_journal = True
        else:
            self._journal = settings.journal
            self._owns_journal = False
        self._codec = EntryCodec(settings.serializer, ctx.system.ref_codec)
        self._state: Any = settings.initial_state  # including events not yet durable
        self._sequence_nr = 0  # of the last event applied to _state
        self._durable_state: Any = settings.initial_state
        self._durable_sequence_nr = 0
        self._batch: list[_Command] = []  # commands whose events wait for the next write
        self._encoded: list[tuple[bytes, str]] = []  # their events: (payload, manifest)
        self._gathering = False  # the queued commands arrived during a write: batch them
        self._inflight: _Write | None = None  # a write handed over without suspending
        # The journal's `WriteNowait` method, if it has one.
        journal = self._journal
        self._nowait = journal._write_nowait if isinstance(journal, WriteNowait) else None
        self._stashing = True  # recovering or catching up
        self._snapshotting = False  # a save is running
        self._snapshot_due = False  # another multiple was crossed meanwhile

    def start(self) -> Behavior[C]:
        self._recover(use_snapshot=True)
        return Behaviors.receive(self._receive, self._on_signal)

    # -- the message handler ---------------------------------------------------------------

    def _receive(self, ctx: ActorContext[C], message: Any) -> Any:
        # Returns a behavior, or a coroutine resolving to one when something must be awaited
        # (a write, user code); the actor cell awaits it, suspending the actor meanwhile.
        cls = message.__class__
        if cls is _Recovered:
            return self._recovered(message) if message.entity is self else _SAME
        if cls is _SnapshotSaved:
            if message.entity is self:
                self._snapshot_saved(message)
            return _SAME
        if cls is _Write:  # the write in flight came back (or one of a previous incarnation)
            write = self._inflight
            return self._written(write) if message is write and write is not None else _SAME
        if self._inflight is not None:
            return self._after_write(message)
        if self._stashing:
            try:
                self._stash.stash(message)
            except StashOverflow:
                pass  # the stash published the command as a dead letter ("stash overflow")
            return _SAME
        try:
            effect = self._on_command(ctx, self._state, message)
            if not isinstance(effect, Behavior):
                return self._await_command(message, effect)
            result = self._apply(message, effect)
        except Exception as exc:
            if self._batch:
                # The open batch must not wait for a command that will never come.
                return self._flush_then_raise(exc)
            raise
        if self._batch:
            if not self._joins_next():
                return self._hand_over(result)
        elif self._gathering and not ctx._message_next():
            self._gathering = False  # the queue drained: the next command is written at once
        return result

    async def _await_command(self, command: object, pending: object) -> Behavior[Any]:
        try:
            effect = await pending if inspect.isawaitable(pending) else pending
            result = self._apply(command, effect)
        except Exception:
            if self._batch:
                await self._flush(_SAME)
            raise
        if self._batch:
            if not self._joins_next():
                result = self._flush(result)
        elif self._gathering and not self._ctx._message_next():
            self._gathering = False
        return await _settle(result)

    def _joins_next(self) -> bool:
        """Whether the open batch waits for the next message: a command queued during the
        last write, with room left in the batch."""
        return self._gathering and len(self._batch) < self._capacity and self._ctx._message_next()

    def _apply(self, command: object, effect: object) -> Any:
        if effect is _SAME or effect is _UNHANDLED:
            return effect
        if type(effect) is Persisted:
            return self._persist(command, effect)
        if type(effect) is _STOPPED_TYPE:
            # Stop once the open batch is written and its callbacks ran; the commands still
            # queued become dead letters ("recipient stopped").
            return self._flush(effect) if self._batch else effect
        raise ActorError(
            f"{self._ctx.self.path}: on_command returned {effect!r}; expected "
            "Behaviors.persisted(...), Behaviors.same(), Behaviors.unhandled() or "
            "Behaviors.stopped()"
        )

    def _persist(self, command: object, effect: Persisted) -> Any:
        events = effect.events
        if not events:
            if not self._batch:
                return _run_then(effect, self._state)  # nothing to wait for
            # A callback alone waits for the events of the commands before it in the batch.
            self._batch.append(_Command(command, effect, self._state, self._sequence_nr))
            return _SAME
        codec = self._codec
        try:
            if len(events) == 1:
                encoded = [codec.encode(events[0])]
            else:
                encoded = [codec.encode(event) for event in events]
        except EncodeError as exc:
            return self._fail_commands([_Command(command, effect, None, 0)], exc)
        state = self._state
        on_event = self._on_event
        for event in events:
            state = on_event(state, event)
        self._state = state
        self._sequence_nr += len(encoded)
        self._encoded += encoded
        self._batch.append(_Command(command, effect, state, self._sequence_nr))
        return _SAME

    # -- writing ---------------------------------------------------------------------------

    def _flush(self, result: Any) -> Any:
        """Close the open batch: a coroutine that writes it, runs its callbacks, and returns
        ``result`` (the behavior, or pending work, of the command that closed it)."""
        batch, self._batch = self._batch, []
        encoded, self._encoded = self._encoded, []
        self._gathering = False
        return self._write(batch, encoded, result)

    def _hand_over(self, result: Any) -> Any:
        """`_flush`, without suspending when the journal allows (`WriteNowait`): the write is
        then in flight when this returns, and its outcome is handled when it comes back as a
        message (`_written`) or when the next message arrives first (`_after_write`). Either
        way nothing else is handled in between, as when the handler waits for the write."""
        nowait = self._nowait
        if (
            nowait is None
            or not self._encoded
            or (result is not _SAME and result is not _UNHANDLED)
            # In a task already (the actor's handler suspended before): waiting there costs
            # no new task, and the commands queued meanwhile are handled in it right after.
            or _current_task() is not None
        ):
            return self._flush(result)
        batch, self._batch = self._batch, []
        encoded, self._encoded = self._encoded, []
        self._gathering = False
        write = _Write(self._ctx, batch, time.perf_counter())
        try:
            write.withdraw = nowait(self._entries(encoded), write)
        except Exception as exc:
            return self._write_failed(batch, exc, result)
        if write.withdraw is None:
            return self._write(batch, encoded, result)  # the journal must open first
        self._inflight = write
        return result

    def _entries(self, encoded: list[tuple[bytes, str]]) -> Sequence[JournalEntry]:
        settings = self._settings
        persistence_id = settings.persistence_id
        name = self._codec.serializer.name
        epoch = settings.epoch
        now = time.time_ns() // 1_000_000  # one clock read per write
        first = self._durable_sequence_nr + 1
        if len(encoded) == 1:
            payload, manifest = encoded[0]
            return [make_entry(persistence_id, first, payload, name, manifest, epoch, now)]
        return [
            make_entry(persistence_id, nr, payload, name, manifest, epoch, now)
            for nr, (payload, manifest) in enumerate(encoded, first)
        ]

    async def _write(
        self, batch: list[_Command], encoded: list[tuple[bytes, str]], result: Any
    ) -> Behavior[Any]:
        behavior: Behavior[Any] = result if isinstance(result, Behavior) else await result
        if encoded:
            entries = self._entries(encoded)
            started = time.perf_counter()
            try:
                await self._journal.write(entries)
            except Exception as exc:
                return await self._write_failed(batch, exc, behavior)
            except BaseException:
                # Cancelled (the actor stops): the write is whole or absent; a resumed
                # incarnation finds out through a SequenceConflict. No `then` will run: the
                # asks of the batch's commands fail now.
                self._roll_back()
                _fail_asks(self._ctx, batch)
                raise
            self._durable(batch, started)
        await self._thens(batch, 0)
        # The commands that queued up meanwhile form the next batch.
        self._gathering = self._ctx._message_next()
        return behavior

    @staticmethod
    def _run_thens(batch: list[_Command], start: int) -> tuple[Awaitable[object] | None, int]:
        """Run the ``then`` callbacks of ``batch[start:]``, in order, until one returns an
        awaitable: that awaitable and the index after it (``None`` once all have run)."""
        for index in range(start, len(batch)):
            record = batch[index]
            then = record.effect.then
            if then is not None:
                done = then(record.state)
                if done is not None and inspect.isawaitable(done):
                    return done, index + 1
        return None, len(batch)

    @classmethod
    async def _thens(cls, batch: list[_Command], start: int) -> None:
        """Run the ``then`` callbacks of ``batch[start:]``, in order, awaiting async ones."""
        pending, start = cls._run_thens(batch, start)
        while pending is not None:
            await pending
            pending, start = cls._run_thens(batch, start)

    def _roll_back(self) -> None:
        """Back to the last stored state: the events of the write in flight may not be."""
        self._state = self._durable_state
        self._sequence_nr = self._durable_sequence_nr

    def _durable(self, batch: list[_Command], started: float) -> None:
        """Take note that ``batch``'s events are stored (the write began at ``started``)."""
        self._ctx.system._journal_writes.record(time.perf_counter() - started)
        last = batch[-1]
        before = self._durable_sequence_nr
        self._durable_state = last.state
        self._durable_sequence_nr = last.sequence_nr
        policy = self._settings.snapshot_policy
        if policy is not None and policy.due(before, last.sequence_nr):
            if self._snapshotting:
                self._snapshot_due = True  # saved when the running save ends
            else:
                self._save_snapshot(last.state, last.sequence_nr)

    def _written(self, write: _Write) -> Any:
        """Handle the outcome of the write in flight, as `_write` does after its await."""
        self._inflight = None
        batch = write.batch
        error = write.error
        if error is not None:
            if not isinstance(error, Exception):
                raise error
            return self._write_failed(batch, error, _SAME)
        self._durable(batch, write.started)
        pending, start = self._run_thens(batch, 0)
        if pending is not None:
            return self._then_rest(batch, start, pending)
        self._gathering = self._ctx._message_next()
        return _SAME

    async def _then_rest(
        self, batch: list[_Command], start: int, pending: Awaitable[object]
    ) -> Behavior[Any]:
        await pending
        await self._thens(batch, start)
        self._gathering = self._ctx._message_next()
        return _SAME

    async def _after_write(self, message: object) -> Behavior[Any]:
        """A message arrived before the write in flight came back: wait for it, handle its
        outcome, then the message (which arrived during the write, so it may open a batch
        with the commands queued behind it)."""
        write = self._inflight
        assert write is not None
        if not write.done:
            write.waiter = waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            except BaseException:
                # Cancelled (the actor stops): as in `_write`.
                self._roll_back()
                raise
        try:
            await _settle(self._written(write))
        except BaseException:
            # The actor fails: the message goes back to the mailbox, for the next incarnation.
            stash = self._stash
            stash.stash(message)
            stash.unstash_all(_SAME)
            raise
        self._gathering = True
        return await _settle(self._receive(self._ctx, message))

    async def _flush_then_raise(self, error: Exception) -> Behavior[Any]:
        try:
            raise error
        except Exception:
            await self._flush(_SAME)  # a failing write then carries `error` as its context
            raise

    async def _write_failed(
        self, batch: list[_Command], error: Exception, behavior: Behavior[Any]
    ) -> Behavior[Any]:
        self._roll_back()
        await _settle(self._fail_commands(batch, error))
        if isinstance(error, SequenceConflict):
            self._ctx.log.warning(
                "another writer appended to %r; catching up before the next command",
                self._settings.persistence_id,
            )
            self._recover(use_snapshot=False)
            return behavior
        if isinstance(error, WriteRejected):
            self._gathering = self._ctx._message_next()
            return behavior
        raise error

    def _fail_commands(self, records: list[_Command], cause: BaseException) -> Any:
        """Tell each command's ``on_failure`` (or log and dead-letter it) that it failed."""
        for index, record in enumerate(records):
            failure = PersistFailed(
                f"{self._settings.persistence_id!r}: the events of {record.command!r} were not "
                f"stored: {type(cause).__name__}: {cause}"
            )
            failure.__cause__ = cause
            on_failure = record.effect.on_failure
            if on_failure is None:
                self._dead_letter(record.command, failure)
                continue
            result = on_failure(failure)
            if inspect.isawaitable(result):
                return self._await_failures(records, index + 1, cause, result)
        return _SAME

    async def _await_failures(
        self,
        records: list[_Command],
        start: int,
        cause: BaseException,
        pending: Awaitable[object],
    ) -> Behavior[Any]:
        await pending
        return await _settle(self._fail_commands(records[start:], cause))

    def _dead_letter(self, command: object, failure: PersistFailed) -> None:
        ctx = self._ctx
        ctx.log.warning("%s", failure)
        cause = failure.__cause__
        reason = f"persist failed: {type(cause).__name__}: {cause}"
        ctx.system.publish(DeadLetter(command, ctx.self, reason))

    # -- recovery --------------------------------------------------------------------------

    def _recover(self, *, use_snapshot: bool) -> None:
        self._stashing = True
        settings = self._settings
        work = recover(
            self._journal,
            settings.persistence_id,
            self._codec,
            self._on_event,
            self._durable_state,
            self._durable_sequence_nr,
            use_snapshot=use_snapshot,
        )
        self._ctx.pipe_to_self(work, self._recovery_result)

    def _recovery_result(self, value: object, error: BaseException | None) -> _Recovered:
        return _Recovered(self, value, error)

    def _recovered(self, message: _Recovered) -> Behavior[Any]:
        stash = self._stash
        if message.error is not None:
            # Back to the mailbox, which a restart keeps (a restart drops the stash), so the
            # next incarnation handles them; if the actor stops instead, they become dead
            # letters ("recipient stopped").
            stash.unstash_all(_SAME)
            raise message.error
        state, sequence_nr = message.value
        self._state = self._durable_state = state
        self._sequence_nr = self._durable_sequence_nr = sequence_nr
        self._stashing = False
        # The stashed commands come back first; their events form the next batch.
        self._gathering = not stash.is_empty
        return stash.unstash_all(_SAME)

    # -- snapshots -------------------------------------------------------------------------

    def _save_snapshot(self, state: object, sequence_nr: int) -> None:
        try:
            payload, manifest = self._codec.encode(state)
        except EncodeError:
            self._ctx.log.warning("cannot serialize the state for a snapshot", exc_info=True)
            return
        snapshot = SnapshotEntry(
            self._settings.persistence_id,
            sequence_nr,
            payload,
            self._codec.serializer.name,
            manifest,
            time.time_ns() // 1_000_000,
        )
        self._snapshotting = True
        self._ctx.pipe_to_self(self._store_snapshot(snapshot), self._snapshot_result)

    async def _store_snapshot(self, snapshot: SnapshotEntry) -> None:
        journal = self._journal
        policy = self._settings.snapshot_policy
        assert policy is not None
        await journal.save_snapshot(snapshot)
        bound = policy.retention_bound(snapshot.sequence_nr)
        if bound > 0:
            await journal.delete_snapshots(snapshot.persistence_id, bound)
            if policy.delete_events:
                await journal.delete_to(snapshot.persistence_id, bound)

    def _snapshot_result(self, value: object, error: BaseException | None) -> _SnapshotSaved:
        return _SnapshotSaved(self, error)

    def _snapshot_saved(self, message: _SnapshotSaved) -> None:
        self._snapshotting = False
        if message.error is not None:
            self._ctx.log.warning(
                "saving a snapshot of %r failed: %r",
                self._settings.persistence_id,
                message.error,
                exc_info=message.error,
            )
        if self._snapshot_due:
            self._snapshot_due = False
            self._save_snapshot(self._durable_state, self._durable_sequence_nr)

    # -- lifecycle -------------------------------------------------------------------------

    def _on_signal(self, ctx: ActorContext[C], signal: Signal) -> Any:
        # On PostStop and PreRestart.
        write, self._inflight = self._inflight, None
        if write is not None:
            # Stopped before the write in flight came back (its callbacks will not run): it is
            # withdrawn if its round has not begun (else it is whole or absent, as a cancelled
            # `Journal.write`), and the asks of its commands fail now.
            if write.withdraw is not None:
                write.withdraw()
            _fail_asks(ctx, write.batch)
        if self._owns_journal:
            return self._close_journal()
        return _SAME

    async def _close_journal(self) -> Behavior[C]:
        # A journal built from a URL belongs to this incarnation.
        await self._journal.aclose()
        return _SAME


def _fail_asks(ctx: ActorContext[Any], batch: list[_Command]) -> None:
    """Fail the asks of ``batch``'s commands: the actor stopped before their events were
    known to be stored, so their ``then`` callbacks (the replies) will not run."""
    for record in batch:
        for promise in reply_promises(record.command):
            promise.fail(ActorStopped(f"{ctx.self.path} stopped while handling the request"))


# Serializers built from a name, shared by every entity that names them: a serializer is safe
# to share (`Serializer` says so) and keeps per-class encoders and decoders, which an instance
# per entity would build again for each of thousands of entities.
_NAMED_SERIALIZERS: dict[str, Serializer] = {}


def _named_serializer(serializer: Serializer | str) -> Serializer:
    if not isinstance(serializer, str):
        return as_serializer(serializer)
    shared = _NAMED_SERIALIZERS.get(serializer)
    if shared is None:
        shared = _NAMED_SERIALIZERS[serializer] = as_serializer(serializer)
    return shared


def _run_then(effect: Persisted, state: object) -> Any:
    then = effect.then
    if then is not None:
        result = then(state)
        if inspect.isawaitable(result):
            return _await_then(result)
    return _SAME


async def _await_then(pending: Awaitable[object]) -> Behavior[Any]:
    await pending
    return _SAME


async def _settle(result: Any) -> Behavior[Any]:
    """Await a step that may have returned a coroutine instead of a behavior."""
    if inspect.isawaitable(result):
        result = await result
    assert isinstance(result, Behavior)
    return result
