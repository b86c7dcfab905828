"""`DiscoveryContract`: the test suite every `casty.abc.Discovery` must pass.

The suite controls what the discovery's source publishes through a `PublishedSeeds` record;
the plug-in's `discovery_factory` wires its source (a fake registry, a fake DNS resolver, a
file) to read from it on every lookup. A plug-in passes by subclassing the suite once::

    import pytest
    from casty.testing.discovery_contract import (
        DiscoveryCapabilities,
        DiscoveryContract,
        PublishedSeeds,
    )

    class TestConsulDiscovery(DiscoveryContract):
        @pytest.fixture
        def discovery_factory(self, fake_consul):
            def make(published: PublishedSeeds) -> ConsulDiscovery:
                fake_consul.serve(lambda: published.seeds, up=lambda: published.available)
                return ConsulDiscovery(fake_consul.url, cache_ttl=0)

            return make

        @pytest.fixture
        def capabilities(self):
            return DiscoveryCapabilities(host_names=False)

Tests that need a capability the plug-in does not declare are skipped with the reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from casty.abc import Address, Discovery
from casty.errors import DiscoveryUnavailable, ResourceClosed
from casty.testing.wait import wait_until

__all__ = [
    "SHARED_PORT",
    "DiscoveryCapabilities",
    "DiscoveryContract",
    "PublishedSeeds",
    "requires",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The port of every seed the suite publishes when `DiscoveryCapabilities.per_seed_ports` is
#: false (DNS A/AAAA records carry no port: the discovery is configured with this one).
SHARED_PORT = 25520


@dataclass(slots=True)
class PublishedSeeds:
    """What the discovery's source publishes; the suite changes it between calls.

    Attributes:
        seeds: the seed addresses the source holds now.
        available: ``False`` makes the source fail as it really would (a DNS timeout, a
            registry that does not answer), so `Discovery.seeds` raises `DiscoveryUnavailable`.
    """

    seeds: frozenset[Address] = field(default_factory=frozenset)
    available: bool = True


@dataclass(frozen=True, slots=True)
class DiscoveryCapabilities:
    """What a discovery supports; contract tests that need an absent capability skip.

    Attributes:
        per_seed_ports: seeds may listen on different ports (false for DNS A/AAAA records,
            which share the port the discovery is configured with: `SHARED_PORT`).
        host_names: seeds may be host names as well as IP addresses (false when the source
            resolves names to addresses, as DNS does).
        ipv6: IPv6 seeds are returned.
        dynamic: a change of the source shows in `Discovery.seeds` within
            ``refresh_seconds`` (false for a fixed list).
        can_fail: the source can be unavailable (false for a fixed list).
        refresh_seconds: how long the suite waits for a change to show (the cache TTL the
            factory configures, plus slack).
    """

    per_seed_ports: bool = True
    host_names: bool = True
    ipv6: bool = True
    dynamic: bool = True
    can_fail: bool = True
    refresh_seconds: float = 2.0


_CAPABILITY_NAMES = frozenset(DiscoveryCapabilities.__dataclass_fields__)


def requires(*capabilities: str) -> Callable[[F], F]:
    """Mark a contract test as needing ``capabilities`` (names of `DiscoveryCapabilities`).

    Raises:
        ValueError: an unknown capability name.
    """
    unknown = set(capabilities) - _CAPABILITY_NAMES
    if unknown:
        raise ValueError(f"unknown discovery capabilities: {sorted(unknown)}")

    def mark(function: F) -> F:
        function.__casty_requires__ = capabilities  # type: ignore[attr-defined]
        return function

    return mark


DiscoveryFactory = Callable[[PublishedSeeds], Discovery]


class DiscoveryContract:
    """Subclass once, override `discovery_factory` (and `capabilities` when needed)."""

    # Explicit, so plug-in projects need not set pytest-asyncio's auto mode.
    pytestmark = pytest.mark.asyncio

    @pytest.fixture
    def discovery_factory(self) -> DiscoveryFactory:
        """``make(published)``: a new discovery whose source reads ``published`` on each lookup."""
        raise NotImplementedError("override discovery_factory in your DiscoveryContract")

    @pytest.fixture
    def capabilities(self) -> DiscoveryCapabilities:
        """What the discovery supports; the default claims everything."""
        return DiscoveryCapabilities()

    @pytest.fixture(autouse=True)
    def _skip_absent_capabilities(
        self, request: pytest.FixtureRequest, capabilities: DiscoveryCapabilities
    ) -> None:
        needed = getattr(request.function, "__casty_requires__", ())
        absent = [name for name in needed if not getattr(capabilities, name)]
        if absent:
            pytest.skip(f"discovery lacks capability {', '.join(absent)}")

    @staticmethod
    def sample(capabilities: DiscoveryCapabilities, count: int = 3) -> frozenset[Address]:
        """``count`` distinct IPv4 seeds the discovery can express."""

        def port(i: int) -> int:
            return 25520 + i if capabilities.per_seed_ports else SHARED_PORT

        return frozenset(Address(f"10.0.{i // 250}.{i % 250 + 1}", port(i)) for i in range(count))

    # -- shape and content ----------------------------------------------------------------------

    async def test_seeds_returns_a_frozenset_of_addresses(
        self, discovery_factory: DiscoveryFactory, capabilities: DiscoveryCapabilities
    ) -> None:
        discovery = discovery_factory(PublishedSeeds(self.sample(capabilities)))
        seeds = await discovery.seeds()
        assert isinstance(seeds, frozenset)
        assert seeds and all(type(seed) is Address for seed in seeds)
        await discovery.aclose()

    async def test_seeds_are_exactly_what_the_source_publishes(
        self, discovery_factory: DiscoveryFactory, capabilities: DiscoveryCapabilities
    ) -> None:
        published = self.sample(capabilities, 5)
        discovery = discovery_factory(PublishedSeeds(published))
        assert await discovery.seeds() == published
        await discovery.aclose()

    async def test_a_single_seed_is_returned(
        self, discovery_factory: DiscoveryFactory, capabilities: DiscoveryCapabilities
    ) -> None:
        published = self.sample(capabilities, 1)
        discovery = discovery_factory(PublishedSeeds(published))
        assert await discovery.seeds() == published
        await discovery.aclose()

    async def test_empty_source_gives_an_empty_set(
        self, discovery_factory: DiscoveryFactory
    ) -> None:
        discovery = discovery_factory(PublishedSeeds())
        assert await discovery.seeds() == frozenset()
        await discovery.aclose()

    async def test_many_seeds_are_all_returned(
        self, discovery_factory: DiscoveryFactory, capabilities: DiscoveryCapabilities
    ) -> None:
        published = self.sample(capabilities, 100)
        discovery = discovery_factory(PublishedSeeds(published))
        assert await discovery.seeds() == published
        await discovery.aclose()

    @requires("per_seed_ports")
    async def test_seeds_on_one_host_differ_by_port(
        self, discovery_factory: DiscoveryFactory
    ) -> None:
        published = frozenset({Address("10.1.0.1", 7000), Address("10.1.0.1", 7001)})
        discovery = discovery_factory(PublishedSeeds(published))
        assert await discovery.seeds() == published
        await discovery.aclose()

    @requires("ipv6")
    async def test_ipv6_seeds_are_returned(
        self, discovery_factory: DiscoveryFactory, capabilities: DiscoveryCapabilities
    ) -> None:
        published = {Address("fd00::1", SHARED_PORT), Address("2001:db8::2", SHARED_PORT)}
        published |= self.sample(capabilities, 1)
        discovery = discovery_factory(PublishedSeeds(frozenset(published)))
        assert await discovery.seeds() == published
        await discovery.aclose()

    @requires("host_names")
    async def test_host_names_are_kept_as_names(self, discovery_factory: DiscoveryFactory) -> None:
        published = frozenset({Address("node-a.example", 25520), Address("node-b", 25521)})
        discovery = discovery_factory(PublishedSeeds(published))
        assert await discovery.seeds() == published
        await discovery.aclose()

    # -- over time ------------------------------------------------------------------------------

    async def test_seeds_are_stable_across_calls(
        self, discovery_factory: DiscoveryFactory, capabilities: DiscoveryCapabilities
    ) -> None:
        published = self.sample(capabilities, 4)
        discovery = discovery_factory(PublishedSeeds(published))
        results = [await discovery.seeds() for _ in range(5)]
        assert results == [published] * 5
        await discovery.aclose()

    async def test_concurrent_callers_see_the_same_seeds(
        self, discovery_factory: DiscoveryFactory, capabilities: DiscoveryCapabilities
    ) -> None:
        published = self.sample(capabilities, 4)
        discovery = discovery_factory(PublishedSeeds(published))
        results = await asyncio.gather(*(discovery.seeds() for _ in range(20)))
        assert results == [published] * 20
        await discovery.aclose()

    @requires("dynamic")
    async def test_changes_to_the_source_become_visible(
        self, discovery_factory: DiscoveryFactory, capabilities: DiscoveryCapabilities
    ) -> None:
        first, second = self.sample(capabilities, 2), self.sample(capabilities, 5)
        source = PublishedSeeds(first)
        discovery = discovery_factory(source)
        assert await discovery.seeds() == first
        source.seeds = second

        async def shows_second() -> bool:
            return await discovery.seeds() == second

        await wait_until(shows_second, capabilities.refresh_seconds, message="grown seed set")
        source.seeds = frozenset()

        async def shows_empty() -> bool:
            return await discovery.seeds() == frozenset()

        await wait_until(shows_empty, capabilities.refresh_seconds, message="emptied seed set")
        await discovery.aclose()

    @requires("can_fail")
    async def test_unavailable_source_raises_discovery_unavailable(
        self, discovery_factory: DiscoveryFactory, capabilities: DiscoveryCapabilities
    ) -> None:
        discovery = discovery_factory(PublishedSeeds(self.sample(capabilities), available=False))
        with pytest.raises(DiscoveryUnavailable):
            await discovery.seeds()
        await discovery.aclose()

    @requires("can_fail")
    async def test_seeds_work_again_once_the_source_is_back(
        self, discovery_factory: DiscoveryFactory, capabilities: DiscoveryCapabilities
    ) -> None:
        published = self.sample(capabilities)
        source = PublishedSeeds(published, available=False)
        discovery = discovery_factory(source)
        with pytest.raises(DiscoveryUnavailable):
            await discovery.seeds()
        source.available = True
        assert await discovery.seeds() == published
        await discovery.aclose()

    async def test_a_cancelled_call_leaves_the_discovery_usable(
        self, discovery_factory: DiscoveryFactory, capabilities: DiscoveryCapabilities
    ) -> None:
        published = self.sample(capabilities)
        discovery = discovery_factory(PublishedSeeds(published))
        call = asyncio.ensure_future(discovery.seeds())
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await discovery.seeds() == published
        await discovery.aclose()

    # -- closing --------------------------------------------------------------------------------

    async def test_aclose_is_idempotent(self, discovery_factory: DiscoveryFactory) -> None:
        discovery = discovery_factory(PublishedSeeds())
        await discovery.aclose()
        await discovery.aclose()

    async def test_seeds_after_aclose_raise_resource_closed_or_still_work(
        self, discovery_factory: DiscoveryFactory, capabilities: DiscoveryCapabilities
    ) -> None:
        published = self.sample(capabilities)
        discovery = discovery_factory(PublishedSeeds(published))
        await discovery.aclose()
        try:
            seeds = await discovery.seeds()
        except ResourceClosed:
            return
        assert seeds == published
