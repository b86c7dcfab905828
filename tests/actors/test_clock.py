"""Clocks: ManualClock (virtual time for tests) and SystemClock (the event loop's)."""

from __future__ import annotations

import asyncio
import time

import pytest

from casty.clock import Clock, SystemClock
from casty.errors import ConfigurationError
from casty.testing import ManualClock as LazyManualClock
from casty.testing.clock import ManualClock


async def test_callbacks_run_in_deadline_order_when_time_advances() -> None:
    clock = ManualClock()
    ran: list[tuple[str, float]] = []
    clock.call_later(2.0, lambda: ran.append(("b", clock.monotonic())))
    clock.call_later(1.0, lambda: ran.append(("a", clock.monotonic())))
    clock.call_later(2.0, lambda: ran.append(("c", clock.monotonic())))
    assert clock.pending == 3
    await clock.advance(1.5)
    assert ran == [("a", 1.0)] and clock.monotonic() == 1.5
    await clock.advance(0.5)
    assert ran == [("a", 1.0), ("b", 2.0), ("c", 2.0)]
    assert clock.pending == 0


async def test_cancelled_callbacks_never_run() -> None:
    clock = ManualClock()
    ran: list[int] = []
    handle = clock.call_later(1.0, ran.append, 1)
    handle.cancel()
    handle.cancel()
    assert handle.cancelled() and clock.pending == 0
    await clock.advance(5.0)
    assert ran == []


async def test_callbacks_scheduled_by_callbacks_fire_within_the_same_advance() -> None:
    clock = ManualClock()
    ticks: list[float] = []

    def tick() -> None:
        ticks.append(clock.monotonic())
        clock.call_later(1.0, tick)

    clock.call_later(1.0, tick)
    await clock.advance(3.5)
    assert ticks == [1.0, 2.0, 3.0]


async def test_sleepers_wake_when_time_reaches_them() -> None:
    clock = ManualClock(start=100.0)
    woke: list[float] = []

    async def sleeper(delay: float) -> None:
        await clock.sleep(delay)
        woke.append(clock.monotonic())

    tasks = [asyncio.create_task(sleeper(d)) for d in (3.0, 1.0)]
    await clock.advance(0.5)
    assert woke == []
    await clock.advance(0.5)
    assert woke == [101.0]
    await clock.advance(5.0)
    assert woke == [101.0, 103.0]
    await asyncio.gather(*tasks)


async def test_a_task_that_sleeps_again_wakes_again_within_one_advance() -> None:
    clock = ManualClock()
    beats: list[float] = []

    async def heartbeat() -> None:
        for _ in range(3):
            await clock.sleep(1.0)
            beats.append(clock.monotonic())

    task = asyncio.create_task(heartbeat())
    await clock.advance(10.0)
    assert beats == [1.0, 2.0, 3.0]
    await task


async def test_cancelled_sleep_leaves_nothing_scheduled() -> None:
    clock = ManualClock()
    task = asyncio.create_task(clock.sleep(5.0))
    await clock.advance(0)
    assert clock.pending == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.pending == 0


async def test_wall_clock_moves_with_virtual_time() -> None:
    clock = ManualClock(wall_ms=1_000)
    await clock.advance(2.5)
    assert clock.time_ms() == 3_500


async def test_advancing_backwards_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        await ManualClock().advance(-1.0)


async def test_a_failing_callback_goes_to_the_loop_handler_and_time_goes_on() -> None:
    clock = ManualClock()
    loop = asyncio.get_running_loop()
    reported: list[BaseException] = []
    loop.set_exception_handler(lambda loop, context: reported.append(context["exception"]))
    ran: list[int] = []
    try:
        clock.call_later(1.0, lambda: 1 / 0)
        clock.call_later(2.0, ran.append, 2)
        await clock.advance(2.0)
    finally:
        loop.set_exception_handler(None)
    assert [type(e) for e in reported] == [ZeroDivisionError] and ran == [2]


async def test_system_clock_reads_the_real_time() -> None:
    clock: Clock = SystemClock()
    start = clock.monotonic()
    assert abs(clock.time_ms() - time.time() * 1000) < 5_000
    fired = asyncio.Event()
    handle = clock.call_later(0.0, fired.set)
    async with asyncio.timeout(2):
        await fired.wait()
    assert not handle.cancelled()
    await clock.sleep(0)
    assert clock.monotonic() >= start


def test_manual_clock_is_exported_lazily_from_casty_testing() -> None:
    assert LazyManualClock is ManualClock
