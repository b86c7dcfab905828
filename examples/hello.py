"""Hello, Casty: a few local actors, request/reply, supervision and death watch.

    python examples/hello.py

Prints what happens and exits 0. Everything runs in one process; the cluster comes later.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from typing import Any

from casty.actors import (
    ActorContext,
    ActorRef,
    ActorSystem,
    Behavior,
    Behaviors,
    SupervisorStrategy,
    Terminated,
)

# -- messages: plain frozen dataclasses --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Greet:
    name: str
    reply_to: ActorRef[str]


@dataclass(frozen=True, slots=True)
class Deposit:
    amount: int


@dataclass(frozen=True, slots=True)
class GetBalance:
    reply_to: ActorRef[int]


@dataclass(frozen=True, slots=True)
class Track:
    """Ask the monitor to watch an actor and report when it stops."""

    ref: ActorRef[Any]


# -- behaviors ---------------------------------------------------------------------------------


def greeter() -> Behavior[Greet]:
    async def receive(ctx: ActorContext[Greet], msg: Greet) -> Behavior[Greet]:
        msg.reply_to.tell(f"Hello, {msg.name}!")
        return Behaviors.same()

    return Behaviors.receive(receive)


def account(balance: int = 0) -> Behavior[Deposit | GetBalance]:
    """State lives in the closure: each deposit returns the behavior for the new balance."""

    async def receive(
        ctx: ActorContext[Deposit | GetBalance], msg: Deposit | GetBalance
    ) -> Behavior[Deposit | GetBalance]:
        match msg:
            case Deposit(amount) if amount <= 0:
                raise ValueError(f"a deposit must be positive, got {amount}")
            case Deposit(amount):
                return account(balance + amount)
            case GetBalance(reply_to):
                reply_to.tell(balance)
        return Behaviors.same()

    return Behaviors.receive(receive)


def monitor(stopped: asyncio.Event) -> Behavior[Track | Terminated]:
    async def receive(
        ctx: ActorContext[Track | Terminated], msg: Track | Terminated
    ) -> Behavior[Track | Terminated]:
        match msg:
            case Track(ref):
                ctx.watch(ref)
            case Terminated(ref):
                print(f"monitor: {ref.path} has stopped")
                stopped.set()
        return Behaviors.same()

    return Behaviors.receive(receive)


async def main() -> None:
    async with ActorSystem(name="hello") as system:
        greeter_ref = system.spawn(greeter(), "greeter")
        reply = await system.ask(greeter_ref, lambda reply_to: Greet("world", reply_to))
        print(f"greeter replied: {reply}")

        # A supervised account: a failure restarts it from its initial state.
        restart = SupervisorStrategy.restart(max_restarts=3, within=60.0)
        account_ref = system.spawn(Behaviors.supervise(account(), restart), "account")
        account_ref.tell(Deposit(50))
        account_ref.tell(Deposit(25))
        balance = await system.ask(account_ref, GetBalance)
        print(f"balance after depositing 50 and 25: {balance}")

        account_ref.tell(Deposit(-5))  # the handler raises; supervision restarts the actor
        account_ref.tell(Deposit(10))
        balance = await system.ask(account_ref, GetBalance)
        print(f"balance after a failed deposit and a deposit of 10: {balance} (restarted at 0)")

        # An unsupervised actor that fails is stopped; death watch tells the monitor.
        stopped = asyncio.Event()
        monitor_ref = system.spawn(monitor(stopped), "monitor")
        fragile = system.spawn(account(), "fragile")
        monitor_ref.tell(Track(fragile))
        fragile.tell(Deposit(0))
        await asyncio.wait_for(stopped.wait(), timeout=5.0)
        fragile.tell(Deposit(1))  # a dead letter, not an exception

        print(f"dead letters so far: {system.statistics().dead_letters}")
    print("actor system shut down: every actor stopped, every task awaited")


class _OneLine(logging.Formatter):
    """Failures are logged with tracebacks; one line each is enough for this demo."""

    def formatException(self, ei: object) -> str:
        return ""


if __name__ == "__main__":
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_OneLine("log %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    asyncio.run(main())
