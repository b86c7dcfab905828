"""Waiting for a condition with a deadline, instead of sleeping in tests."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

__all__ = ["wait_until"]


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float = 5.0,
    interval: float = 0.005,
    message: str = "",
) -> None:
    """Poll ``predicate`` until it is true.

    Args:
        predicate: a sync or async callable returning a truth value.
        timeout: seconds before giving up.
        interval: seconds between polls.
        message: added to the error to say what was awaited.

    Raises:
        TimeoutError: the predicate was still false after ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() >= deadline:
            raise TimeoutError(f"condition not met within {timeout} s: {message or predicate!r}")
        await asyncio.sleep(interval)
