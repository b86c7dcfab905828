"""Transport backends and their registry.

- ``tcp://`` or ``tcp://host:port``:
  `TCPTransport` (extra: none)
- ``tls://?cert=node.pem&key=node.key&ca=ca.pem``:
  `TLSTransport` (extra: none (``tls`` for cert tooling))
- ``memory://`` or ``memory://network-name``:
  `MemoryTransport` (extra: none)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from casty.abc import Transport
from casty.registry import BackendRegistry

if TYPE_CHECKING:
    from casty.transports.memory import MemoryTransport
    from casty.transports.tcp import TCPTransport
    from casty.transports.tls import TLSTransport

__all__ = ["MemoryTransport", "TCPTransport", "TLSTransport", "as_transport", "registry"]

registry: BackendRegistry[Transport] = BackendRegistry(
    "transports",
    Transport,
    {
        "tcp": ("casty.transports.tcp:TCPTransport", ""),
        "tls": ("casty.transports.tls:TLSTransport", ""),
        "memory": ("casty.transports.memory:MemoryTransport", ""),
    },
)

_LAZY = {"TCPTransport": "tcp", "TLSTransport": "tls", "MemoryTransport": "memory"}


def as_transport(value: Transport | str, **options: Any) -> Transport:
    """Return ``value`` if it is a `Transport`, else build one from its URL.

    Raises:
        TypeError: ``value`` is neither a transport nor a string.
        BackendNotFound: unknown scheme.
    """
    return registry.coerce(value, **options)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return registry.load(_LAZY[name])
    raise AttributeError(name)
