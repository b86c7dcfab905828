"""Turning the seed forms users write into `Address` values."""

from __future__ import annotations

from typing import TypeAlias

from casty.abc import Address
from casty.errors import ConfigurationError

__all__ = ["SeedLike", "to_seed"]

#: A seed as users write it: an `Address`, a ``(host, port)`` pair, or ``"host:port"``.
SeedLike: TypeAlias = Address | tuple[str, int] | str


def to_seed(value: object) -> Address:
    """The `Address` of ``value``: a seed needs a non-empty host and a port in 1..65535.

    Raises:
        ConfigurationError: ``value`` is not one of the `SeedLike` forms, or is out of range.
    """
    if isinstance(value, Address):
        address = value
    elif isinstance(value, str):
        try:
            address = Address.parse(value.strip())
        except ValueError as exc:
            raise ConfigurationError(f"bad seed {value!r}: {exc}") from exc
    elif (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    ):
        address = Address(value[0], value[1])
    else:
        raise ConfigurationError(
            f"a seed is an Address, a (host, port) pair or 'host:port', not {value!r}"
        )
    if not address.host or not 1 <= address.port <= 65535:
        raise ConfigurationError(f"a seed needs a host and a port in 1..65535, got {value!r}")
    return address
