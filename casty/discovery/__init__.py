"""Discovery backends and their registry.

- ``static://h1:7000,h2:7000``:
  `StaticDiscovery` (extra: none)
- ``dns://name:7000`` (A/AAAA), ``dns+srv://_casty._tcp.example.internal`` (SRV):
  `DNSDiscovery` (extra: ``dns``)
- any function returning seeds: `CallableDiscovery`
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from casty.abc import Discovery
from casty.discovery.function import CallableDiscovery, SeedSource
from casty.errors import ConfigurationError
from casty.registry import BackendRegistry

if TYPE_CHECKING:
    from casty.discovery.dns import DNSDiscovery
    from casty.discovery.static import StaticDiscovery

__all__ = ["CallableDiscovery", "DNSDiscovery", "StaticDiscovery", "as_discovery", "registry"]

registry: BackendRegistry[Discovery] = BackendRegistry(
    "discovery",
    Discovery,
    {
        "static": ("casty.discovery.static:StaticDiscovery", ""),
        "dns": ("casty.discovery.dns:DNSDiscovery", "pip install 'casty[dns]'"),
        "dns+srv": ("casty.discovery.dns:DNSDiscovery", "pip install 'casty[dns]'"),
    },
)

_LAZY = {"StaticDiscovery": "static", "DNSDiscovery": "dns"}


def as_discovery(value: Discovery | str | SeedSource, **options: Any) -> Discovery:
    """Return ``value`` if it is a `Discovery`, build one from a URL, or wrap a function.

    A function (sync or async) returning seeds becomes a `CallableDiscovery`.

    Raises:
        TypeError: ``value`` is neither a discovery, a string nor a function.
        ConfigurationError: options given with a function.
        BackendNotFound: unknown scheme, or the extra is not installed.
    """
    if isinstance(value, Discovery | str):
        return registry.coerce(value, **options)
    if not callable(value) or isinstance(value, type):
        raise TypeError(
            "expected a Discovery instance, a URL string or a function returning seeds, "
            f"got {type(value).__name__}"
        )
    if options:
        raise ConfigurationError(f"a seed function takes no options, got {sorted(options)}")
    return CallableDiscovery(value)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return registry.load(_LAZY[name])
    raise AttributeError(name)
