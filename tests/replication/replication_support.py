"""A counter entity and node helpers shared by the replication tests.

Messages live in this module so their wire names (``module:qualname``) are stable.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from casty.abc import Journal
from casty.actors import ActorContext, ActorRef, Behavior, Behaviors
from casty.errors import PersistFailed
from casty.journals import InMemoryJournal, SQLiteJournal
from casty.remote import RemoteActorSystem, RemoteSettings
from casty.replication import ReplicatedJournal, ReplicationConfig, replica_store
from casty.replication.protocol import GetReplicaHighest
from casty.testing import FakeNetwork

WAIT = 5.0  # seconds a test waits for an answer before failing

FAST = RemoteSettings(
    handshake_timeout=1.0,
    failure_timeout=1.0,
    min_backoff=0.02,
    max_backoff=0.2,
    heartbeat_interval=0.05,
    acceptable_heartbeat_pause=0.1,
    phi_threshold=3.0,
    shutdown_flush_timeout=0.5,
)


@dataclass(frozen=True)
class Add:
    amount: int
    reply_to: ActorRef[Any]


@dataclass(frozen=True)
class Get:
    reply_to: ActorRef[Any]


@dataclass(frozen=True)
class Added:
    total: int


@dataclass(frozen=True)
class Refused:
    """The command failed; ``cause`` is the `PersistFailed`'s cause."""

    cause: BaseException | None


@dataclass(frozen=True)
class Incremented:
    amount: int


def counter(entity_id: str, journal: Journal, epoch: int) -> Behavior[Any]:
    """An event-sourced counter: `Add` answers `Added` once durable, or `Refused`."""

    def on_event(state: int, event: Incremented) -> int:
        return state + event.amount

    def on_command(ctx: ActorContext[Any], state: int, cmd: Any) -> Behavior[Any]:
        if isinstance(cmd, Add):
            reply_to = cmd.reply_to

            def failed(error: PersistFailed) -> None:
                reply_to.tell(Refused(error.__cause__))

            return Behaviors.persisted(
                Incremented(cmd.amount), then=lambda s: reply_to.tell(Added(s)), on_failure=failed
            )
        if isinstance(cmd, Get):
            cmd.reply_to.tell(state)
        return Behaviors.same()

    return Behaviors.event_sourced(
        entity_id=entity_id,
        journal=journal,
        initial_state=0,
        on_event=on_event,
        on_command=on_command,
        epoch=epoch,
    )


@dataclass
class Node:
    """A remote actor system with its own in-memory journal and a replica store over it."""

    system: RemoteActorSystem
    journal: Journal
    store: ActorRef[Any]

    def replicated(
        self, stores: Sequence[ActorRef[Any]], config: ReplicationConfig
    ) -> ReplicatedJournal:
        return ReplicatedJournal(self.journal, stores, config, self.system)

    def remote(self, other: Node) -> ActorRef[Any]:
        """``other``'s replica store as a ref of this node."""
        return self.system.resolve(other.store.address)


@contextlib.asynccontextmanager
async def nodes(
    count: int, network: FakeNetwork | None = None, sqlite_dir: Path | None = None
) -> AsyncIterator[list[Node]]:
    """``count`` started nodes on real TCP (or on ``network``, hosts node-0, node-1, ...).

    Each node has its own journal: in memory, or the file ``node-<i>.db`` in ``sqlite_dir``.
    """
    async with contextlib.AsyncExitStack() as stack:
        started = []
        for i in range(count):
            options: dict[str, Any] = {"settings": FAST}
            if network is not None:
                options.update(host=f"node-{i}", transport=network.transport(f"node-{i}"))
            system = await stack.enter_async_context(RemoteActorSystem("rep", **options))
            journal: Journal = (
                InMemoryJournal()
                if sqlite_dir is None
                else SQLiteJournal(sqlite_dir / f"node-{i}.db", synchronous="NORMAL")
            )
            stack.push_async_callback(journal.aclose)
            started.append(Node(system, journal, system.spawn(replica_store(journal), "replica")))
        yield started


async def add(node: Node, entity: ActorRef[Any], amount: int) -> Any:
    return await node.system.ask(entity, lambda r: Add(amount, r), timeout=WAIT)


_alone = itertools.count()


async def write_alone(node: Node, entity_id: str, epoch: int, amounts: Sequence[int]) -> list[Any]:
    """Add ``amounts`` to a counter on ``node``'s own journal at ``epoch`` (no replicas), then
    stop it: a history only that node holds. The answers, in order."""
    entity = node.system.spawn(counter(entity_id, node.journal, epoch), f"alone-{next(_alone)}")
    answers = [await add(node, entity, amount) for amount in amounts]
    await node.system.stop(entity)
    return answers


async def total(node: Node, entity: ActorRef[Any]) -> Any:
    return await node.system.ask(entity, lambda r: Get(r), timeout=WAIT)


async def stored(journal: Journal, persistence_id: str) -> list[tuple[int, int]]:
    """``(sequence_nr, epoch)`` of every entry the journal holds for the id."""
    return [(e.sequence_nr, e.epoch) async for e in journal.replay(persistence_id)]


async def connect(a: Node, b: Node) -> None:
    """Open the connection from ``a`` to ``b`` (so short ack timeouts do not include it)."""
    await a.system.ask(a.remote(b), lambda r: GetReplicaHighest("connect", r), timeout=WAIT)
