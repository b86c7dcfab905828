"""`DemoCluster`: node processes of the demo on loopback, started, killed and restarted.

Each node is ``python -m casty.demo.node`` in its own process, on a free port of 127.0.0.1,
with every node's address as its seeds. Journals: one SQLite file per node in ``workdir``
(``node-<n>.db``, the embedded default), or one PostgreSQL database shared by all nodes.
A node's stderr goes to ``workdir/node-<n>.log`` (appended to across restarts).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import casty
from casty.abc import Address
from casty.errors import CastyError
from casty.testing.ports import free_ports

__all__ = ["DemoCluster", "free_ports", "last_error"]

HOST = "127.0.0.1"
_ROOT = str(Path(casty.__file__).resolve().parents[1])  # children run this same casty


class DemoCluster:
    """``size`` demo node processes; node ``n`` (0-based) is named ``node-<n + 1>``.

    Args:
        workdir: the folder for SQLite files and logs (it must exist).
        journal: a ``postgresql://`` URL shared by every node, or None for one SQLite file
            per node in ``workdir``.
        shards: the ``tasks`` type's shard count.
        size: node processes (the cluster forms with ``required_quorum=size``).
        start_timeout: seconds a node may take to print that it is up.
        stop_timeout: seconds a SIGTERMed node may take to leave and exit before it is killed.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        journal: str | None = None,
        shards: int = 64,
        size: int = 3,
        start_timeout: float = 30.0,
        stop_timeout: float = 20.0,
    ) -> None:
        self.workdir = workdir
        self.shared_journal = journal
        self.shards = shards
        self.size = size
        self.ports = free_ports(size)
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._processes: list[asyncio.subprocess.Process | None] = [None] * size

    def address(self, n: int) -> Address:
        """Node ``n``'s address (the same across restarts)."""
        return Address(HOST, self.ports[n])

    def node_id(self, n: int) -> str:
        """Node ``n``'s node id, ``node-<n + 1>``."""
        return f"node-{n + 1}"

    def journal_url(self, n: int) -> str:
        """Node ``n``'s journal URL (its SQLite file, or the shared PostgreSQL URL)."""
        if self.shared_journal is not None:
            return self.shared_journal
        return f"sqlite:///{self.workdir / f'node-{n + 1}.db'}"

    def log_path(self, n: int) -> Path:
        """Where node ``n``'s stderr goes."""
        return self.workdir / f"node-{n + 1}.log"

    def running(self, n: int) -> bool:
        """Whether node ``n``'s process was started and has not exited."""
        process = self._processes[n]
        return process is not None and process.returncode is None

    async def start_all(self) -> None:
        """Start every node at once and wait until each says it is up (the quorum formed).

        Raises:
            CastyError: a node exited or was not up within ``start_timeout``.
        """
        await asyncio.gather(*(self.start(n) for n in range(self.size)))

    async def start(self, n: int) -> None:
        """Start node ``n`` and wait until it is up.

        Raises:
            CastyError: the node exited or was not up within ``start_timeout``; its log is named.
        """
        if self.running(n):
            raise CastyError(f"{self.node_id(n)} is already running")
        seeds = ",".join(f"{HOST}:{port}" for port in self.ports)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        with self.log_path(n).open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "casty.demo.node",
                "--port",
                str(self.ports[n]),
                "--seeds",
                seeds,
                "--journal",
                self.journal_url(n),
                "--node-id",
                self.node_id(n),
                "--shards",
                str(self.shards),
                "--quorum",
                str(self.size),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=env,
            )
        self._processes[n] = process
        assert process.stdout is not None
        try:
            async with asyncio.timeout(self._start_timeout):
                line = await process.stdout.readline()
                status = None if line else await process.wait()  # no line: it exited
        except TimeoutError:
            self.kill(n)
            raise CastyError(
                f"{self.node_id(n)} did not start within {self._start_timeout} s; "
                f"see {self.log_path(n)}"
            ) from None
        if status is not None:
            raise CastyError(
                f"{self.node_id(n)} exited with status {status} before it was up: "
                f"{last_error(self.log_path(n))}; see {self.log_path(n)}"
            )
        if not line.startswith(b"{") or "up" not in json.loads(line):
            self.kill(n)
            raise CastyError(
                f"{self.node_id(n)} printed {line[:200]!r} instead of that it is up; "
                f"see {self.log_path(n)}"
            )

    def kill(self, n: int) -> None:
        """SIGKILL node ``n`` (a crash: no leave, no handoff); nothing if it is not running."""
        _send(self._processes[n], signal.SIGKILL)

    async def stop(self, n: int) -> int:
        """SIGTERM node ``n`` (it leaves gracefully) and wait for its exit; return its status.

        A node still running after ``stop_timeout`` is killed (status -9).
        """
        process = self._processes[n]
        if process is None:
            return 0
        _send(process, signal.SIGTERM)
        try:
            async with asyncio.timeout(self._stop_timeout):
                return await process.wait()
        except TimeoutError:
            self.kill(n)
            return await process.wait()

    async def close(self, *, kill: bool = False) -> None:
        """Stop every node still running: SIGTERM, then SIGKILL after ``stop_timeout``; or,
        with ``kill``, SIGKILL at once (nothing left to hand off: an interrupted run)."""
        if kill:
            for n in range(self.size):
                self.kill(n)
            await asyncio.gather(*(p.wait() for p in self._processes if p is not None))
        else:
            await asyncio.gather(*(self.stop(n) for n in range(self.size)))


def _send(process: asyncio.subprocess.Process | None, sig: signal.Signals) -> None:
    """Signal ``process`` unless it exited. Not `Process.send_signal`: that polls the child
    first, which reaps one that just exited under asyncio's child watcher (which then logs
    "Unknown child process")."""
    if process is not None and process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)


def last_error(log: Path) -> str:
    """The last line of ``log`` that is not indented (a traceback's exception, a log record),
    or ``"(its log is empty)"``."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(its log cannot be read: {exc})"
    for line in reversed(lines):
        if line.strip() and not line[0].isspace():
            return line.strip()[:500]
    return "(its log is empty)"
