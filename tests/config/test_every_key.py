"""Every documented key of casty.toml takes effect.

The test walks `config_keys()` (the schema itself, so a new key cannot be forgotten): each key
gets a non-default value, a node is started from a file holding them, and each value is read
back from the live component it configures (the topology daemon, the transport, the shard
region, a spawned actor, the HTTP endpoint, ...), or its effect is observed. A key with no
sample value or no probe here fails the test.
"""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from casty import Behaviors, ClusteredActorSystem
from casty.actors.cell import ActorCell
from casty.cluster.config import ClusterConfig, FailureDetectorConfig, GossipConfig, JoinConfig
from casty.cluster.daemon import _Topology
from casty.cluster.downing import KeepOldest, StaticQuorum
from casty.config import ConfigKey, DowningSettings, ShardingDefaults, config_keys
from casty.remote.settings import RemoteSettings
from casty.replication.config import ReplicationConfig
from casty.sharding.region import _Region
from casty.sharding.settings import ShardingSettings
from casty.testing import wait_until

pytestmark = pytest.mark.slow

HOST = "127.0.0.2"  # not the default host; Linux routes all of 127/8 to loopback


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _sample(key: ConfigKey, special: dict[str, Any]) -> Any:
    """A valid value other than the key's default."""
    if key.path in special:
        return special[key.path]
    default = key.default
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 1
    if isinstance(default, float):
        return default * 1.5
    raise AssertionError(f"{key.path}: no sample value; add one to the test's table")


def _toml_tree(values: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in values.items():
        *tables, last = path.split(".")
        node = tree
        for table in tables:
            node = node.setdefault(table, {})
        node[last] = list(value) if isinstance(value, tuple) else value
    return tree


def _write_toml(tree: dict[str, Any], path: Path) -> None:
    """A tiny TOML writer for the values used here (tables of scalars, lists of strings)."""
    lines: list[str] = []

    def emit(table: dict[str, Any], prefix: str) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {_literal(v)}")
        for k, v in table.items():
            if isinstance(v, dict):
                emit(v, f"{prefix}.{k}" if prefix else k)

    emit(tree, "")
    path.write_text("\n".join(lines) + "\n")


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\") + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return repr(value)


def _live(system: ClusteredActorSystem, kind: type) -> Any:
    """The live object of ``kind`` running as an actor's handler (a daemon, a region)."""
    stack: list[ActorCell[Any]] = [system._root]
    while stack:
        cell = stack.pop()
        owner = getattr(getattr(cell._behavior, "handler", None), "__self__", None)
        if isinstance(owner, kind):
            return owner
        stack.extend((cell._children or {}).values())
    raise AssertionError(f"no live {kind.__name__}")


def _certificates(tmp_path: Path) -> dict[str, str]:
    from casty.certs import create_ca, create_node_certificate

    ca = create_ca(tmp_path / "ca")
    node = create_node_certificate("node", tmp_path / "ca", tmp_path, sans=[HOST, "localhost"])
    return {"cert": str(node.cert), "key": str(node.key), "ca": str(ca.cert)}


async def _probe_all(
    system: ClusteredActorSystem,
    values: dict[str, Any],
    probes: dict[str, Callable[[ClusteredActorSystem, ConfigKey], Any]],
    by_owner: dict[type, Callable[[ClusteredActorSystem], Any]],
    keys: list[ConfigKey],
) -> set[str]:
    checked: set[str] = set()
    for key in keys:
        if key.path not in values:
            continue
        if key.path in probes:
            live = probes[key.path](system, key)
            if callable(live) and not isinstance(live, type):
                live = await live()
        elif key.owner in by_owner:
            live = getattr(by_owner[key.owner](system), key.attribute)
        else:
            raise AssertionError(f"{key.path}: no probe; add one to the test")
        expected = values[key.path]
        assert live == expected, f"{key.path}: the live component has {live!r}, not {expected!r}"
        checked.add(key.path)
    return checked


async def test_every_key_takes_effect(tmp_path: Path) -> None:
    keys = config_keys()
    port = _free_port(HOST)
    metrics_port = _free_port(HOST)
    tls = _certificates(tmp_path)
    special: dict[str, Any] = {
        "cluster.name": "every-key",
        "cluster.host": HOST,
        "cluster.port": port,
        "cluster.node_id": "node-under-test",
        "cluster.seeds": (f"{HOST}:{port}",),  # its own seed: it founds the cluster
        "cluster.roles": ("worker",),
        "cluster.required_quorum": 1,
        "cluster.join_timeout": 20.0,
        "cluster.gossip.different_view_probability": 0.5,
        "cluster.downing.strategy": "static-quorum",
        "cluster.downing.role": "worker",
        "cluster.downing.quorum_size": 1,
        "cluster.downing.down_all_when_unstable": 6.0,
        "transport.url": "tls://",
        **{f"transport.{name}": path for name, path in tls.items()},
        "transport.max_frame_size": 1 << 20,
        "serializer.name": "pickle",
        "journal.url": f"sqlite:///{tmp_path / 'journal.db'}",
        "remote.outbound_queue_size": 5000,
        "sharding.num_shards": 17,
        "sharding.passivate_after": 30.0,
        "sharding.buffer_size": 1234,
        "sharding.removal_margin": 0.5,
        "replication.replicas": 2,
        "replication.min_acks": 2,
        "mailbox.capacity": 77,
        "mailbox.throughput": 50,
        "supervision.strategy": "restart",
        "supervision.max_restarts": 5,
        "supervision.within": 30.0,
        "metrics.prometheus_port": metrics_port,
        "metrics.prometheus_host": HOST,
    }
    # Keys another scenario covers (they exclude a key set above).
    elsewhere = {"cluster.discovery", "cluster.downing.down_if_alone"}
    values = {key.path: _sample(key, special) for key in keys if key.path not in elsewhere}
    for path, value in values.items():
        default = next(k.default for k in keys if k.path == path)
        assert value != default, f"{path}: the sample equals the default"
    config_file = tmp_path / "casty.toml"
    _write_toml(_toml_tree(values), config_file)

    def topology(system: ClusteredActorSystem) -> Any:
        return _live(system, _Topology).config

    def region(system: ClusteredActorSystem) -> Any:
        return _live(system, _Region).spec

    def downing(system: ClusteredActorSystem, key: ConfigKey) -> Any:
        config = topology(system).downing
        strategy = config.strategy
        return {
            "strategy": "static-quorum" if isinstance(strategy, StaticQuorum) else strategy,
            "role": strategy.role,
            "quorum_size": getattr(strategy, "quorum_size", None),
            "stable_after": config.stable_after,
            "down_all_when_unstable": config.down_all_when_unstable,
        }[key.attribute]

    def actor_cell(system: ClusteredActorSystem) -> Any:
        return system._user._children["probe"]

    async def restarted() -> str:
        probe = system.spawn(Behaviors.receive(fail_or_answer), "failing")
        probe.tell("boom")  # stopped by default; restarted by `supervision.strategy`
        return await system.ask(probe, lambda reply_to: reply_to, timeout=5.0)

    def fail_or_answer(ctx: Any, message: Any) -> Any:
        if message == "boom":
            raise RuntimeError("boom (expected by the test)")
        message.tell("restart")
        return Behaviors.same()

    def supervision(system: ClusteredActorSystem, key: ConfigKey) -> Any:
        strategy = actor_cell(system)._extras.supervisions[0].strategy
        return getattr(strategy, key.attribute)

    async def scraped() -> int:
        import asyncio

        url = f"http://{HOST}:{metrics_port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
        assert b'casty_members{node="node-under-test",status="up"} 1.0' in body
        return metrics_port

    transport = lambda s: s._transport  # noqa: E731
    credentials = lambda s: s._transport._credentials  # noqa: E731
    probes: dict[str, Callable[[ClusteredActorSystem, ConfigKey], Any]] = {
        "cluster.name": lambda s, k: s.name,
        "cluster.host": lambda s, k: s.node_address.host,
        "cluster.port": lambda s, k: s.node_address.port,
        "cluster.node_id": lambda s, k: s.cluster.self_member.node_id,
        "cluster.seeds": lambda s, k: tuple(sorted(str(a) for a in s._discovery._seeds)),
        "cluster.roles": lambda s, k: tuple(sorted(s.cluster.self_member.roles)),
        "cluster.required_quorum": lambda s, k: s._required_quorum,
        **{f"cluster.downing.{n}": downing for n in DowningSettings.__dataclass_fields__},
        "transport.url": lambda s, k: (
            "tls://" if type(transport(s)).__name__ == "TLSTransport" else None
        ),
        "transport.cert": lambda s, k: str(credentials(s)._paths[0]),
        "transport.key": lambda s, k: str(credentials(s)._paths[1]),
        "transport.ca": lambda s, k: str(credentials(s)._paths[2]),
        "transport.require_client_cert": lambda s, k: credentials(s)._require_client_cert,
        "transport.check_hostname": lambda s, k: transport(s).check_hostname,
        "transport.max_frame_size": lambda s, k: transport(s).max_frame_size,
        "serializer.name": lambda s, k: s.serializer.name,
        "journal.url": lambda s, k: f"sqlite:///{s.journal._path}",
        "mailbox.capacity": lambda s, k: actor_cell(s)._capacity,
        "mailbox.throughput": lambda s, k: s._throughput,
        "supervision.strategy": lambda s, k: lambda: restarted_as("restart"),
        "supervision.max_restarts": supervision,
        "supervision.within": supervision,
        "metrics.prometheus_port": lambda s, k: scraped,
        "metrics.prometheus_host": lambda s, k: s._prometheus.url.split("/")[2].split(":")[0],
    }

    async def restarted_as(name: str) -> str:
        return name if await restarted() == "restart" else "not restarted"

    by_owner: dict[type, Callable[[ClusteredActorSystem], Any]] = {
        ClusterConfig: topology,
        FailureDetectorConfig: lambda s: topology(s).failure_detector,
        GossipConfig: lambda s: topology(s).gossip,
        JoinConfig: lambda s: topology(s).join,
        RemoteSettings: lambda s: s.settings,
        ShardingDefaults: region,
        ShardingSettings: lambda s: region(s).settings,
        ReplicationConfig: lambda s: region(s).replication,
    }

    async with ClusteredActorSystem(config=config_file) as system:
        system.spawn(Behaviors.receive(lambda ctx, msg: Behaviors.same()), "probe")
        system.spawn(Behaviors.sharded(lambda entity_id: Behaviors.ignore(), replication=True), "t")
        await wait_until(lambda: _has_region(system), timeout=10.0)
        checked = await _probe_all(system, values, probes, by_owner, keys)
    assert checked == set(values)

    # The keys that exclude others: discovery instead of seeds, keep-oldest's own option.
    port = _free_port("127.0.0.1")
    other = {
        "cluster.port": port,
        "cluster.discovery": f"static://127.0.0.1:{port}",
        "cluster.downing.strategy": "keep-oldest",
        "cluster.downing.down_if_alone": False,
    }
    async with ClusteredActorSystem(config=_toml_tree(other)) as system:
        assert sorted(map(str, await system._discovery.seeds())) == [f"127.0.0.1:{port}"]
        strategy = topology(system).downing.strategy
        assert isinstance(strategy, KeepOldest) and strategy.down_if_alone is False
        checked |= {"cluster.discovery", "cluster.downing.down_if_alone"}
    assert checked == {key.path for key in keys}


def _has_region(system: ClusteredActorSystem) -> bool:
    try:
        _live(system, _Region)
    except AssertionError:
        return False
    return True
