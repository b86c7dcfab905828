"""Discovery backends and their registry.

- ``static://h1:7000,h2:7000``:
  `StaticDiscovery` (extra: none)
- ``dns://name:7000`` (A/AAAA), ``dns+srv://_casty._tcp.example.internal`` (SRV):
  `DNSDiscovery` (extra: ``dns``)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from casty.abc import Discovery
from casty.registry import BackendRegistry

if TYPE_CHECKING:
    from casty.discovery.dns import DNSDiscovery
    from casty.discovery.static import StaticDiscovery

__all__ = ["DNSDiscovery", "StaticDiscovery", "as_discovery", "registry"]

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


def as_discovery(value: Discovery | str, **options: Any) -> Discovery:
    """Return ``value`` if it is a `Discovery`, else build one from its URL.

    Raises:
        TypeError: ``value`` is neither a discovery nor a string.
        BackendNotFound: unknown scheme, or the extra is not installed.
    """
    return registry.coerce(value, **options)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return registry.load(_LAZY[name])
    raise AttributeError(name)
