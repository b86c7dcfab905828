"""Cluster nodes in separate processes (``python -m casty.cluster.node``), read as JSON lines.

Kept in a plain module so the ``test_process_*`` files and the benchmark can import it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from casty.cluster import ClusteredActorSystem
from casty.testing import wait_until

ROOT = Path(__file__).resolve().parents[2]


class NodeProcess:
    """One node process; its stdout lines are collected as dicts by a reader task.

    ``program`` is what Python runs (a node of ``casty.cluster.node`` unless told otherwise),
    with ``args``; ``prefix`` comes before the interpreter (``netlab exec HOST``)."""

    def __init__(
        self,
        args: Sequence[str],
        stderr_path: Path,
        prefix: Sequence[str] = (),
        program: Sequence[str] = ("-m", "casty.cluster.node"),
    ) -> None:
        self.args = list(args)
        self.prefix = list(prefix)
        self.program = list(program)
        self.stderr_path = stderr_path
        self.lines: list[dict[str, Any]] = []
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with self.stderr_path.open("wb") as stderr:
            self.process = await asyncio.create_subprocess_exec(
                *self.prefix,
                sys.executable,
                *self.program,
                *self.args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=env,
            )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(line))

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [
            line
            for line in self.lines
            if line["kind"] == kind and all(line.get(k) == v for k, v in match.items())
        ]

    def first(self, kind: str, **match: Any) -> dict[str, Any] | None:
        found = self.of(kind, **match)
        return found[0] if found else None

    def command(self, text: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")

    async def state(self, timeout: float = 10.0) -> dict[str, Any]:
        """Ask the node for its state and return the answer."""
        before = len(self.of("state"))
        self.command("state")
        await wait_until(lambda: len(self.of("state")) > before, timeout)
        return self.of("state")[-1]

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        os.kill(self.process.pid, sig)

    async def stop(self, timeout: float = 15.0) -> None:
        """Ask the node to leave and exit; kill it if it does not within ``timeout``."""
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.terminate()
            try:
                async with asyncio.timeout(timeout):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            await self._reader
        if process.stdin is not None:
            process.stdin.close()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


async def report_up_until_stdin_closes(system: ClusteredActorSystem) -> None:
    """In a node process: print ``{"kind": "up", "node": ...}``, then return once stdin
    closes (the parent is done, or gone)."""
    print(json.dumps({"kind": "up", "node": str(system.node_address)}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():
        pass


async def wait_lines(
    nodes: Sequence[NodeProcess], predicate: Callable[[NodeProcess], bool], timeout: float
) -> None:
    """Wait until ``predicate`` holds for every node, or fail showing their stderr."""
    try:
        await wait_until(lambda: all(predicate(n) for n in nodes), timeout, interval=0.02)
    except TimeoutError as exc:
        logs = "\n".join(f"--- {n.args}\n{n.stderr()[-2000:]}" for n in nodes)
        raise AssertionError(f"{exc}\n{logs}") from None


def up_members(node: NodeProcess) -> set[str]:
    """Addresses this node last reported as up (from its event lines)."""
    status: dict[str, str] = {}
    for line in node.lines:
        if "node" in line and line["kind"].startswith("Member"):
            status[line["node"]] = line["status"]
    return {address for address, s in status.items() if s == "up"}
