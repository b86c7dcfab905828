"""`sharded` (also ``Behaviors.sharded``), `passivate`, and `wait_registered`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from casty.abc import Journal
from casty.actors.behaviors import Behavior
from casty.actors.context import ActorContext
from casty.actors.ref import ActorRef
from casty.errors import JoinRefused, ShardingError, ShardUnavailable
from casty.replication.config import ReplicationConfig
from casty.sharding.allocation import ShardAllocationStrategy
from casty.sharding.entities import entity_id_of
from casty.sharding.messages import GetShardRegionState, Passivate, ShardRegionState
from casty.sharding.region import is_region, region_behavior
from casty.sharding.settings import (
    CONFIGURED,
    Configured,
    EntityFactory,
    ShardingSettings,
    TypeSpec,
)

if TYPE_CHECKING:
    from casty.actors.system import ActorSystem

__all__ = ["passivate", "sharded", "wait_registered"]

_POLL = 0.02  # seconds between two looks at a region's registration


def sharded(
    entity_factory: EntityFactory,
    *,
    num_shards: int | Configured = CONFIGURED,
    roles: Iterable[str] = (),
    passivate_after: float | Configured | None = CONFIGURED,
    remember_entities: bool = False,
    allocation_strategy: ShardAllocationStrategy[str] | None = None,
    buffer_size: int | Configured = CONFIGURED,
    replication: ReplicationConfig | bool | None = None,
    settings: ShardingSettings | None = None,
    journal: Journal | None = None,
) -> Behavior[Any]:
    """The shard region of a sharded type; spawn it on every node (also ``Behaviors.sharded``).

    ::

        tasks = system.spawn(Behaviors.sharded(task_worker, num_shards=256), "tasks")
        tasks.tell(ShardEnvelope("queue:emails", SubmitTask(send_welcome, reply_to)))

    The actor's name (``"tasks"``) is the type's name: every node spawns the type under the
    same name and path, with the same ``num_shards``. The ref takes `ShardEnvelope` (and
    `StartEntity`) from any node; the entity id picks one of ``num_shards`` shards with a stable
    hash (`casty.sharding.shard_id_for`), the coordinator picks the node of each shard, and the
    entity ``entity_factory(entity_id)`` starts on that node on its first message (it is a child
    of the region there). One entity id has at most one live entity in the cluster, and the
    messages from one sender to one entity arrive in order while its shard does not move; a
    shard that moves (rebalance, a node leaving or failing) keeps its messages in order and
    loses none of those that reach a live region. See ``docs/sharding.md``.

    Needs a `ClusteredActorSystem` (the actor fails at start otherwise). Nodes that lack one
    of ``roles`` host no shards: their region is a proxy that only routes.

    An argument left at `CONFIGURED` takes the node's ``[sharding]`` configuration
    (``ClusteredActorSystem(config=...)``, see ``docs/configuration.md``), whose defaults are
    the values given below.

    Args:
        entity_factory: ``(entity_id) -> Behavior``, called on the hosting node each time the
            entity starts (first message, after a passivation, after a move).
        num_shards: shard count, 1..2**32, identical on every node (a node with another value
            is refused); about ten times the largest node count is a good choice. Default 256.
        roles: roles a node must have to host shards (role-aware placement).
        passivate_after: seconds of no message after which an entity is stopped (it restarts
            on its next message); it is stopped between 1x and 1.25x this idle time. None
            disables idle passivation (`passivate` still works). Default 120.0.
        remember_entities: restart the entities of a shard where the shard moves to, without
            waiting for a message (the coordinator keeps the lists; see the docs for the cost).
        allocation_strategy: where shards go and which move
            (`LeastShardAllocationStrategy` by default); it runs on the coordinator's node.
        buffer_size: most messages a region holds while their shard has no reachable home
            (moving, unknown, or on an unreachable node); more become dead letters, and each
            `DeadLetter` says why. Default 100000.
        replication: a `ReplicationConfig` to replicate the entities' events to other nodes
            (``docs/replication.md``): the coordinator gives each shard ``replicas`` replica
            regions, an entity's ``Behaviors.event_sourced(journal=...)`` writes through them
            at the shard's epoch, and a lost primary's shard moves to one of its replicas.
            None (the default) replicates nothing; True replicates with the node's
            ``[replication]`` configuration and, without ``journal``, its journal
            (``[journal] url``).
        settings: timings (`ShardingSettings`); None: the node's configured ones.
        journal: with ``replication``, required: this node's `Journal`, where its replica
            store keeps the replicas it holds; the entities must use the same object in
            ``event_sourced(journal=...)``. Must be None without ``replication``.

    Returns:
        The region's behavior (messages: `ShardEnvelope`, `StartEntity`,
        `GetShardRegionState`).

    Raises:
        ConfigurationError: an argument is invalid.
    """
    spec = TypeSpec.build(
        entity_factory,
        num_shards=num_shards,
        roles=roles,
        passivate_after=passivate_after,
        remember_entities=remember_entities,
        allocation_strategy=allocation_strategy,
        buffer_size=buffer_size,
        replication=replication,
        settings=settings,
        journal=journal,
    )
    return region_behavior(spec)


def passivate(ctx: ActorContext[Any], stop_message: object = None) -> None:
    """Ask the region to passivate the calling sharded entity (call it from its handler).

    The region stops delivering to the entity and holds its new messages; then it sends
    ``stop_message`` to the entity (which should answer it with ``Behaviors.stopped()``), or,
    when ``stop_message`` is None, stops the entity as soon as its queued messages are handled.
    Once the entity has stopped, held messages start a new incarnation. Idempotent.

    Raises:
        ShardingError: ``ctx`` is not the context of a sharded entity.
    """
    parent = ctx._parent
    if parent is None or not is_region(parent):
        raise ShardingError(f"{ctx.self.path} is not a sharded entity; passivate() is for those")
    parent._ref.tell(Passivate(entity_id_of(ctx.name), stop_message))


async def wait_registered(
    system: ActorSystem, region: ActorRef[Any], *, timeout: float = 10.0
) -> ShardRegionState:
    """Wait until the coordinator has accepted ``region`` (the ref `sharded` was spawned as).

    A region routes messages as soon as it is spawned (holding them until it is registered),
    so this is only needed to learn early that the cluster refused the node.

    Returns:
        The region's state once registered.

    Raises:
        JoinRefused: the coordinator refused the region; the message names the mismatch
            (``num_shards`` or the hash version).
        ShardUnavailable: not registered within ``timeout`` seconds (no coordinator yet).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise ShardUnavailable(f"{region.path} was not registered within {timeout} s")
        state: ShardRegionState = await system.ask(region, GetShardRegionState, timeout=left)
        if state.refused is not None:
            raise JoinRefused(state.refused)
        if state.registered:
            return state
        await asyncio.sleep(min(_POLL, max(left, 0.0)))
