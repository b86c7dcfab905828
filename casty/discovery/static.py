"""`StaticDiscovery`: a fixed list of seed nodes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, final

from casty.abc import Address, Discovery
from casty.discovery._addresses import SeedLike, to_seed
from casty.errors import ConfigurationError, ResourceClosed
from casty.registry import BackendURL

__all__ = ["StaticDiscovery"]


@final
class StaticDiscovery(Discovery):
    """Seeds from a fixed list: what ``seed_nodes=[(host, port), ...]`` becomes.

    URL: ``static://h1:7000,h2:7000`` (``[v6]:port`` for IPv6 hosts; ``static://`` is an empty
    list). No query options. Extra: none.

    Args:
        seeds: the seed nodes, each an `Address`, a ``(host, port)`` pair or ``"host:port"``;
            duplicates collapse. An empty list is allowed; a cluster node given no seed
            keeps looking, with backoff and a calm log, until its ``join_timeout``.

    Raises:
        ConfigurationError: a seed has no host, or a port outside 1..65535.
    """

    def __init__(self, seeds: Iterable[SeedLike]) -> None:
        self._seeds = frozenset(to_seed(seed) for seed in seeds)
        self._closed = False

    @classmethod
    def from_url(cls, url: BackendURL, **options: Any) -> StaticDiscovery:
        """Build from ``static://h1:7000,h2:7000``.

        Raises:
            ConfigurationError: a seed without a port, or any query or keyword option.
        """
        if url.query or options or url.path or url.username is not None:
            raise ConfigurationError(f"static discovery takes no options: {url.raw!r}")
        if not url.host:
            return cls([])
        if url.port is not None:  # a single seed, already split by the URL parser
            return cls([Address(url.host, url.port)])
        return cls(part for part in url.host.split(",") if part)

    async def seeds(self) -> frozenset[Address]:
        """The configured seeds; the same set on every call.

        Raises:
            ResourceClosed: after `aclose`.
        """
        if self._closed:
            raise ResourceClosed("this StaticDiscovery is closed")
        return self._seeds

    async def aclose(self) -> None:
        """Mark closed; idempotent."""
        self._closed = True

    def __repr__(self) -> str:
        return f"StaticDiscovery({sorted(self._seeds)!r})"
