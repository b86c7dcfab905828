"""`ShardingSettings`: the timings of the sharding wiring, and the checked spec of a type."""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from casty.abc import Journal
from casty.actors.behaviors import Behavior
from casty.errors import ConfigurationError
from casty.replication.config import ReplicationConfig
from casty.sharding.allocation import ShardAllocationStrategy
from casty.sharding.hashing import HASH_VERSION

__all__ = ["CONFIGURED", "ShardingSettings"]

EntityFactory = Callable[[str], Behavior[Any]]


class Configured(enum.Enum):
    """The type of `CONFIGURED`."""

    CONFIGURED = "configured"

    def __repr__(self) -> str:
        return "CONFIGURED"


#: An argument of `casty.sharding.sharded` left to the node's configuration (the
#: ``[sharding]`` table of ``casty.toml``, `casty.config.ShardingDefaults`).
CONFIGURED: Final = Configured.CONFIGURED


def _seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):  # type: ignore[operator]
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{name} must be finite seconds {bound}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ShardingSettings:
    """How fast the sharding wiring retries, rebalances and gives up. Times in seconds.

    Attributes:
        retry_interval: how often a region re-sends an unanswered registration or
            `GetShardHome`, and how often a coordinator checks its deadlines (default 0.2).
        rebalance_interval: how often the coordinator runs a rebalance round (default 2.0);
            each round moves at most the strategy's limit of shards.
        handoff_timeout: how long a handoff may wait for the regions' acknowledgements and for
            the owner's entities to finish their queued messages (default 10.0). Past it, an
            unacknowledged handoff is aborted (the shard stays), and an owner stops the
            entities that are still busy.
        removal_margin: how long after the coordinator first saw a member downed it waits
            before it gives the member's shards to others (never before the member is removed),
            so that the downed side has surely stopped serving (default None: the cluster's
            ``DowningConfig.stable_after``; see ``docs/cluster.md``).
        registration_grace: how long a coordinator that took over without a handover waits
            for the regions of its predecessor's table to report what they run (default 2.0).

    Raises:
        ConfigurationError: a value is not a finite positive number (``removal_margin`` may
            be 0).
    """

    retry_interval: float = 0.2
    rebalance_interval: float = 2.0
    handoff_timeout: float = 10.0
    removal_margin: float | None = None
    registration_grace: float = 2.0

    def __post_init__(self) -> None:
        _seconds("retry_interval", self.retry_interval)
        _seconds("rebalance_interval", self.rebalance_interval)
        _seconds("handoff_timeout", self.handoff_timeout)
        _seconds("registration_grace", self.registration_grace)
        if self.removal_margin is not None:
            _seconds("removal_margin", self.removal_margin, allow_zero=True)


@dataclass(frozen=True, slots=True)
class TypeSpec:
    """A sharded type as `casty.sharding.sharded` checked it (the region's parameters)."""

    entity_factory: EntityFactory
    num_shards: int
    roles: frozenset[str]
    passivate_after: float | None
    remember_entities: bool
    allocation_strategy: ShardAllocationStrategy[str] | None
    buffer_size: int
    replication: ReplicationConfig | None
    settings: ShardingSettings
    hash_version: int = HASH_VERSION
    journal: Journal | None = None  # the node's journal (replication's replica store)
    configured: frozenset[str] = frozenset()  # fields the node's configuration fills in

    def resolved(self, defaults: Any, replication: ReplicationConfig, journal: Any) -> TypeSpec:
        """This spec with its `configured` fields taken from the node's configuration:
        ``defaults`` (a `casty.config.ShardingDefaults`), ``replication`` (for
        ``replication=True``) and the node's ``journal``.

        Raises:
            ConfigurationError: ``replication=True`` without a journal on the node.
        """
        if not self.configured:
            return self
        values: dict[str, Any] = {
            name: getattr(defaults, name)
            for name in ("num_shards", "passivate_after", "buffer_size", "settings")
            if name in self.configured
        }
        if "replication" in self.configured:
            values["replication"] = replication
            if self.journal is None:
                if not isinstance(journal, Journal):
                    raise ConfigurationError(
                        "replication=True needs journal= or a node journal ([journal] url)"
                    )
                values["journal"] = journal
        return dataclasses.replace(self, configured=frozenset(), **values)

    @classmethod
    def build(
        cls,
        entity_factory: EntityFactory,
        *,
        num_shards: int | Configured,
        roles: Iterable[str],
        passivate_after: float | Configured | None,
        remember_entities: bool,
        allocation_strategy: ShardAllocationStrategy[str] | None,
        buffer_size: int | Configured,
        replication: object | None,
        settings: ShardingSettings | None,
        journal: object | None = None,
    ) -> TypeSpec:
        """Check every argument of `casty.sharding.sharded` (see there for the errors)."""
        configured = frozenset(
            name
            for name, value in (
                ("num_shards", num_shards),
                ("passivate_after", passivate_after),
                ("buffer_size", buffer_size),
                ("replication", True if replication is True else None),
                ("settings", CONFIGURED if settings is None else None),
            )
            if value is CONFIGURED or value is True
        )
        # Stand-ins until the region resolves them (`resolved`); checked here like the rest.
        num_shards = 256 if num_shards is CONFIGURED else num_shards
        passivate_after = 120.0 if passivate_after is CONFIGURED else passivate_after
        buffer_size = 100_000 if buffer_size is CONFIGURED else buffer_size
        if replication is True:
            replication = None
        if not callable(entity_factory):
            raise ConfigurationError(
                f"entity_factory must be a callable (entity_id) -> Behavior, got {entity_factory!r}"
            )
        if type(num_shards) is not int or not 0 < num_shards <= 1 << 32:
            raise ConfigurationError(f"num_shards must be an int in 1..2**32, got {num_shards!r}")
        if isinstance(roles, str):
            raise ConfigurationError(f"roles is a collection of names, got the string {roles!r}")
        role_set = frozenset(roles)
        if any(not isinstance(role, str) or not role for role in role_set):
            raise ConfigurationError(f"roles must be non-empty strings, got {sorted(role_set)!r}")
        if passivate_after is not None:
            _seconds("passivate_after", passivate_after)
        if type(remember_entities) is not bool:
            raise ConfigurationError(f"remember_entities must be a bool, got {remember_entities!r}")
        if allocation_strategy is not None and not isinstance(
            allocation_strategy, ShardAllocationStrategy
        ):
            raise ConfigurationError(
                f"allocation_strategy must be a ShardAllocationStrategy, got "
                f"{allocation_strategy!r}"
            )
        if type(buffer_size) is not int or buffer_size < 1:
            raise ConfigurationError(f"buffer_size must be an int >= 1, got {buffer_size!r}")
        if replication is not None and not isinstance(replication, ReplicationConfig):
            raise ConfigurationError(
                f"replication must be a ReplicationConfig, True or None, got {replication!r}"
            )
        if replication is not None and not isinstance(journal, Journal):
            raise ConfigurationError(
                "replication= needs journal=: the node's Journal (the one the entities use), "
                f"where this node keeps the replicas it holds; got {journal!r}"
            )
        if replication is None and journal is not None and "replication" not in configured:
            raise ConfigurationError("journal= is only used with replication=; pass None")
        if settings is None:
            settings = ShardingSettings()
        elif not isinstance(settings, ShardingSettings):
            raise ConfigurationError(f"settings must be a ShardingSettings, got {settings!r}")
        return cls(
            entity_factory=entity_factory,
            num_shards=num_shards,
            roles=role_set,
            passivate_after=None if passivate_after is None else float(passivate_after),
            remember_entities=remember_entities,
            allocation_strategy=allocation_strategy,
            buffer_size=buffer_size,
            replication=replication,
            settings=settings,
            journal=journal if isinstance(journal, Journal) else None,
            configured=configured,
        )
