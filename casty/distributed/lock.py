"""`DistributedLock`: a cluster-wide leased lock (a `Lease` of one permit; see ``lease.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from casty.distributed.lease import Lease

if TYPE_CHECKING:
    from casty.distributed.channel import Channel

__all__ = ["DistributedLock"]


class DistributedLock(Lease):
    """A cluster-wide lock on a name, leased for ``ttl`` seconds and renewed while held.

    ::

        lock = system.distributed().lock("orders")
        async with lock:
            await storage.write(data, fencing_token=lock.token)

    The lease semantics (FIFO waiting, renewal every ``ttl / 3`` s, fencing tokens, refused
    late releases) are `Lease`'s. Obtained with `Distributed.lock`.

    Args:
        channel: how requests reach the ``"casty-lock"`` entities.
        type_name: the lock type's name (``"casty-lock"``).
        name: the lock's name (the entity id).
        ttl: the lease duration in seconds (> 0).
        auto_renew: renew in the background while held (False: call `renew` yourself).

    Raises:
        ConfigurationError: a bad name or ttl.
    """

    _kind = "lock"

    def __init__(
        self,
        channel: Channel,
        type_name: str,
        name: str,
        *,
        ttl: float,
        auto_renew: bool = True,
    ) -> None:
        super().__init__(channel, type_name, name, permits=1, ttl=ttl, auto_renew=auto_renew)
