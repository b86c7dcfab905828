"""``casty.toml``: one file configures a whole node.

::

    from casty.config import load_config

    config = load_config("casty.toml")              # the file, then CASTY_* variables
    async with ClusteredActorSystem(config=config) as system:
        ...

Every table maps onto the settings class its component takes (`ClusterConfig`,
`FailureDetectorConfig`, `RemoteSettings`, `ShardingSettings`, `ReplicationConfig`, ...); the
classes in `casty.config.sections` cover the rest. Unknown keys and values of the wrong type
are refused with `ConfigurationError` naming the key's full path. Environment variables
``CASTY_<TABLE>__<KEY>`` (the key's dotted path in capitals, levels joined by ``__``, e.g.
``CASTY_CLUSTER__FAILURE_DETECTOR__THRESHOLD=10``) override the file; ``overrides`` (the
``casty node`` flags) override both. ``docs/configuration.md`` lists every key; it is
generated from this schema (`casty.config.reference`).
"""

from __future__ import annotations

from casty.config.schema import ENV_PREFIX, CastyConfig, ConfigKey, config_keys, load_config
from casty.config.sections import (
    ClusterSettings,
    DowningSettings,
    JournalSettings,
    MailboxSettings,
    MetricsSettings,
    SerializerSettings,
    ShardingDefaults,
    SupervisionSettings,
    TransportSettings,
)

__all__ = [
    "ENV_PREFIX",
    "CastyConfig",
    "ClusterSettings",
    "ConfigKey",
    "DowningSettings",
    "JournalSettings",
    "MailboxSettings",
    "MetricsSettings",
    "SerializerSettings",
    "ShardingDefaults",
    "SupervisionSettings",
    "TransportSettings",
    "config_keys",
    "load_config",
]
