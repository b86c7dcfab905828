"""Fixtures for the actor-core tests: systems (real and virtual time) and probe actors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from casty.actors import (
    ActorContext,
    ActorRef,
    ActorSystem,
    Behavior,
    Behaviors,
    DeadLetter,
    EventStreamSubscribe,
)
from casty.testing.clock import ManualClock

WAIT = 2.0  # seconds a probe waits for a condition before failing the test


class Probe:
    """A real actor that records what it receives, with deadline-bounded waits."""

    def __init__(self, system: ActorSystem, name: str) -> None:
        self.messages: list[Any] = []
        self._consumed = 0
        self._changed = asyncio.Event()
        self.ref: ActorRef[Any] = system.spawn(Behaviors.receive(self._receive), name)

    def _receive(self, ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
        self.messages.append(msg)
        self._changed.set()
        return Behaviors.same()

    async def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self.messages):
                self._changed.clear()
                await self._changed.wait()

    async def expect(self, count: int, timeout: float = WAIT) -> list[Any]:
        """Wait until ``count`` messages arrived; return them all."""
        await self.wait_for(lambda m: len(m) >= count, timeout)
        return self.messages

    async def expect_message(self, timeout: float = WAIT) -> Any:
        """Wait for one more message than were consumed so far and return it."""
        index = self._consumed
        await self.wait_for(lambda m: len(m) > index, timeout)
        self._consumed = index + 1
        return self.messages[index]


@pytest.fixture
async def system() -> AsyncIterator[ActorSystem]:
    async with ActorSystem(name="test") as system:
        yield system


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def manual_system(clock: ManualClock) -> AsyncIterator[ActorSystem]:
    async with ActorSystem(name="test", clock=clock) as system:
        yield system


@pytest.fixture
def probe() -> Callable[[ActorSystem, str], Probe]:
    return Probe


@pytest.fixture
async def dead_letters(system: ActorSystem) -> Probe:
    """A probe subscribed to `DeadLetter` on ``system``."""
    probe = Probe(system, "dead-letter-probe")
    system.event_stream.tell(EventStreamSubscribe(event_type=DeadLetter, handler=probe.ref))
    return probe
