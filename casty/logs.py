"""The node id in every log record.

Once a `ClusteredActorSystem` has started, every `logging.LogRecord` created in the process
carries a ``node_id`` attribute: the id of the node whose actors (timers, tasks, handlers)
logged it, else, when one node runs in the process (or, none running, the last one ran),
that node's id, else ``"-"``. Use it in a
format: ``logging.basicConfig(format="%(asctime)s %(node_id)s %(name)s %(message)s")``.

It is set by a `logging` record factory wrapped around the one in place (installed once), so
it holds for casty's loggers and for the user's own loggers called from actors alike.
"""

from __future__ import annotations

import logging
from contextvars import Context, ContextVar
from typing import Any

__all__ = ["UNKNOWN_NODE", "current_node_id", "install", "node_started", "node_stopped"]

#: ``node_id`` of a record logged outside any node, with several nodes in the process.
UNKNOWN_NODE = "-"

_NODE_ID: ContextVar[str | None] = ContextVar("casty_node_id", default=None)
_running: dict[int, str] = {}  # a token per started node -> its node id
_last: list[str] = []  # the id of the node that stopped last, while none runs
_installed = False


def current_node_id() -> str:
    """The node id a record logged here would carry."""
    node_id = _NODE_ID.get()
    if node_id is not None:
        return node_id
    if len(_running) == 1:
        return next(iter(_running.values()))
    if not _running and _last:
        return _last[0]
    return UNKNOWN_NODE


def node_started(token: int, node_id: str, context: Context) -> None:
    """Record a started node: ``context`` is the one its actors run in."""
    install()
    _running[token] = node_id
    try:
        context.run(_NODE_ID.set, node_id)
    except RuntimeError:  # ``context`` is the one running this code
        _NODE_ID.set(node_id)


def node_stopped(token: int) -> None:
    """Forget a stopped node (idempotent)."""
    node_id = _running.pop(token, None)
    if node_id is not None:
        _last[:] = [node_id]


def install() -> None:
    """Add ``node_id`` to every log record from now on (idempotent; a node does it when it
    starts, a program that formats ``%(node_id)s`` before that calls it first)."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.node_id = current_node_id()
        return record

    logging.setLogRecordFactory(factory)
