"""StaticDiscovery specifics: the seed forms it accepts and its URL."""

from __future__ import annotations

import pytest

from casty.abc import Address
from casty.discovery import StaticDiscovery, as_discovery
from casty.errors import ConfigurationError, ResourceClosed


async def test_accepts_addresses_pairs_and_strings_and_collapses_duplicates() -> None:
    discovery = StaticDiscovery(
        [Address("10.0.0.1", 7000), ("10.0.0.1", 7000), "10.0.0.2:7001", "[fd00::1]:7002"]
    )
    assert await discovery.seeds() == {
        Address("10.0.0.1", 7000),
        Address("10.0.0.2", 7001),
        Address("fd00::1", 7002),
    }


@pytest.mark.parametrize(
    "seed",
    [("h", "7000"), ("h", True), ("h", 0), ("h", 70000), ("", 7000), "h", "h:x", 7000, ["h", 1]],
    ids=repr,
)
def test_bad_seeds_raise_configuration_error(seed: object) -> None:
    with pytest.raises(ConfigurationError):
        StaticDiscovery([seed])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("static://h1:7000,h2:7000", {Address("h1", 7000), Address("h2", 7000)}),
        ("static://10.0.0.1:7000,[::1]:7001", {Address("10.0.0.1", 7000), Address("::1", 7001)}),
        ("static://node-a:25520", {Address("node-a", 25520)}),
        ("static://h1:7000,,h2:7001,", {Address("h1", 7000), Address("h2", 7001)}),
        ("static://", set()),
    ],
)
async def test_url_lists_the_seeds(url: str, expected: set[Address]) -> None:
    discovery = as_discovery(url)
    assert isinstance(discovery, StaticDiscovery)
    assert await discovery.seeds() == expected


@pytest.mark.parametrize(
    "url",
    [
        "static://h1",
        "static://h1:7000,h2",
        "static://h:0",
        "static://h:1?x=1",
        "static://user@h:1",
        "static://h:1/p",
    ],
)
def test_bad_urls_raise_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        as_discovery(url)


def test_keyword_options_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        as_discovery("static://h:1", ttl=3)


def test_an_instance_passes_through_as_discovery_unchanged() -> None:
    discovery = StaticDiscovery([("h", 1)])
    assert as_discovery(discovery) is discovery


async def test_seeds_after_aclose_raise_resource_closed() -> None:
    discovery = StaticDiscovery([("h", 1)])
    await discovery.aclose()
    with pytest.raises(ResourceClosed):
        await discovery.seeds()
