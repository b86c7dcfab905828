"""`ActorAddress`: where an actor lives, as a value (``casty://system@host:port/path``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from casty.abc import Address
from casty.errors import ConfigurationError

__all__ = ["SCHEME", "ActorAddress"]

#: The scheme prefix of every actor address.
SCHEME: Final = "casty://"

_SYSTEM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_MAX_PORT: Final = 65535


@dataclass(frozen=True, slots=True)
class ActorAddress:
    """An actor's full address, parsed: ``casty://system@host:port/path``.

    A local-only system has no node part (``host`` and ``port`` are ``None``) and its addresses
    read ``casty://system/path``. ``str()`` gives the canonical text back; an IPv6 host is
    written in brackets. ``path`` is ``""`` for the address of a node itself.

    Attributes:
        system: the actor system's name.
        host: the node's host, or ``None`` for a local-only system.
        port: the node's port (0..65535), or ``None`` for a local-only system.
        path: the actor's path inside its system (``"/user/a"``), or ``""``.
    """

    system: str
    host: str | None = None
    port: int | None = None
    path: str = ""

    @classmethod
    def parse(cls, text: str) -> ActorAddress:
        """Parse ``casty://system[@host:port][/path]``.

        Raises:
            ConfigurationError: another scheme, a malformed system name, a node part without a
                port or with a port outside 0..65535, or a path that does not start with ``/``.
        """
        if not isinstance(text, str) or not text.startswith(SCHEME):
            raise ConfigurationError(
                f"not an actor address (casty://system@host:port/path): {text!r}"
            )
        rest = text[len(SCHEME) :]
        slash = rest.find("/")
        authority, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
        system, at, node = authority.partition("@")
        if not _SYSTEM_NAME.fullmatch(system):
            raise ConfigurationError(f"invalid system name {system!r} in actor address {text!r}")
        if not at:
            return cls(system, None, None, path)
        host, colon, port = node.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not colon or not host or not port.isdigit() or int(port) > _MAX_PORT:
            raise ConfigurationError(f"expected host:port after '@' in actor address {text!r}")
        return cls(system, host, int(port), path)

    @classmethod
    def of_node(cls, system: str, node: Address) -> ActorAddress:
        """The address of the node ``node`` of system ``system`` (an empty path)."""
        return cls(system, node.host, node.port)

    @property
    def is_remote(self) -> bool:
        """Whether the address names a node (``host`` and ``port`` are set)."""
        return self.host is not None

    @property
    def node(self) -> Address | None:
        """The node's network address, or ``None`` for a local-only address."""
        if self.host is None or self.port is None:
            return None
        return Address(self.host, self.port)

    @property
    def root(self) -> str:
        """The address without its path: ``casty://system@host:port`` (or ``casty://system``)."""
        if self.host is None:
            return f"{SCHEME}{self.system}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{SCHEME}{self.system}@{host}:{self.port}"

    def with_path(self, path: str) -> ActorAddress:
        """The same node with another path (``"/user/a"``).

        Raises:
            ConfigurationError: ``path`` is not empty and does not start with ``/``.
        """
        if path and not path.startswith("/"):
            raise ConfigurationError(f"an actor path starts with '/', got {path!r}")
        return ActorAddress(self.system, self.host, self.port, path)

    def __str__(self) -> str:
        return self.root + self.path
