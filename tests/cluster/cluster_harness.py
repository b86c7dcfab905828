"""Helpers of the wiring tests: nodes with an event recorder, and free TCP ports.

Kept in a plain module so every ``test_wiring_*`` file can import it by name.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

from casty import Behaviors, EventStreamSubscribe
from casty.actors.context import ActorContext
from casty.cluster import (
    ClusterDomainEvent,
    ClusteredActorSystem,
    MemberEvent,
    ReachabilityEvent,
    UniqueAddress,
)
from casty.testing import free_ports as free_ports  # the tests import it from here
from casty.testing import wait_until

E = TypeVar("E")


class Recorder:
    """An actor that keeps every message it receives, with the loop time of arrival."""

    def __init__(
        self,
        system: ClusteredActorSystem,
        name: str = "recorder",
        now: Callable[[], float] | None = None,
    ) -> None:
        self.now = now if now is not None else asyncio.get_running_loop().time
        self.received: list[tuple[float, Any]] = []
        self.ref = system.spawn(Behaviors.receive(self._on), name)

    def _on(self, ctx: ActorContext[Any], msg: Any) -> Any:
        self.received.append((self.now(), msg))
        return Behaviors.same()

    def of(self, kind: type[E]) -> list[E]:
        return [m for _, m in self.received if isinstance(m, kind)]

    def about(self, kind: type[E], node: UniqueAddress) -> list[E]:
        """The ``kind`` events whose member is ``node``."""
        return [
            e
            for e in self.of(kind)
            if isinstance(e, MemberEvent | ReachabilityEvent) and e.member.unique_address == node
        ]

    def first_time(self, kind: type, node: UniqueAddress) -> float | None:
        for at, msg in self.received:
            if (
                isinstance(msg, kind)
                and isinstance(msg, MemberEvent | ReachabilityEvent)
                and msg.member.unique_address == node
            ):
                return at
        return None


class Node:
    """A `ClusteredActorSystem` plus a recorder subscribed to every cluster event."""

    def __init__(self, system: ClusteredActorSystem) -> None:
        self.system = system
        # Event times on the system's clock (virtual time under a ManualClock).
        self.events = Recorder(system, "cluster-events", system.clock.monotonic)
        system.event_stream.tell(EventStreamSubscribe(ClusterDomainEvent, self.events.ref))

    @property
    def me(self) -> UniqueAddress:
        return self.system.self_node


def node(name: str = "test", **options: Any) -> Node:
    """A node (not started) recording its cluster events from the start."""
    return Node(ClusteredActorSystem(name, **options))


async def start_all(nodes: Sequence[Node]) -> None:
    await asyncio.gather(*(n.system.__aenter__() for n in nodes))


async def stop_all(nodes: Sequence[Node], *, leave: bool = True) -> None:
    await asyncio.gather(*(n.system.shutdown(leave=leave) for n in nodes))


@contextlib.asynccontextmanager
async def running(nodes: Sequence[Node]) -> AsyncIterator[Sequence[Node]]:
    """Start ``nodes`` together; on exit stop those still running (without leaving)."""
    try:
        await start_all(nodes)
        yield nodes
    finally:
        await stop_all(nodes, leave=False)


async def wait_all(
    nodes: Sequence[Node], predicate: Callable[[Node], bool], timeout: float = 10.0
) -> None:
    """Wait until ``predicate(node)`` holds for every node (polled: recorders count too)."""
    await wait_until(lambda: all(predicate(n) for n in nodes), timeout, interval=0.01)
