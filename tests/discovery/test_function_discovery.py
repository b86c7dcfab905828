"""A plain function as discovery: `as_discovery` wraps it in `CallableDiscovery`."""

from __future__ import annotations

import pytest

from casty.abc import Address
from casty.discovery import CallableDiscovery, StaticDiscovery, as_discovery
from casty.errors import ConfigurationError, DiscoveryUnavailable, ResourceClosed


async def test_a_sync_function_is_wrapped_and_called_on_every_lookup() -> None:
    calls: list[int] = []

    def seeds() -> list[str]:
        calls.append(1)
        return ["10.0.0.1:7000", f"10.0.0.{len(calls) + 1}:7000"]

    discovery = as_discovery(seeds)
    assert isinstance(discovery, CallableDiscovery)
    assert await discovery.seeds() == {Address("10.0.0.1", 7000), Address("10.0.0.2", 7000)}
    assert await discovery.seeds() == {Address("10.0.0.1", 7000), Address("10.0.0.3", 7000)}
    assert len(calls) == 2


async def test_an_async_function_is_awaited() -> None:
    async def seeds() -> set[Address]:
        return {Address("h", 1)}

    assert await as_discovery(seeds).seeds() == {Address("h", 1)}


async def test_a_failing_function_raises_discovery_unavailable_with_its_cause() -> None:
    def seeds() -> list[str]:
        raise ConnectionRefusedError("registry down")

    with pytest.raises(DiscoveryUnavailable) as info:
        await as_discovery(seeds).seeds()
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


async def test_casty_errors_from_the_function_pass_through_unchanged() -> None:
    error = DiscoveryUnavailable("already classified")

    async def seeds() -> list[str]:
        raise error

    with pytest.raises(DiscoveryUnavailable) as info:
        await as_discovery(seeds).seeds()
    assert info.value is error


@pytest.mark.parametrize("result", [None, 7, ["h"], [("h", "1")]], ids=repr)
async def test_malformed_results_raise_configuration_error(result: object) -> None:
    discovery = as_discovery(lambda: result)  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigurationError):
        await discovery.seeds()


@pytest.mark.parametrize("value", [42, StaticDiscovery, None], ids=repr)
def test_neither_discovery_url_nor_function_raises_type_error(value: object) -> None:
    with pytest.raises(TypeError):
        as_discovery(value)  # type: ignore[arg-type]


def test_options_with_a_function_raise_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        as_discovery(lambda: [], ttl=1)


async def test_seeds_after_aclose_raise_resource_closed() -> None:
    discovery = as_discovery(lambda: [("h", 1)])
    await discovery.aclose()
    with pytest.raises(ResourceClosed):
        await discovery.seeds()
