"""Serializers and their registry: ``"msgpack"`` (the default) and ``"pickle"`` (trusted only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from casty.abc import Serializer
from casty.registry import BackendRegistry

if TYPE_CHECKING:
    from casty.serializers.msgpack import MsgpackSerializer
    from casty.serializers.pickle import PickleSerializer

__all__ = ["MsgpackSerializer", "PickleSerializer", "as_serializer", "registry"]

registry: BackendRegistry[Serializer] = BackendRegistry(
    "serializers",
    Serializer,
    {
        "msgpack": ("casty.serializers.msgpack:MsgpackSerializer", ""),
        "pickle": ("casty.serializers.pickle:PickleSerializer", ""),
    },
)

_LAZY = {"MsgpackSerializer": "msgpack", "PickleSerializer": "pickle"}


def as_serializer(value: Serializer | str, **options: Any) -> Serializer:
    """Return ``value`` if it is a `Serializer`, else build one from its name or URL.

    Raises:
        TypeError: ``value`` is neither a serializer nor a string.
        BackendNotFound: unknown name.
    """
    return registry.coerce(value, **options)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return registry.load(_LAZY[name])
    raise AttributeError(name)
