"""Run one cluster node from the command line, printing its membership events as JSON lines.

::

    python -m casty.cluster.node --name demo --host 10.0.0.1 --port 25520 \\
        --seed 10.0.0.1:25520 --seed 10.0.0.2:25520 --quorum 2

Each line on stdout is one JSON object with ``"kind"`` and ``"t"`` (wall-clock seconds):

* ``started``: ``node`` (``host:port``) and ``incarnation``, once the node is bound;
* ``up``: ``__aenter__`` returned (this node, and the quorum, are up);
* a membership event (``MemberUp``, ``MemberLeft``, ``MemberRemoved``, ``UnreachableMember``,
  ...): ``node``, ``incarnation``, ``node_id``, ``status`` and, for removals, ``previous``;
  ``LeaderChanged`` has ``leader``;
* ``state``: the answer to the ``state`` command (members, unreachable, statistics);
* ``error``: ``__aenter__`` failed (``error`` names the exception);
* ``stopped``: the node shut down.

Commands on stdin, one per line: ``state`` (print the state), ``leave`` (leave the cluster
gracefully and exit). SIGTERM and SIGINT leave gracefully too; ``--run-for`` bounds the run.
Used by Casty's separate-process and network-namespace tests and by its cluster benchmark; it
is also a quick way to watch a cluster form.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import sys
import time
from typing import Any

from casty.actors.behaviors import Behaviors
from casty.actors.context import ActorContext
from casty.actors.events import EventStreamSubscribe
from casty.cluster.events import (
    ClusterDomainEvent,
    LeaderChanged,
    MemberEvent,
    MemberRemoved,
    ReachabilityEvent,
)
from casty.cluster.system import ClusteredActorSystem
from casty.errors import CastyError

__all__ = ["main"]


def emit(kind: str, **fields: Any) -> None:
    """Print one JSON line (flushed: a reading process sees it at once)."""
    print(json.dumps({"kind": kind, "t": time.time(), **fields}), flush=True)


def describe(event: ClusterDomainEvent) -> dict[str, Any]:
    """The JSON fields of a membership event."""
    if isinstance(event, LeaderChanged):
        return {"leader": str(event.leader) if event.leader is not None else None}
    if isinstance(event, MemberEvent | ReachabilityEvent):
        member = event.member
        fields: dict[str, Any] = {
            "node": str(member.address),
            "incarnation": member.unique_address.incarnation,
            "node_id": member.node_id,
            "status": member.status.value,
        }
        if isinstance(event, MemberRemoved):
            fields["previous"] = event.previous_status.value
        return fields
    return {}


def print_state(system: ClusteredActorSystem) -> None:
    cluster = system.cluster
    stats = cluster.statistics()
    emit(
        "state",
        node=str(system.node_address),
        members=[[str(m.address), m.node_id, m.status.value] for m in cluster.members],
        unreachable=[str(m.address) for m in cluster.unreachable],
        leader=str(cluster.leader) if cluster.leader is not None else None,
        downed=cluster.is_downed,
        removed=cluster.is_removed,
        statistics=dataclasses.asdict(stats),
    )


async def read_commands(system: ClusteredActorSystem, stop: asyncio.Event) -> None:
    """Handle stdin commands until end of input (which leaves the node running)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except (OSError, ValueError):
        return  # stdin is a file or /dev/null, which the event loop cannot watch: no commands
    while line := await reader.readline():
        command = line.decode(errors="replace").strip()
        if command == "state":
            print_state(system)
        elif command == "leave":
            stop.set()


async def run(args: argparse.Namespace) -> int:
    system = ClusteredActorSystem(
        args.name,
        host=args.host,
        port=args.port,
        node_id=args.node_id,
        seed_nodes=args.seed if args.seed else None,
        required_quorum=args.quorum,
    )

    def on_event(ctx: ActorContext[Any], event: ClusterDomainEvent) -> Any:
        emit(type(event).__name__, **describe(event))
        return Behaviors.same()

    printer = system.spawn(Behaviors.receive(on_event), "event-printer")
    system.event_stream.tell(EventStreamSubscribe(ClusterDomainEvent, printer))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await system.start()
        emit("started", node=str(system.node_address), incarnation=system.incarnation)
        await system.__aenter__()
    except (CastyError, OSError) as exc:
        emit("error", error=type(exc).__name__, message=str(exc))
        await system.shutdown()
        return 1
    emit("up", members=len(system.cluster.up_members))
    commands = asyncio.create_task(read_commands(system, stop)) if args.commands else None
    try:
        async with asyncio.timeout(args.run_for):
            await stop.wait()
    except TimeoutError:
        pass
    finally:
        if commands is not None:
            commands.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await commands
        await system.shutdown()
        emit("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the node until it is told to stop."""
    parser = argparse.ArgumentParser(prog="python -m casty.cluster.node", description=__doc__)
    parser.add_argument("--name", default="casty", help="actor system name")
    parser.add_argument("--host", default="127.0.0.1", help="host to bind and advertise")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: any)")
    parser.add_argument("--node-id", default=None, help="the member's node_id")
    parser.add_argument("--seed", action="append", default=[], help="seed host:port (repeat)")
    parser.add_argument("--quorum", type=int, default=None, help="required_quorum")
    parser.add_argument("--run-for", type=float, default=None, help="seconds before leaving")
    parser.add_argument(
        "--no-commands",
        dest="commands",
        action="store_false",
        help="do not read commands from stdin",
    )
    parser.add_argument("--log-level", default="WARNING", help="logging level (stderr)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
