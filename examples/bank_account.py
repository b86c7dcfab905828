"""An event-sourced bank account on SQLite: its balance survives a restart.

    python examples/bank_account.py

Deposits and withdrawals arrive as asks; each reply is sent only once the event is durable in
the SQLite file. A withdrawal larger than the balance is rejected without storing anything.
Then the actor system and the journal are shut down, a new system opens a new journal over the
same file, and the account recovers its balance from the stored events (and a snapshot).
Prints what happens and exits 0.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from casty.abc import Journal
from casty.actors import ActorContext, ActorRef, ActorSystem, Behavior, Behaviors
from casty.errors import PersistFailed
from casty.journals import as_journal
from casty.persistence import SnapshotPolicy

# -- commands (messages) and replies -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deposit:
    amount: int
    reply_to: ActorRef[Reply]


@dataclass(frozen=True, slots=True)
class Withdraw:
    amount: int
    reply_to: ActorRef[Reply]


@dataclass(frozen=True, slots=True)
class GetBalance:
    reply_to: ActorRef[Reply]


Command = Deposit | Withdraw | GetBalance


@dataclass(frozen=True, slots=True)
class Accepted:
    balance: int


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str


Reply = Accepted | Rejected

# -- events and state: what is stored, and what it folds into ------------------------------------


@dataclass(frozen=True, slots=True)
class Deposited:
    amount: int


@dataclass(frozen=True, slots=True)
class Withdrawn:
    amount: int


@dataclass(frozen=True, slots=True)
class Account:
    balance: int = 0


def on_event(account: Account, event: Deposited | Withdrawn) -> Account:
    """Pure: runs when a command persists, and again for every stored event on recovery."""
    match event:
        case Deposited(amount):
            return Account(account.balance + amount)
        case Withdrawn(amount):
            return Account(account.balance - amount)


def on_command(ctx: ActorContext[Command], account: Account, command: Command) -> Behavior[Command]:
    """Decide: validate the command against the state, then persist events (or not)."""

    def reply_accepted(reply_to: ActorRef[Reply]) -> Callable[[Account], None]:
        return lambda new_state: reply_to.tell(Accepted(new_state.balance))

    def reply_failed(reply_to: ActorRef[Reply]) -> Callable[[PersistFailed], None]:
        return lambda error: reply_to.tell(Rejected(f"not stored: {error.__cause__}"))

    match command:
        case Deposit(amount, reply_to) | Withdraw(amount, reply_to) if amount <= 0:
            reply_to.tell(Rejected(f"the amount must be positive, got {amount}"))
            return Behaviors.same()
        case Deposit(amount, reply_to):
            return Behaviors.persisted(
                Deposited(amount),
                then=reply_accepted(reply_to),  # only once the event is in the file
                on_failure=reply_failed(reply_to),
            )
        case Withdraw(amount, reply_to) if amount > account.balance:
            reply_to.tell(Rejected(f"insufficient funds: balance {account.balance}"))
            return Behaviors.same()
        case Withdraw(amount, reply_to):
            return Behaviors.persisted(
                Withdrawn(amount),
                then=reply_accepted(reply_to),
                on_failure=reply_failed(reply_to),
            )
        case GetBalance(reply_to):
            # Answer with durable state only: wait for any event still being written.
            return Behaviors.persisted((), then=reply_accepted(reply_to))


def bank_account(account_id: str, journal: Journal) -> Behavior[Command]:
    return Behaviors.event_sourced(
        entity_id=account_id,
        entity_type="Account",  # persistence id "Account|<account_id>"
        journal=journal,
        initial_state=Account(),
        on_event=on_event,
        on_command=on_command,
        snapshot_policy=SnapshotPolicy(every=3),
    )


# -- the demo -------------------------------------------------------------------------------------


async def run_first_life(url: str) -> int:
    async with as_journal(url) as journal, ActorSystem(name="bank") as system:
        account = system.spawn(bank_account("alice", journal), "alice")
        steps: list[tuple[type[Deposit] | type[Withdraw], int]] = [
            (Deposit, 100),
            (Withdraw, 30),
            (Withdraw, 500),  # rejected: more than the balance
            (Deposit, -5),  # rejected: not a positive amount
            (Deposit, 25),
            (Withdraw, 20),
        ]
        for kind, amount in steps:
            request = functools.partial(kind, amount)  # request(reply_to) builds the command
            reply = await system.ask(account, request, timeout=5.0)
            print(f"{kind.__name__}({amount}) -> {reply}")
        final = await system.ask(account, GetBalance, timeout=5.0)
        print(f"balance before the restart: {final.balance}")
        return int(final.balance)


async def run_second_life(url: str) -> int:
    # A new system and a new journal object over the same file, as after a process restart.
    async with as_journal(url) as journal, ActorSystem(name="bank") as system:
        account = system.spawn(bank_account("alice", journal), "alice")
        recovered = await system.ask(account, GetBalance, timeout=5.0)
        print(f"balance after the restart: {recovered.balance} (recovered from the journal)")
        snapshot = await journal.load_snapshot("Account|alice")
        if snapshot is not None:
            print(f"  newest snapshot at event {snapshot.sequence_nr}, events after it replayed")
        return int(recovered.balance)


async def main() -> int:
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'bank.db'}"
        before = await run_first_life(url)
        after = await run_second_life(url)
    if after != before:
        print(f"recovery mismatch: {after} != {before}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
