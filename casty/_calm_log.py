"""`CalmLog`: a warning that repeats (each join round, each stray connection) logged calmly.

Used by the cluster (joining, dropped messages) and by remoting (connections that never
handshake, such as port scans and TCP health probes), so an operator sees each kind of trouble
at most once per interval, with a count of the repeats held back, instead of a flood.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Hashable
from typing import final

from casty.errors import ConfigurationError

__all__ = ["CalmLog"]


@final
class CalmLog:
    """Logs a warning per key at most once per ``interval``, counting what it held back.

    The first warning of a key is logged at once; the next ones within ``interval`` seconds
    are only counted, and the next warning logged for that key ends with
    ``"(N similar messages held back)"``. Keys are independent. Not thread-safe (it belongs
    to one event loop).

    Args:
        logger: where the warnings go.
        monotonic: the clock, in seconds (``Clock.monotonic`` of the owning system).
        interval: seconds between two warnings of the same key; > 0 and finite.

    Raises:
        ConfigurationError: ``interval`` is not a positive, finite number.
    """

    __slots__ = ("_held", "_interval", "_last", "_logger", "_monotonic")

    def __init__(
        self, logger: logging.Logger, monotonic: Callable[[], float], interval: float
    ) -> None:
        if not 0 < interval < math.inf:  # NaN fails both comparisons
            raise ConfigurationError(f"interval must be > 0 and finite, got {interval!r}")
        self._logger = logger
        self._monotonic = monotonic
        self._interval = interval
        self._last: dict[Hashable, float] = {}
        self._held: dict[Hashable, int] = {}

    def warning(self, key: Hashable, message: str, *args: object) -> None:
        """Log ``message % args`` at WARNING, unless ``key`` was logged within the interval."""
        now = self._monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._held[key] = self._held.get(key, 0) + 1
            return
        held = self._held.pop(key, 0)
        self._last[key] = now
        suffix = f" ({held} similar messages held back)" if held else ""
        self._logger.warning(message + suffix, *args)
