"""`read_ahead`: the SQL journals' recovery pages, the next one read while this one is used."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from contextlib import aclosing

import pytest

from casty.errors import CorruptEntry
from casty.journals._checks import read_ahead

PAGE = 3


class Log:
    """Rows ``(sequence_nr,)`` 1..size, served a page at a time; counts the pages asked for."""

    def __init__(self, size: int, corrupt_from: int | None = None) -> None:
        self.size = size
        self.corrupt_from = corrupt_from
        self.asked: list[int] = []
        self.running = 0
        self.most_running = 0

    async def fetch(self, low: int) -> list[tuple[int]]:
        self.asked.append(low)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(0)  # a real store answers later
            if self.corrupt_from is not None and low >= self.corrupt_from:
                raise CorruptEntry(f"row {low}")
            return [(nr,) for nr in range(low, min(low + PAGE, self.size + 1))]
        finally:
            self.running -= 1


async def turns_until(condition: Callable[[], bool]) -> None:
    """Let the event loop run until ``condition`` holds (the reads here need a few turns)."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def collect(log: Log, low: int = 1) -> list[int]:
    return [row[0] async for rows in read_ahead(log.fetch, low, PAGE) for row in rows]


@pytest.mark.parametrize("size", [0, 1, PAGE, PAGE + 1, 3 * PAGE, 3 * PAGE + 2])
async def test_every_row_once_in_order(size: int) -> None:
    log = Log(size)
    assert await collect(log) == list(range(1, size + 1))
    assert log.most_running == 1  # one page read ahead, never more


async def test_the_next_page_is_read_while_this_one_is_used() -> None:
    log = Log(10)
    async with aclosing(read_ahead(log.fetch, 1, PAGE)) as pages:
        first = await anext(pages)
        assert first == [(1,), (2,), (3,)]
        # The second page is asked for while the caller still holds the first.
        await turns_until(lambda: log.asked == [1, 4])


async def test_a_short_page_ends_the_replay_without_another_query() -> None:
    log = Log(2 * PAGE)  # full, full, then an empty page ends it
    assert await collect(log) == list(range(1, 2 * PAGE + 1))
    assert log.asked == [1, 4, 7]
    log = Log(PAGE + 1)
    await collect(log)
    assert log.asked == [1, 4]  # the short second page needs no third query


async def test_a_bad_page_raises_after_the_pages_before_it() -> None:
    log = Log(20, corrupt_from=7)
    seen: list[int] = []
    with pytest.raises(CorruptEntry, match="row 7"):
        async for rows in read_ahead(log.fetch, 1, PAGE):
            seen += [row[0] for row in rows]
    assert seen == [1, 2, 3, 4, 5, 6]


async def test_stopping_early_cancels_the_page_read_ahead() -> None:
    log = Log(100)
    async with aclosing(read_ahead(log.fetch, 1, PAGE)) as pages:
        await anext(pages)
        await turns_until(lambda: log.running == 1)  # the second page is being read
    await turns_until(lambda: log.running == 0)  # and the early close cancelled it
    assert log.asked == [1, 4]


async def test_an_unread_failed_page_is_not_reported_as_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = Log(100, corrupt_from=4)
    async with aclosing(read_ahead(log.fetch, 1, PAGE)) as pages:
        await anext(pages)
        # The read-ahead fails while the caller still holds page one.
        await turns_until(lambda: log.asked == [1, 4] and log.running == 0)
    del pages
    gc.collect()
    assert "exception was never retrieved" not in caplog.text
