"""The configuration reference page (``docs/configuration.md``), generated from the schema.

``python -m casty.config.reference docs/configuration.md`` writes it; a test compares the
committed page with `render`, so the page and the schema cannot drift apart.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from casty.config.schema import ENV_PREFIX, config_keys

__all__ = ["render"]

_INTRO = f"""# Configuration reference

<!-- Generated from the schema by `python -m casty.config.reference docs/configuration.md`;
a test fails when this page and the schema differ. Do not edit by hand. -->

One file, `casty.toml`, configures a whole node. Give it to `casty node --config casty.toml`
or to the system:

```python
from casty import ClusteredActorSystem
from casty.config import load_config

async with ClusteredActorSystem(config="casty.toml") as system:   # or load_config(...), a dict
    ...
```

Every key is optional; an absent key takes the default below. A key or table that is not
listed here, or a value of the wrong type, is refused at start with a `ConfigurationError`
naming the key's full path (`cluster.failure_detector.threshold: expected a number, got 'x'`),
and each value is checked against its bounds by the settings class it configures, the error
naming the key the same way (`cluster.port: must be in 0..65535, got 70000`).

**Precedence**, lowest first: the defaults, the file, the environment, the command-line flags
of `casty node` (or `load_config(overrides=...)`). Arguments given to
`ClusteredActorSystem(...)` beside `config=` win over all of them. A key set at one level
replaces the same key of the levels below it; the other keys of its table stay as they were.

**Overrides**: `load_config("casty.toml", overrides=...)` takes dotted key paths
(`{{"cluster.port": 25520}}`), nested tables shaped like the file
(`{{"cluster": {{"port": 25520}}}}`), or both; their values are checked as the file's are.

**Environment variables**: `{ENV_PREFIX}` followed by the key's dotted path in capitals, with
`__` (two underscores) between levels: `cluster.failure_detector.threshold` is
`{ENV_PREFIX}CLUSTER__FAILURE_DETECTOR__THRESHOLD`. The value is read as a TOML value (`8.5`,
`true`, `["a", "b"]`); a string key takes the text as written, and a list of strings may be
written `a,b`. A `{ENV_PREFIX}...__...` variable that names no key is refused.

**Unset**: TOML has no null. A key whose type includes *unset* is unset by leaving it out or,
at any level, by `false`: in the file (`passivate_after = false`), in the environment
(`{ENV_PREFIX}METRICS__PROMETHEUS_PORT=false`, which unsets a port the file set) and in
overrides (`False`, or `None`). For a string key, the variable's text `false` unsets it too;
write `'"false"'` for the string itself.

**Seconds** are numbers (floats or integers); sizes are in bytes.
"""

_TABLE_NOTES = {
    "cluster": "The node, how it finds the cluster, and the cluster's timings "
    "(`ClusterSettings`, `ClusterConfig`).",
    "cluster.failure_detector": "Heartbeats and the phi accrual failure detector "
    "(`FailureDetectorConfig`).",
    "cluster.gossip": "Gossip rounds (`GossipConfig`).",
    "cluster.downing": "The split brain resolver (`DowningSettings`, building `DowningConfig`).",
    "cluster.join": "Finding and joining the cluster (`JoinConfig`).",
    "transport": "The node's connections, TLS included (`TransportSettings`).",
    "serializer": "The encoding of messages and events (`SerializerSettings`).",
    "journal": "The node's journal, `system.journal` (`JournalSettings`).",
    "remote": "Remoting's queues, timeouts and backoff (`RemoteSettings`).",
    "sharding": "Defaults of `Behaviors.sharded` for arguments left at `CONFIGURED`, and the "
    "sharding timings (`ShardingDefaults`, `ShardingSettings`).",
    "replication": "What `Behaviors.sharded(replication=True)` replicates with "
    "(`ReplicationConfig`).",
    "mailbox": "User actors' mailboxes (`MailboxSettings`).",
    "supervision": "User actors' default supervision (`SupervisionSettings`).",
    "metrics": "The Prometheus endpoint; needs `pip install 'casty[metrics]'` (`MetricsSettings`).",
}


def render() -> str:
    """The reference page's Markdown."""
    parts = [_INTRO]
    table = None
    for key in config_keys():
        owner_table = key.path.rpartition(".")[0]
        if owner_table != table:
            table = owner_table
            parts.append(f"\n## `[{table}]`\n\n{_TABLE_NOTES.get(table, '')}\n")
            parts.append("| Key | Type | Default | Description |\n|---|---|---|---|")
        name = key.path.rpartition(".")[2]
        parts.append(
            f"| `{name}` | {_cell(key.type_name)} | {_cell(_toml(key.default))} "
            f"| {_cell(key.doc)}<br>`{key.env}` |"
        )
    parts.append("\n## Example\n\n```toml\n" + example() + "```\n")
    return "\n".join(parts)


def example() -> str:
    """A ``casty.toml`` showing a few keys of a three-node cluster."""
    return """[cluster]
name = "task-queue"
host = "10.0.0.1"
port = 25520
node_id = "worker-1"
seeds = ["10.0.0.1:25520", "10.0.0.2:25520", "10.0.0.3:25520"]
required_quorum = 3

[cluster.downing]
strategy = "keep-majority"
stable_after = 2.0

[transport]
url = "tls://"
cert = "/etc/casty/worker-1.pem"
key = "/etc/casty/worker-1.key"
ca = "/etc/casty/ca.pem"

[journal]
url = "sqlite:///var/lib/casty/worker-1.db"

[sharding]
num_shards = 128
passivate_after = 300.0

[metrics]
prometheus_port = 9464
"""


def _toml(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return repr(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


if __name__ == "__main__":
    page = render()
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w", encoding="utf-8") as file:
            file.write(page)
    else:
        sys.stdout.write(page)
