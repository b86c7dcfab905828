"""What both chaos tests share: node processes, the client workload, and the final read.

The workload runs wherever a `ClusterClient` can reach the nodes: in the test process (kill
variant) or in a client process inside a netlab host (``chaos_client.py``, partition variant).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from chaos_domain import NUM_SHARDS, TYPE_NAME, Acked, Failed, Increment, Read, State

from casty import ShardEnvelope
from casty.client import ClusterClient
from casty.errors import ActorError
from casty.testing import check_history, read_history
from casty.testing.history import FAIL, OK, UNKNOWN, HistoryRecorder

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
KEYS = [f"counter-{i}" for i in range(50)]
ASK_TIMEOUT = 3.0  # seconds a client waits for an increment's answer (ack_timeout is 2.0)


class ChaosNode:
    """One ``chaos_node.py`` process; restartable over the same port and SQLite file."""

    def __init__(
        self, index: int, host: str, port: int, seeds: Sequence[str], db: Path, logs: Path,
        prefix: Sequence[str] = (),
    ) -> None:  # fmt: skip
        self.index = index
        self.host, self.port = host, port
        self.seeds = list(seeds)
        self.db, self.logs = db, logs
        self.prefix = list(prefix)
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self, timeout: float = 30.0) -> None:
        """Start the process and wait for its ``up`` line."""
        self.starts += 1
        seeds = [arg for seed in self.seeds for arg in ("--seed", seed)]
        stderr = self.logs / f"node-{self.index}.{self.starts}.stderr"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with stderr.open("wb") as err:
            self.process = await asyncio.create_subprocess_exec(
                *self.prefix, sys.executable, str(HERE / "chaos_node.py"),
                "--host", self.host, "--port", str(self.port), "--db", str(self.db),
                "--node-id", f"n{self.index}", *seeds,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err,
                env=env,
            )  # fmt: skip
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                line = await self.process.stdout.readline()
        except TimeoutError:
            line = b""
        if not line or json.loads(line).get("kind") != "up":
            tail = stderr.read_text(errors="replace")[-3000:]
            raise AssertionError(f"node {self.index} did not come up:\n{tail}")

    async def kill(self) -> None:
        """SIGKILL the process (the node and everything in it) and reap it."""
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL)
            await process.wait()
        if process is not None and process.stdin is not None:
            process.stdin.close()


async def kill_all(nodes: Sequence[ChaosNode]) -> None:
    for node in nodes:
        await node.kill()


async def run_workload(
    client: ClusterClient,
    recorder: HistoryRecorder,
    stop: asyncio.Event,
    *,
    workers: int = 8,
    pause: float = 0.01,
    seed: int = 0,
) -> None:
    """``workers`` tasks send increments with unique op ids until ``stop``; all are recorded.

    Each worker waits for an answer before its next op (``pause`` seconds of pacing between
    ops): an `Acked` is ``ok``, a `Failed` that was refused for sure is ``fail``, anything else
    (a `Failed` of unknown result, no answer within `ASK_TIMEOUT`, a request dropped by a
    stopping entity) is ``unknown``.
    """
    ref = await client.shard_ref(TYPE_NAME, num_shards=NUM_SHARDS)

    async def worker(w: int) -> None:
        rng = random.Random(seed * 1000 + w)
        for n in itertools.count():
            if stop.is_set():
                return
            op, key = f"w{w}-{n}", rng.choice(KEYS)
            recorder.invoke(op, key)
            try:
                reply = await client.ask(
                    ref,
                    lambda r, key=key, op=op: ShardEnvelope(key, Increment(op, r)),
                    timeout=ASK_TIMEOUT,
                )
            except ActorError as exc:  # no answer in time, or the request was dropped
                recorder.complete(op, UNKNOWN, type(exc).__name__)
            else:
                if isinstance(reply, Acked) and reply.op == op:
                    recorder.complete(op, OK)
                elif isinstance(reply, Failed) and reply.op == op:
                    recorder.complete(op, FAIL if reply.refused else UNKNOWN, reply.error)
                else:
                    recorder.complete(op, UNKNOWN, f"unexpected answer {reply!r}")
            await asyncio.sleep(pause)  # pacing of the load, not synchronisation

    async with asyncio.TaskGroup() as group:
        for w in range(workers):
            group.create_task(worker(w))


async def read_all(client: ClusterClient, timeout: float = 40.0) -> dict[str, list[str]]:
    """Every counter's applied op ids, each read from its primary (retried until ``timeout``)."""
    ref = await client.shard_ref(TYPE_NAME, num_shards=NUM_SHARDS)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    limit = asyncio.Semaphore(10)

    async def read(key: str) -> list[str]:
        async with limit:
            while True:
                try:
                    state: State = await client.ask(
                        ref, lambda r: ShardEnvelope(key, Read(r)), timeout=3.0
                    )
                    return list(state.ops)
                except ActorError:
                    await asyncio.sleep(0.1)  # pacing of the retries
                    if loop.time() > deadline:
                        raise

    states = await asyncio.gather(*(read(k) for k in KEYS))
    return dict(zip(KEYS, states, strict=True))


def check_run(
    history: Path, final: dict[str, list[str]], faults: Sequence[object], at_least: int
) -> None:
    """Check the ``history`` file against the ``final`` reads: no lost, duplicated or phantom
    op, and at least ``at_least`` ``faults`` (printed) and 200 acknowledged ops, for the run
    to mean anything."""
    report = check_history(read_history(history), final)
    print(report)
    print(f"faults: {len(faults)} ({faults})")
    assert len(faults) >= at_least, f"the nemesis made too few faults to mean anything: {faults}"
    assert report.outcomes.get("ok", 0) >= 200, f"too few acknowledged ops:\n{report}"
    assert report.clean, str(report)
