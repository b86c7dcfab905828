"""`CallableDiscovery`: seeds from a user function, so any source needs no class of its own."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeAlias, final

from casty.abc import Address, Discovery
from casty.discovery._addresses import SeedLike, to_seed
from casty.errors import CastyError, ConfigurationError, DiscoveryUnavailable, ResourceClosed

__all__ = ["CallableDiscovery", "SeedSource"]

#: A function returning the current seeds, directly or as an awaitable.
SeedSource: TypeAlias = Callable[[], Awaitable[Iterable[SeedLike]] | Iterable[SeedLike]]


@final
class CallableDiscovery(Discovery):
    """Adapts a function (sync or async) that returns the current seeds.

    `casty.discovery.as_discovery` wraps any callable in one, so ``discovery=fetch_seeds``
    works wherever a discovery is accepted. The function is called on every `seeds` call:
    cache inside it if the source is expensive.

    Example::

        async def from_consul() -> list[tuple[str, int]]:
            ...

        discovery = CallableDiscovery(from_consul)

    Args:
        source: returns an iterable of seeds, each an `Address`, a ``(host, port)`` pair or
            ``"host:port"``.
    """

    def __init__(self, source: SeedSource) -> None:
        if not callable(source):
            raise TypeError(f"expected a callable returning seeds, got {source!r}")
        self._source = source
        self._closed = False

    async def seeds(self) -> frozenset[Address]:
        """Call the function and return its seeds as a set.

        Raises:
            DiscoveryUnavailable: the function raised (its exception is the ``__cause__``);
                a `CastyError` it raises passes through unchanged.
            ConfigurationError: it returned something that is not an iterable of seeds.
            ResourceClosed: after `aclose`.
        """
        if self._closed:
            raise ResourceClosed("this CallableDiscovery is closed")
        try:
            result = self._source()
            if inspect.isawaitable(result):
                result = await result
        except CastyError:
            raise
        except Exception as exc:  # the user's source failed: retryable by definition here
            raise DiscoveryUnavailable(f"seed source {self._source!r} failed: {exc}") from exc
        try:
            items = iter(result)
        except TypeError as exc:
            raise ConfigurationError(
                f"seed source {self._source!r} returned {result!r}, not an iterable of seeds"
            ) from exc
        return frozenset(to_seed(seed) for seed in items)

    async def aclose(self) -> None:
        """Stop calling the function; idempotent."""
        self._closed = True
