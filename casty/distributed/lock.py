"""The leased lock: its entity (sharded type ``"casty-lock"``) and `DistributedLock`.

One entity per lock name holds the current lease (holder, fencing token, expiry) and a FIFO
queue of waiters. A lease lasts ``ttl`` seconds from its grant or last renewal, measured on the
clock of the node that runs the entity (``clock.monotonic``); when it runs out the entity frees
the lock and grants the next waiter. Each grant carries a fencing token, larger than every token
granted before for that name (Kleppmann, "How to do distributed locking", 2016): a resource that
remembers the largest token it saw and refuses smaller ones is safe even when a paused holder
believes it still holds an expired lease.

Tokens are ``(wall-clock ms at the entity's start) << 20`` plus a counter, so they keep
increasing when the entity restarts on another node (after a crash or a shard move), as long as
the nodes' wall clocks do not step back by more than the time between the two incarnations and
an incarnation grants fewer than 2**20 leases per millisecond it lived.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from casty.actors.behaviors import Behavior, Behaviors
from casty.actors.context import ActorContext
from casty.actors.ref import ActorRef
from casty.actors.timers import TimerScheduler
from casty.errors import (
    AcquireTimeout,
    AskTimeout,
    CastyError,
    ConfigurationError,
    CoordinationError,
    LeaseExpired,
)
from casty.sharding.messages import ShardEnvelope

if TYPE_CHECKING:
    from casty.cluster.system import ClusteredActorSystem

__all__ = [
    "Acquire",
    "DistributedLock",
    "Granted",
    "LeaseGone",
    "NotGranted",
    "Release",
    "Released",
    "Renew",
    "Renewed",
    "lock_entity",
]

#: Seconds an ask waits for the entity past its own deadline (the entity may be moving).
ANSWER_GRACE = 5.0


@dataclass(frozen=True, slots=True)
class Acquire:
    """Ask for the lock; answered `Granted`, or `NotGranted` after ``wait`` seconds."""

    owner: str
    ttl: float
    wait: float
    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class Renew:
    """Extend the lease of ``token`` by its ttl from now; answered `Renewed` or `LeaseGone`."""

    owner: str
    token: int
    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class Release:
    """Give back the lease of ``token``; answered `Released` or `LeaseGone` (refused)."""

    owner: str
    token: int
    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class Granted:
    """The lock is the asker's, with fencing ``token``, for ``ttl`` seconds unless renewed."""

    token: int
    ttl: float


@dataclass(frozen=True, slots=True)
class NotGranted:
    """The lock stayed busy for the whole wait."""

    reason: str


@dataclass(frozen=True, slots=True)
class Renewed:
    token: int


@dataclass(frozen=True, slots=True)
class Released:
    token: int


@dataclass(frozen=True, slots=True)
class LeaseGone:
    """The lease of ``token`` expired (or was never this owner's): renew/release refused."""

    token: int
    reason: str


@dataclass(frozen=True, slots=True)
class _LeaseEnd:
    token: int


@dataclass(frozen=True, slots=True)
class _WaitEnd:
    owner: str


@dataclass(slots=True)
class _Lease:
    owner: str
    token: int
    ttl: float
    expires: float


def lock_entity(entity_id: str) -> Behavior[Any]:
    """The entity of lock ``entity_id``: see the module docstring."""

    def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        clock = ctx.system.clock
        base = clock.time_ms() << 20

        def with_timers(timers: TimerScheduler[Any]) -> Behavior[Any]:
            issued = 0
            lease: _Lease | None = None
            waiters: deque[Acquire] = deque()

            def grant(request: Acquire) -> None:
                nonlocal issued, lease
                issued += 1
                token = base + issued
                lease = _Lease(request.owner, token, request.ttl, clock.monotonic() + request.ttl)
                timers.cancel(("wait", request.owner))
                timers.start_single_timer("lease", _LeaseEnd(token), request.ttl)
                request.reply_to.tell(Granted(token, request.ttl))

            def free() -> None:
                nonlocal lease
                lease = None
                timers.cancel("lease")
                if waiters:
                    grant(waiters.popleft())

            def holds(owner: str, token: int) -> bool:
                return (
                    lease is not None
                    and lease.owner == owner
                    and lease.token == token
                    and clock.monotonic() < lease.expires
                )

            def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
                if isinstance(msg, Acquire):
                    if lease is not None and clock.monotonic() >= lease.expires:
                        free()  # the lease timer is on its way; do not make this one wait
                    if lease is None and not waiters:
                        grant(msg)
                    else:
                        waiters.append(msg)
                        timers.start_single_timer(
                            ("wait", msg.owner), _WaitEnd(msg.owner), msg.wait
                        )
                elif isinstance(msg, Renew):
                    if lease is not None and holds(msg.owner, msg.token):
                        lease.expires = clock.monotonic() + lease.ttl
                        timers.start_single_timer("lease", _LeaseEnd(lease.token), lease.ttl)
                        msg.reply_to.tell(Renewed(msg.token))
                    else:
                        msg.reply_to.tell(LeaseGone(msg.token, f"lock {entity_id!r}: lease lost"))
                elif isinstance(msg, Release):
                    if holds(msg.owner, msg.token):
                        msg.reply_to.tell(Released(msg.token))
                        free()
                    else:
                        msg.reply_to.tell(
                            LeaseGone(msg.token, f"lock {entity_id!r}: the lease had expired")
                        )
                elif isinstance(msg, _LeaseEnd):
                    if lease is not None and lease.token == msg.token:
                        if clock.monotonic() >= lease.expires:
                            free()
                        else:  # renewed meanwhile: look again when the new expiry is due
                            timers.start_single_timer(
                                "lease", msg, lease.expires - clock.monotonic()
                            )
                elif isinstance(msg, _WaitEnd):
                    for request in list(waiters):
                        if request.owner == msg.owner:
                            waiters.remove(request)
                            request.reply_to.tell(
                                NotGranted(f"lock {entity_id!r} stayed busy for {request.wait} s")
                            )
                return Behaviors.same()

            return Behaviors.receive(receive)

        return Behaviors.with_timers(with_timers)

    return Behaviors.setup(setup)


class DistributedLock:
    """A cluster-wide lock on a name, leased for ``ttl`` seconds and renewed while held.

    ::

        lock = system.distributed().lock("orders")
        async with lock:
            await storage.write(data, fencing_token=lock.token)

    `acquire` waits in FIFO order for the lock and returns the grant's fencing token (strictly
    increasing across grants of the same name). While held, a background task renews the lease
    every ``ttl / 3`` seconds (``auto_renew``); when the holder's node dies the renewals stop and
    the lock passes to the next waiter once the lease has run out on the entity's clock. A lock
    object is used by one task at a time and may be acquired again after `release`.

    Assumptions: the entity's node clock measures the lease; the holder considers its lease lost
    ``ttl`` seconds after sending its last successful renewal, so as long as clock rates differ by
    little, the holder stops believing before the entity grants again. Use the token for safety.

    Args:
        system: the member the lock is used from.
        region: the ``"casty-lock"`` sharded region.
        name: the lock's name (the entity id).
        ttl: the lease duration in seconds (> 0).
        auto_renew: renew in the background while held (False: call `renew` yourself).
    """

    def __init__(
        self,
        system: ClusteredActorSystem,
        region: ActorRef[Any],
        name: str,
        *,
        ttl: float,
        auto_renew: bool = True,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a lock name is a non-empty string, got {name!r}")
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < 1e9:
            raise ConfigurationError(f"ttl must be a number of seconds > 0, got {ttl!r}")
        self._system = system
        self._region = region
        self._name = name
        self._ttl = float(ttl)
        self._auto_renew = auto_renew
        self._owner = ""
        self._token: int | None = None
        self._valid_until = 0.0
        self._renewer: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def token(self) -> int | None:
        """The fencing token of the current grant (None while not held)."""
        return self._token

    @property
    def held(self) -> bool:
        """Whether this object holds a lease that, by the local clock, has not run out."""
        return self._token is not None and asyncio.get_running_loop().time() < self._valid_until

    async def acquire(self, timeout: float = 30.0) -> int:
        """Wait up to ``timeout`` seconds for the lock; return the grant's fencing token.

        Cancellation while waiting leaves the request queued on the entity until its wait ends;
        a grant that arrives for nobody is held until its lease runs out (not renewed).

        Raises:
            ConfigurationError: ``timeout`` is not a number of seconds >= 0.
            CoordinationError: this object already holds the lock.
            AcquireTimeout: the lock stayed busy (or the entity did not answer) for ``timeout``.
        """
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise ConfigurationError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
        if self._token is not None:
            raise CoordinationError(f"lock {self._name!r} is already held by this object")
        owner = f"{self._system.self_node}/{uuid.uuid4().hex}"
        loop = asyncio.get_running_loop()
        sent = loop.time()
        answer = await self._ask(
            lambda reply_to: Acquire(owner, self._ttl, float(timeout), reply_to),
            timeout + ANSWER_GRACE,
            AcquireTimeout,
        )
        if isinstance(answer, NotGranted):
            raise AcquireTimeout(answer.reason)
        if not isinstance(answer, Granted):
            raise CoordinationError(f"lock {self._name!r}: unexpected answer {answer!r}")
        self._owner = owner
        self._token = answer.token
        self._valid_until = sent + answer.ttl
        if self._auto_renew:
            self._renewer = asyncio.create_task(self._renew_forever(), name=f"lock-{self._name}")
        return answer.token

    async def renew(self) -> None:
        """Extend the lease by ``ttl`` from now (done automatically with ``auto_renew``).

        Raises:
            LeaseExpired: the lease had run out (the lock may be someone else's).
            CoordinationError: not held, or the entity did not answer in time.
        """
        token = self._token
        if token is None:
            raise CoordinationError(f"lock {self._name!r} is not held")
        sent = asyncio.get_running_loop().time()
        answer = await self._ask(
            lambda reply_to: Renew(self._owner, token, reply_to), self._ttl, CoordinationError
        )
        if isinstance(answer, LeaseGone):
            self._valid_until = 0.0
            raise LeaseExpired(answer.reason)
        self._valid_until = sent + self._ttl

    async def release(self) -> None:
        """Give the lock back; the next waiter gets it at once.

        Raises:
            LeaseExpired: the lease had already run out: the release is refused (the lock may
                have been granted again; work done under this token may have been fenced).
            CoordinationError: not held, or the entity did not answer in time.
        """
        token = self._token
        if token is None:
            raise CoordinationError(f"lock {self._name!r} is not held")
        await self._stop_renewing()
        self._token = None
        self._valid_until = 0.0
        answer = await self._ask(
            lambda reply_to: Release(self._owner, token, reply_to),
            ANSWER_GRACE,
            CoordinationError,
        )
        if isinstance(answer, LeaseGone):
            raise LeaseExpired(answer.reason)

    async def __aenter__(self) -> Self:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            try:
                await self.renew()
            except LeaseExpired:
                return
            except CoordinationError:
                if not self.held:
                    return  # no renewal got through for a whole ttl: the lease is gone

    async def _stop_renewing(self) -> None:
        task, self._renewer = self._renewer, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])  # the renewer's own CancelledError is not ours

    async def _ask(self, make: Any, timeout: float, error: type[CoordinationError]) -> Any:
        def factory(reply_to: ActorRef[Any]) -> ShardEnvelope:
            return ShardEnvelope(self._name, make(reply_to))

        try:
            return await self._system.ask(self._region, factory, timeout=timeout)
        except AskTimeout as exc:
            raise error(f"lock {self._name!r}: no answer within {timeout} s") from exc
        except CastyError as exc:
            if isinstance(exc, CoordinationError):
                raise
            raise error(f"lock {self._name!r}: {exc}") from exc
