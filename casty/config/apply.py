"""How a `CastyConfig` becomes a `ClusteredActorSystem`'s arguments and settings."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from casty.config.schema import CastyConfig, load_config
from casty.transports import as_transport

if TYPE_CHECKING:
    from casty.cluster.system import ClusteredActorSystem

__all__ = ["apply_node_config", "system_arguments"]


def system_arguments(
    config: CastyConfig | str | os.PathLike[str] | Mapping[str, Any], given: Mapping[str, Any]
) -> tuple[CastyConfig, dict[str, Any]]:
    """The configuration, and `ClusteredActorSystem`'s arguments: each argument ``given``
    at its default takes the configuration's value; any other value wins over the file.

    Raises:
        ConfigurationError: see `load_config`.
    """
    from casty.cluster.system import ClusteredActorSystem

    node = load_config(config)
    cluster = node.cluster
    parameters = inspect.signature(ClusteredActorSystem.__init__).parameters
    arguments = {
        name: given[name] for name in parameters if name not in ("self", "config") and name in given
    }
    transport = node.transport
    from_file: dict[str, Any] = {
        "name": cluster.name,
        "host": cluster.host,
        "port": cluster.port,
        "node_id": cluster.node_id,
        "required_quorum": cluster.required_quorum,
        "roles": cluster.roles,
        "transport": as_transport(transport.url, **transport.options()),
        "serializer": node.serializer.name,
        "remote_settings": node.remote,
        "throughput": node.mailbox.throughput,
    }
    # Seeds and discovery exclude each other: an explicit argument replaces both of the file's.
    if given.get("seed_nodes") is None and given.get("discovery") is None:
        from_file["seed_nodes"] = cluster.seeds
        from_file["discovery"] = cluster.discovery
    for name, value in from_file.items():
        if _is_default(arguments.get(name), parameters[name].default):
            arguments[name] = value
    arguments["config"] = cluster.config
    return node, arguments


def _is_default(value: object, default: object) -> bool:
    return value is default or (type(value) is type(default) and value == default)


def apply_node_config(system: ClusteredActorSystem, node: CastyConfig) -> None:
    """Install what the system's constructor has no argument for: user actors' mailbox and
    supervision defaults (the rest is read from `ClusteredActorSystem.configuration`)."""
    capacity = node.mailbox.capacity
    strategy = node.supervision.to_strategy()
    system._node_config = node
    system._user_defaults = None if capacity is None and strategy is None else (capacity, strategy)
