"""``casty node``: three node processes from one casty.toml form a cluster; SIGTERM makes one
leave gracefully (exit 0, its shards handed to the others, the others see it removed)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from casty.testing import wait_until

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "cluster"))

from cluster_harness import free_ports  # noqa: E402

pytestmark = pytest.mark.slow

TYPE_SHARDS = 12

APP = textwrap.dedent(
    f"""
    from casty import Behaviors
    from casty.sharding import ShardEnvelope


    def setup(system):
        region = system.spawn(
            Behaviors.sharded(lambda entity_id: Behaviors.ignore(), num_shards={TYPE_SHARDS}),
            "items",
        )

        def traffic(timers):
            # Steady traffic: a shard handed off by a leaving node is allocated again at once.
            timers.start_periodic_timer("tick", "tick", 0.2)

            def tick(ctx, message):
                for i in range(40):
                    region.tell(ShardEnvelope(f"item-{{i}}", "hello"))
                return Behaviors.same()

            return Behaviors.receive(tick)

        system.spawn(Behaviors.with_timers(traffic), "traffic")
    """
)


def _start_node(args: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "casty", "node", *args],
            stdout=subprocess.DEVNULL,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
        )


def _scrape(port: int) -> dict[str, float]:
    """The samples of a node's Prometheus endpoint (0.0 when it does not answer)."""
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except OSError:
        return {}
    samples: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _sample(samples: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in samples.items() if k.startswith(prefix))


async def test_casty_node_processes_form_a_cluster_and_leave_on_sigterm(tmp_path: Path) -> None:
    ports = free_ports(6)
    node_ports, metrics_ports = ports[:3], ports[3:]
    seeds = [f"127.0.0.1:{p}" for p in node_ports]
    config = tmp_path / "casty.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [cluster]
            name = "node-test"
            seeds = {seeds!r}
            required_quorum = 3

            [sharding]
            rebalance_interval = 0.5
            """
        ).replace("'", '"')
    )
    (tmp_path / "node_app.py").write_text(APP)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    )
    processes: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / f"node{i}.log" for i in range(3)]
    try:
        for i, (port, metrics_port) in enumerate(zip(node_ports, metrics_ports, strict=True)):
            flags = ["--port", str(port), "--node-id", f"n{i}"]  # flags override the file
            flags += ["--prometheus-port", str(metrics_port), "--app", "node_app:setup"]
            processes.append(_start_node(["--config", str(config), *flags], logs[i], env))

        def text(i: int) -> str:
            return logs[i].read_text(errors="replace")

        async def scrape(i: int) -> dict[str, float]:
            return await asyncio.to_thread(_scrape, metrics_ports[i])

        # Formed: every node is up with the quorum of 3, and sees 3 members up.
        await wait_until(
            lambda: all("node up at" in text(i) for i in range(3)), timeout=30.0, interval=0.1
        )
        for i in range(3):
            assert "with 3 member(s) up" in text(i), text(i)
            assert f"[n{i}]" in text(i)  # the node id is in its log records

        async def shards(i: int) -> float:
            return _sample(await scrape(i), "casty_region_shards{")

        async def spread() -> bool:
            counts = [await shards(i) for i in range(3)]
            return all(counts) and sum(counts) == TYPE_SHARDS

        await wait_until(spread, timeout=30.0, interval=0.2)  # rebalanced onto every node

        leaving = processes[2]
        leaving.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(leaving.wait, 30) == 0, text(2)
        assert "left the cluster" in text(2), text(2)
        for i in range(2):
            await wait_until(
                lambda i=i: "MemberRemoved: n2 (127.0.0.1:" in text(i), timeout=15.0, interval=0.1
            )

        async def handed_over() -> bool:
            return await shards(0) + await shards(1) == TYPE_SHARDS

        await wait_until(handed_over, timeout=30.0, interval=0.2)
        for i in range(2):
            up = f'casty_members{{node="n{i}",status="up"}}'
            assert _sample(await scrape(i), up) == 2
        for process in processes[:2]:
            process.send_signal(signal.SIGINT)
        for i in range(2):
            assert await asyncio.to_thread(processes[i].wait, 30) == 0, text(i)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


async def test_a_signal_while_joining_stops_the_node(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    log = tmp_path / "node.log"
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    # A quorum of 2 that never forms: the node keeps waiting until told to stop.
    process = _start_node(["--port", str(port), "--quorum", "2"], log, env)
    try:
        await wait_until(lambda: "founds a new cluster" in log.read_text(), timeout=30.0)
        process.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(process.wait, 30) == 0
        assert "stopped before the node was up" in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_bad_configuration_is_refused_with_its_key(tmp_path: Path) -> None:
    config = tmp_path / "casty.toml"
    config.write_text("[cluster.failure_detector]\nthreshold = 'high'\n")
    result = subprocess.run(
        [sys.executable, "-m", "casty", "node", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode == 1
    assert "cluster.failure_detector.threshold: expected a number, got 'high'" in result.stderr


def test_an_unknown_log_level_is_refused_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "casty", "node", "--log-level", "LOUD"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "casty: error: --log-level: unknown level 'LOUD' (DEBUG, INFO, WARNING, ERROR or CRITICAL)"
    )


def test_an_app_that_raises_makes_the_node_leave_and_fail_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "failing_app.py").write_text("def setup(system):\n    raise ValueError('boom')\n")
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    )
    port = free_ports(1)[0]
    result = subprocess.run(
        [sys.executable, "-m", "casty", "node", "--port", str(port), "--app", "failing_app:setup"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    # The node logged the traceback and left; the command's last word is one error line.
    assert "ValueError: boom" in result.stderr
    assert any(line.endswith("casty.node: left the cluster") for line in lines), result.stderr
    assert lines[-1] == "casty: error: --app failing_app:setup failed: ValueError: boom"
    assert lines[-2].endswith("casty.node: stopped"), result.stderr
