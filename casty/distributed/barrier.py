"""The barrier entity (sharded type ``"casty-barrier"``) and the waiting side of a barrier.

One entity per barrier name counts the arrivals of the current round (its *generation*). When
``parties`` have arrived it answers every one of them in the same handler run, so nobody is
released before the last arrival; the next arrival opens the next round. The round breaks, and
every waiter gets `BarrierBroken`, when a waiter's timeout passes (as Java's
``CyclicBarrier.await(timeout)``: a timeout breaks the barrier for all), or when the node of a
waiter is downed or removed from the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from casty.actors.behaviors import Behavior, Behaviors
from casty.actors.context import ActorContext
from casty.actors.ref import ActorRef
from casty.actors.timers import TimerScheduler
from casty.cluster.events import MemberDowned, MemberRemoved
from casty.errors import BarrierBroken, ConfigurationError

if TYPE_CHECKING:
    from casty.cluster.system import ClusteredActorSystem
    from casty.distributed.channel import Channel

__all__ = [
    "Arrive",
    "BarrierPassed",
    "BarrierRefused",
    "BarrierState",
    "BarrierTripped",
    "GetBarrierState",
    "await_barrier",
    "barrier_entity",
]

#: Seconds a waiter keeps waiting for the entity's answer past its own timeout (the entity
#: may be moving to another node); past it the waiter breaks on its own.
ANSWER_GRACE = 5.0


@dataclass(frozen=True, slots=True)
class Arrive:
    """A participant arrives; answered `BarrierPassed`, `BarrierTripped` or `BarrierRefused`.

    Attributes:
        parties: how many participants the round needs (the same for every participant).
        node: the participant's node (``str(UniqueAddress)``), watched while it waits.
        timeout: seconds the participant waits at most (> 0).
        reply_to: where the answer goes.
    """

    parties: int
    node: str
    timeout: float
    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class BarrierPassed:
    """Every party arrived: the waiters of round ``generation`` (0-based) are released."""

    generation: int


@dataclass(frozen=True, slots=True)
class BarrierTripped:
    """Round ``generation`` broke (``reason`` says why); every waiter of it gets this."""

    generation: int
    reason: str


@dataclass(frozen=True, slots=True)
class BarrierRefused:
    """This arrival does not fit the round (another ``parties`` count); the round goes on."""

    reason: str


@dataclass(frozen=True, slots=True)
class GetBarrierState:
    """Ask a barrier's entity for its current round; answered `BarrierState`."""

    reply_to: ActorRef[Any]


@dataclass(frozen=True, slots=True)
class BarrierState:
    """The current round: its ``generation`` and how many participants are ``waiting``."""

    generation: int
    waiting: int


@dataclass(frozen=True, slots=True)
class _Deadline:
    generation: int


@dataclass(slots=True)
class _Round:
    generation: int = 0
    parties: int = 0
    waiters: list[Arrive] = field(default_factory=list)
    deadline: float | None = None


def barrier_entity(entity_id: str) -> Behavior[Any]:
    """The entity of barrier ``entity_id``: see the module docstring."""

    def setup(ctx: ActorContext[Any]) -> Behavior[Any]:
        system: ClusteredActorSystem = ctx.system  # type: ignore[assignment]
        system.cluster.subscribe(ctx.self, MemberDowned, MemberRemoved)
        clock = system.clock

        def with_timers(timers: TimerScheduler[Any]) -> Behavior[Any]:
            current = _Round()

            def finish(answer: object) -> None:
                for waiter in current.waiters:
                    waiter.reply_to.tell(answer)
                timers.cancel("deadline")
                current.generation += 1
                current.parties = 0
                current.waiters = []
                current.deadline = None

            def receive(ctx: ActorContext[Any], msg: Any) -> Behavior[Any]:
                if isinstance(msg, Arrive):
                    if current.waiters and msg.parties != current.parties:
                        msg.reply_to.tell(
                            BarrierRefused(
                                f"barrier {entity_id!r} round {current.generation} needs "
                                f"{current.parties} parties, this arrival says {msg.parties}"
                            )
                        )
                        return Behaviors.same()
                    current.parties = msg.parties
                    current.waiters.append(msg)
                    if len(current.waiters) >= current.parties:
                        finish(BarrierPassed(current.generation))
                        return Behaviors.same()
                    deadline = clock.monotonic() + msg.timeout
                    if current.deadline is None or deadline < current.deadline:
                        current.deadline = deadline
                        timers.start_single_timer(
                            "deadline", _Deadline(current.generation), msg.timeout
                        )
                elif isinstance(msg, GetBarrierState):
                    msg.reply_to.tell(BarrierState(current.generation, len(current.waiters)))
                elif isinstance(msg, _Deadline):
                    if msg.generation == current.generation and current.waiters:
                        finish(
                            BarrierTripped(
                                current.generation,
                                f"barrier {entity_id!r} timed out with "
                                f"{len(current.waiters)} of {current.parties} parties",
                            )
                        )
                elif isinstance(msg, MemberDowned | MemberRemoved):
                    gone = str(msg.member.unique_address)
                    if any(w.node == gone for w in current.waiters):
                        finish(
                            BarrierTripped(
                                current.generation,
                                f"barrier {entity_id!r}: the node {gone} of a participant "
                                f"was {type(msg).__name__.removeprefix('Member').lower()}",
                            )
                        )
                return Behaviors.same()

            return Behaviors.receive(receive)

        return Behaviors.with_timers(with_timers)

    return Behaviors.setup(setup)


async def await_barrier(
    channel: Channel,
    type_name: str,
    name: str,
    parties: int,
    timeout: float,
) -> int:
    """Arrive at barrier ``name`` (an entity of ``type_name``) and wait for the round.

    The arrival names ``channel.identity`` as the participant's node: a member's node is
    watched (downed or removed breaks the round); a client's never matches, so a client
    participant that dies breaks the round only through the timeout.

    Returns:
        The round's generation (0 for the first round of this barrier's entity).

    Raises:
        ConfigurationError: bad ``name``, ``parties`` or ``timeout``, or ``parties`` differs
            from the count of the participants already waiting.
        BarrierBroken: the timeout passed, a waiter's node was downed or removed, or the
            barrier's entity did not answer within ``timeout`` + `ANSWER_GRACE` seconds.
    """
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"a barrier name is a non-empty string, got {name!r}")
    if isinstance(parties, bool) or not isinstance(parties, int) or parties < 1:
        raise ConfigurationError(f"parties must be an int >= 1, got {parties!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ConfigurationError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    node = channel.identity
    answer = await channel.ask(
        type_name,
        name,
        lambda reply_to: Arrive(parties, node, float(timeout), reply_to),
        timeout + ANSWER_GRACE,
        BarrierBroken,
        f"barrier {name!r}",
    )
    if isinstance(answer, BarrierPassed):
        return answer.generation
    if isinstance(answer, BarrierTripped):
        raise BarrierBroken(answer.reason)
    if isinstance(answer, BarrierRefused):
        raise ConfigurationError(answer.reason)
    raise BarrierBroken(f"barrier {name!r}: unexpected answer {answer!r}")
