"""`DistributedSemaphore`: ``permits`` leased permits on a name (each a `Lease`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from casty.distributed.lease import Lease, check_seconds
from casty.errors import ConfigurationError

if TYPE_CHECKING:
    from casty.distributed.channel import Channel

__all__ = ["DistributedSemaphore", "SemaphorePermit"]


class SemaphorePermit(Lease):
    """One permit of a `DistributedSemaphore`, held by the task that acquired it.

    The same lease as a lock's (`Lease`): a fencing token per grant (strictly increasing across
    the grants of one semaphore name), renewal every ``ttl / 3`` s while held, a refused late
    `release` (`LeaseExpired`).
    """

    _kind = "semaphore"


class DistributedSemaphore:
    """At most ``permits`` holders of a name at once, cluster-wide; each permit is leased.

    ::

        db = system.distributed().semaphore("db-connections", 5)
        async with db.permit(timeout=10.0) as permit:
            await query(fencing_token=permit.token)

    The object may be shared by many tasks: each `acquire` / `permit` returns a permit of its
    own (one entity request, granted in FIFO order). Every user of a name must give the same
    ``permits``: a request with another count is refused (`ConfigurationError`) while the name
    has holders or waiters. Obtained with `Distributed.semaphore`.

    Args:
        channel: how requests reach the ``"casty-semaphore"`` entities.
        type_name: the semaphore type's name (``"casty-semaphore"``).
        name: the semaphore's name (the entity id).
        permits: how many holders at once (>= 1).
        ttl: the lease duration of each permit in seconds (> 0).
        auto_renew: renew each permit in the background while held.

    Raises:
        ConfigurationError: a bad name, permit count or ttl.
    """

    def __init__(
        self,
        channel: Channel,
        type_name: str,
        name: str,
        permits: int,
        *,
        ttl: float,
        auto_renew: bool = True,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a semaphore name is a non-empty string, got {name!r}")
        if isinstance(permits, bool) or not isinstance(permits, int) or permits < 1:
            raise ConfigurationError(f"permits must be an int >= 1, got {permits!r}")
        self._channel = channel
        self._type_name = type_name
        self.name = name
        self.permits = permits
        self._ttl = check_seconds("ttl", ttl)
        self._auto_renew = auto_renew

    async def acquire(self, timeout: float = 30.0) -> SemaphorePermit:
        """Wait up to ``timeout`` seconds for a permit; `SemaphorePermit.release` gives it back.

        Raises:
            ConfigurationError: a bad ``timeout``, or the name is in use with another
                permit count.
            AcquireTimeout: no permit came free (or the entity did not answer) in time.
        """
        permit = SemaphorePermit(
            self._channel,
            self._type_name,
            self.name,
            permits=self.permits,
            ttl=self._ttl,
            auto_renew=self._auto_renew,
        )
        await permit.acquire(timeout)
        return permit

    @asynccontextmanager
    async def permit(self, timeout: float = 30.0) -> AsyncIterator[SemaphorePermit]:
        """``async with sem.permit() as p:`` holds a permit for the block (see `acquire`).

        Raises:
            As `acquire`; on exit, `LeaseExpired` when the lease had run out meanwhile.
        """
        held = await self.acquire(timeout)
        try:
            yield held
        finally:
            await held.release()
