"""Casty: an asyncio actor framework whose cluster stack is the library."""

from __future__ import annotations

from casty.abc import Address, Discovery, Journal, Serializer, Transport
from casty.errors import *  # noqa: F403 - the error tree is part of the public API
from casty.errors import __all__ as _errors_all

__version__ = "0.1.0"

__all__ = [
    "Address",
    "Discovery",
    "Journal",
    "Serializer",
    "Transport",
    "__version__",
    *_errors_all,
]
