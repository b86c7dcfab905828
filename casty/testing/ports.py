"""Free TCP ports for tests, demos and benchmarks that start nodes on loopback."""

from __future__ import annotations

import socket

__all__ = ["free_ports"]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that were free on ``host`` a moment ago.

    Every socket is bound before any is released, so the ports differ. Another process may
    take one before it is used: fine on a test machine, where node processes need their
    ports before they start (an in-process node should bind port 0 instead).
    """
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
