"""Leases: the entity behind locks and semaphores, and `Lease`, the holder's side of one grant.

One entity per name (sharded types ``"casty-lock"`` and ``"casty-semaphore"``, the same code)
holds up to ``permits`` leases (holder, fencing token, expiry) and a FIFO queue of waiters; a
lock is the case ``permits == 1``. A lease lasts ``ttl`` seconds from its grant or last
renewal, measured on the clock of the node that runs the entity (``clock.monotonic``); when it
runs out the entity frees the permit and grants the next waiter. Each grant carries a fencing
token, larger than every token granted before for that name (Kleppmann, "How to do distributed
locking", 2016): a resource that remembers the largest token it saw and refuses smaller ones is
safe even when a paused holder believes it still holds an expired lease.

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
    ConfigurationError,
    CoordinationError,
    LeaseExpired,
)

if TYPE_CHECKING:
    from casty.distributed.channel import Channel

__all__ = [
    "Acquire",
    "Granted",
    "Lease",
    "LeaseGone",
    "NotGranted",
    "Release",
    "Released",
    "Renew",
    "Renewed",
    "check_seconds",
    "lease_entity",
]

#: Seconds an ask waits for the entity past its own deadline (the entity may be moving).
ANSWER_GRACE = 5.0


@dataclass(frozen=True, slots=True)
class Acquire:
    """Ask for one of ``permits`` permits; answered `Granted`, or `NotGranted` after ``wait``."""

    owner: str
    ttl: float
    wait: float
    reply_to: ActorRef[Any]
    permits: int = 1


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
    """The permit is the asker's, with fencing ``token``, for ``ttl`` seconds unless renewed.

    ``waited`` is how long the request queued on the entity (seconds, entity clock): the
    lease started at least that long after the request was sent.
    """

    token: int
    ttl: float
    waited: float = 0.0


@dataclass(frozen=True, slots=True)
class NotGranted:
    """No permit came free for the whole wait (or ``refused``: a mismatched permit count)."""

    reason: str
    refused: bool = False


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
class _Held:
    owner: str
    ttl: float
    expires: float


def lease_entity(entity_id: str) -> Behavior[Any]:
    """The entity of lock or semaphore ``entity_id``: see the module docstring."""

    def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        clock = ctx.system.clock
        base = clock.time_ms() << 20

        def with_timers(timers: TimerScheduler[Any]) -> Behavior[Any]:
            issued = 0
            permits = 0  # set by the first request; 0 while nobody holds or waits
            leases: dict[int, _Held] = {}
            waiters: deque[tuple[float, Acquire]] = deque()  # (arrival, request)

            def grant(request: Acquire, arrived: float) -> None:
                nonlocal issued
                issued += 1
                token = base + issued
                now = clock.monotonic()
                leases[token] = _Held(request.owner, request.ttl, now + request.ttl)
                timers.cancel(("wait", request.owner))
                timers.start_single_timer(("lease", token), _LeaseEnd(token), request.ttl)
                request.reply_to.tell(Granted(token, request.ttl, now - arrived))

            def free(token: int) -> None:
                nonlocal permits
                del leases[token]
                timers.cancel(("lease", token))
                while waiters and len(leases) < permits:
                    arrived, request = waiters.popleft()
                    grant(request, arrived)
                if not leases and not waiters:
                    permits = 0

            def holds(owner: str, token: int) -> bool:
                held = leases.get(token)
                return held is not None and held.owner == owner and clock.monotonic() < held.expires

            def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
                nonlocal permits
                if isinstance(msg, Acquire):
                    now = clock.monotonic()
                    for token in [t for t, h in leases.items() if now >= h.expires]:
                        free(token)  # their lease timers are on their way; do not wait
                    if permits and msg.permits != permits:
                        msg.reply_to.tell(
                            NotGranted(
                                f"{entity_id!r} is in use with {permits} permits, "
                                f"this request says {msg.permits}",
                                refused=True,
                            )
                        )
                        return Behaviors.same()
                    permits = msg.permits
                    if len(leases) < permits and not waiters:
                        grant(msg, now)
                    else:
                        waiters.append((now, msg))
                        timers.start_single_timer(
                            ("wait", msg.owner), _WaitEnd(msg.owner), msg.wait
                        )
                elif isinstance(msg, Renew):
                    held = leases.get(msg.token)
                    if held is not None and holds(msg.owner, msg.token):
                        held.expires = clock.monotonic() + held.ttl
                        timers.start_single_timer(
                            ("lease", msg.token), _LeaseEnd(msg.token), held.ttl
                        )
                        msg.reply_to.tell(Renewed(msg.token))
                    else:
                        msg.reply_to.tell(LeaseGone(msg.token, f"{entity_id!r}: lease lost"))
                elif isinstance(msg, Release):
                    if holds(msg.owner, msg.token):
                        msg.reply_to.tell(Released(msg.token))
                        free(msg.token)
                    else:
                        msg.reply_to.tell(
                            LeaseGone(msg.token, f"{entity_id!r}: the lease had expired")
                        )
                elif isinstance(msg, _LeaseEnd):
                    held = leases.get(msg.token)
                    if held is not None:
                        if clock.monotonic() >= held.expires:
                            free(msg.token)
                        else:  # renewed meanwhile: look again when the new expiry is due
                            timers.start_single_timer(
                                ("lease", msg.token), msg, held.expires - clock.monotonic()
                            )
                elif isinstance(msg, _WaitEnd):
                    for waiter in [w for w in waiters if w[1].owner == msg.owner]:
                        waiters.remove(waiter)
                        request = waiter[1]
                        request.reply_to.tell(
                            NotGranted(f"{entity_id!r} stayed busy for {request.wait} s")
                        )
                    if not leases and not waiters:
                        permits = 0
                return Behaviors.same()

            return Behaviors.receive(receive)

        return Behaviors.with_timers(with_timers)

    return Behaviors.setup(setup)


def check_seconds(option: str, value: object, *, zero: bool = False) -> float:
    """``value`` as float seconds (> 0, or >= 0 with ``zero``); ConfigurationError otherwise."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (value >= 0 if zero else value > 0)
        or not value < 1e9
    ):
        bound = ">= 0" if zero else "> 0"
        raise ConfigurationError(f"{option} must be a number of seconds {bound}, got {value!r}")
    return float(value)


class Lease:
    """One holder's side of a leased permit of a lock or semaphore, renewed while held.

    `acquire` waits in FIFO order for a permit and returns the grant's fencing token (strictly
    increasing across grants of the same name). While held, a background task renews the lease
    every ``ttl / 3`` seconds (``auto_renew``); when the holder's process dies the renewals stop
    and the permit passes to the next waiter once the lease has run out on the entity's clock.
    A lease object is used by one task at a time and may be acquired again after `release`.

    Assumptions: the entity's node clock measures the lease; the holder considers its lease lost
    ``ttl`` seconds after sending its last successful renewal, so as long as clock rates differ
    by little, the holder stops believing before the entity grants again. Use the token for
    safety.

    Args:
        channel: how requests reach the entities (a member's or a client's).
        type_name: ``"casty-lock"`` or ``"casty-semaphore"``.
        name: the lock's or semaphore's name (the entity id).
        permits: how many holders the name admits at once (1 for a lock).
        ttl: the lease duration in seconds (> 0).
        auto_renew: renew in the background while held (False: call `renew` yourself).

    Raises:
        ConfigurationError: a bad name, permit count or ttl.
    """

    _kind = "lease"

    def __init__(
        self,
        channel: Channel,
        type_name: str,
        name: str,
        *,
        permits: int = 1,
        ttl: float,
        auto_renew: bool = True,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a {self._kind} name is a non-empty string, got {name!r}")
        if isinstance(permits, bool) or not isinstance(permits, int) or permits < 1:
            raise ConfigurationError(f"permits must be an int >= 1, got {permits!r}")
        self._channel = channel
        self._type_name = type_name
        self._name = name
        self._permits = permits
        self._ttl = check_seconds("ttl", ttl)
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
        """Wait up to ``timeout`` seconds for a permit; return the grant's fencing token.

        Cancellation while waiting leaves the request queued on the entity until its wait ends;
        a grant that arrives for nobody is held until its lease runs out (not renewed).

        Raises:
            ConfigurationError: ``timeout`` is not a number of seconds >= 0, or (semaphores)
                the name is in use with another permit count.
            CoordinationError: this object already holds a permit.
            AcquireTimeout: no permit came free (or the entity did not answer) for ``timeout``.
        """
        wait = check_seconds("timeout", timeout, zero=True)
        if self._token is not None:
            raise CoordinationError(f"{self._kind} {self._name!r} is already held by this object")
        owner = f"{self._channel.identity}/{uuid.uuid4().hex}"
        sent = asyncio.get_running_loop().time()
        answer = await self._ask(
            lambda reply_to: Acquire(owner, self._ttl, wait, reply_to, self._permits),
            wait + ANSWER_GRACE,
            AcquireTimeout,
        )
        if isinstance(answer, NotGranted):
            raise (ConfigurationError if answer.refused else AcquireTimeout)(answer.reason)
        if not isinstance(answer, Granted):
            raise CoordinationError(f"{self._kind} {self._name!r}: unexpected answer {answer!r}")
        self._owner = owner
        self._token = answer.token
        self._valid_until = sent + answer.waited + answer.ttl
        if self._auto_renew:
            self._renewer = asyncio.create_task(
                self._renew_forever(), name=f"{self._kind}-{self._name}"
            )
        return answer.token

    async def renew(self) -> None:
        """Extend the lease by ``ttl`` from now (done automatically with ``auto_renew``).

        Raises:
            LeaseExpired: the lease had run out (the permit may be someone else's).
            CoordinationError: not held, or the entity did not answer in time.
        """
        token = self._token
        if token is None:
            raise CoordinationError(f"{self._kind} {self._name!r} is not held")
        sent = asyncio.get_running_loop().time()
        answer = await self._ask(
            lambda reply_to: Renew(self._owner, token, reply_to), self._ttl, CoordinationError
        )
        if isinstance(answer, LeaseGone):
            self._valid_until = 0.0
            raise LeaseExpired(answer.reason)
        self._valid_until = sent + self._ttl

    async def release(self) -> None:
        """Give the permit back; the next waiter gets it at once.

        Raises:
            LeaseExpired: the lease had already run out: the release is refused (the permit
                may have been granted again; work done under this token may have been fenced).
            CoordinationError: not held, or the entity did not answer in time.
        """
        token = self._token
        if token is None:
            raise CoordinationError(f"{self._kind} {self._name!r} is not held")
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
        return await self._channel.ask(
            self._type_name, self._name, make, timeout, error, f"{self._kind} {self._name!r}"
        )
