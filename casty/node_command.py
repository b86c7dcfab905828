"""``casty node``: run one long-lived cluster node from ``casty.toml``.

::

    casty node --config casty.toml --port 25520 --seed 10.0.0.1:25520 --journal sqlite:///n1.db

The configuration is the file (``--config``), then the ``CASTY_<TABLE>__<KEY>`` environment
variables, then the flags (see ``docs/configuration.md``). The node starts, joins (waiting for
``required_quorum`` members when configured), optionally runs ``--app module:function``
(called with the system once the node is up; it may be a coroutine function) to spawn the
application's actors and sharded types, logs membership changes, and runs until SIGTERM or
SIGINT. Then it leaves the cluster gracefully (its shards are handed off to the remaining
members) and exits 0. Exit status 1 when the node could not start, or when ``--app``'s
function raised (the node logs the traceback, leaves, and the command ends with one
``casty: error:`` line).

Log records go to stderr with the node id (``casty.logs``); ``--log-level`` sets the level.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import logging
import signal
import sys
from typing import Any

from casty.errors import CastyError, ConfigurationError

__all__ = ["add_node", "run_node"]

log = logging.getLogger("casty.node")

LOG_FORMAT = "%(asctime)s %(levelname)s [%(node_id)s] %(name)s: %(message)s"


def add_node(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``casty node`` (the handler imports the cluster stack only when it runs)."""
    node = commands.add_parser(
        "node",
        help="run one cluster node until SIGTERM/SIGINT",
        description="Run one cluster node from casty.toml; flags override the file and the "
        "CASTY_* environment variables. SIGTERM or SIGINT leaves the cluster gracefully.",
    )
    node.add_argument("--config", metavar="PATH", help="casty.toml (default: none)")
    flag = node.add_argument
    flag("--name", dest="cluster.name", metavar="NAME", help="actor system name")
    flag("--host", dest="cluster.host", metavar="HOST", help="host to bind and advertise")
    flag("--port", dest="cluster.port", type=int, metavar="PORT", help="port to bind (0: any)")
    flag("--node-id", dest="cluster.node_id", metavar="ID", help="the member's node_id")
    flag(
        "--seed",
        dest="cluster.seeds",
        action="append",
        metavar="HOST:PORT",
        help="seed node; repeatable (replaces the file's seeds)",
    )
    flag("--role", dest="cluster.roles", action="append", metavar="ROLE", help="repeatable")
    flag("--quorum", dest="cluster.required_quorum", type=int, metavar="N", help="required_quorum")
    flag("--journal", dest="journal.url", metavar="URL", help="journal URL")
    flag("--transport", dest="transport.url", metavar="URL", help="transport URL")
    flag(
        "--prometheus-port",
        dest="metrics.prometheus_port",
        type=int,
        metavar="PORT",
        help="metrics port",
    )
    node.add_argument("--app", metavar="MODULE:FUNCTION", help="called with the system once up")
    node.add_argument(
        "--log-level", default="INFO", metavar="LEVEL", help="logging level (default INFO)"
    )
    node.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from casty import logs

    level = logging.getLevelName(args.log_level.upper())
    if not isinstance(level, int):  # getLevelName answers "Level X" for an unknown name
        raise ConfigurationError(
            f"--log-level: unknown level {args.log_level!r} "
            "(DEBUG, INFO, WARNING, ERROR or CRITICAL)"
        )
    logs.install()
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    overrides = {
        key: value
        for key, value in vars(args).items()
        if "." in key and value is not None  # the flags named after their configuration key
    }
    return asyncio.run(run_node(args.config, overrides, args.app))


def _load_app(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"--app takes MODULE:FUNCTION, got {spec!r}")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"--app {spec}: {exc}") from exc


async def run_node(config: str | None, overrides: dict[str, Any], app: str | None = None) -> int:
    """Run a node until SIGTERM/SIGINT; return the exit status.

    Raises:
        ConfigurationError: a bad configuration or ``app``.
        CastyError: ``app`` raised (the node logged the traceback and left the cluster).
    """
    from casty.actors.behaviors import Behaviors
    from casty.cluster.events import MemberEvent, ReachabilityEvent
    from casty.cluster.system import ClusteredActorSystem
    from casty.config import load_config

    node_config = load_config(config, overrides=overrides)
    setup = _load_app(app) if app else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def on_event(ctx: Any, event: MemberEvent | ReachabilityEvent) -> Any:
        member = event.member
        log.info(
            "%s: %s (%s) is %s",
            type(event).__name__,
            member.node_id,
            member.address,
            member.status.value,
        )
        return Behaviors.same()

    system = ClusteredActorSystem(config=node_config)
    failure: str | None = None  # why --app failed
    try:
        # A signal while joining (a quorum that never forms) stops the node too.
        starting = asyncio.ensure_future(system.__aenter__())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait((starting, stopping), return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            starting.cancel()  # __aenter__ shuts the system down when it fails
            with contextlib.suppress(asyncio.CancelledError, CastyError):
                await starting
            log.info("stopped before the node was up")
            return 0
        try:
            starting.result()
        except CastyError as exc:
            log.error("the node could not start: %s", exc)
            return 1
        try:
            system.cluster.subscribe(
                system.spawn(Behaviors.receive(on_event), "casty-node-events"),
                MemberEvent,
                ReachabilityEvent,
            )
            log.info(
                "node up at %s with %d member(s) up",
                system.node_address,
                len(system.cluster.up_members),
            )
            if setup is not None and app is not None:
                failure = await _run_app(setup, system, app)
            if failure is None:
                await stop.wait()
            log.info("leaving the cluster")
            left = await system.leave()
            log.info("left the cluster" if left else "leave timed out; stopping anyway")
        finally:
            await system.shutdown()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("stopped")
    if failure is not None:
        raise CastyError(failure)
    return 0


async def _run_app(setup: Any, system: Any, app: str) -> str | None:
    """Call ``--app``'s function with the system; ``None``, or why it failed (logged with
    the traceback: the node then leaves instead of serving without the application)."""
    try:
        result = setup(system)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        log.exception("--app %s failed; leaving the cluster", app)
        return f"--app {app} failed: {type(exc).__name__}: {exc}"
    return None
