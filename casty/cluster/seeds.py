"""Whom a starting node asks, and when it may found a new cluster: Akka's seed node process.

A starting node asks every seed it knows whether it belongs to a cluster (``InitJoin``) and
joins through the first one that says yes. Only the *first seed* may found a new cluster, and
only when asking is pointless: every other seed answered that it is alive but not a member
(``InitJoinNack``), or ``seed_node_timeout`` passed with some seed silent. Every other node
keeps asking (with backoff while nobody answers at all), so that exactly one node founds the
cluster when all start together, as in Akka's ``FirstSeedNodeProcess`` and
``JoinSeedNodeProcess`` (as its documentation describes them).

Which seed is first: Akka takes the first entry of a seed list that every node must configure
identically. Discovery gives sets, not lists, and a configuration such as the one in Casty's
documentation lists each node's *other* nodes, so here the first seed is the **lowest
address** among the seeds a node knows, where the seeds it knows are its own (from
``seed_nodes`` or discovery) plus those every node that answered or asked it reported. A
node is a seed when it appears among them. All nodes therefore agree on the first seed as long
as the lowest seed address appears in some list every node sees. A node that is no seed at all
(a worker joining dedicated seeds) never founds a cluster: when the first seed is gone for
good, the others keep asking (and say so in the log) until a cluster answers, which is Akka's
documented requirement that the first seed be running when a cluster is first formed.

An answer is not forever: an ``InitJoinNack`` counts for ``seed_node_timeout`` seconds, so a
seed that said "not a member" and then went away is reported silent again. A seed that refuses
this node at the handshake (another actor system, serializer or TLS identity) is dropped from
the search, as Akka drops a seed of a foreign cluster.

The class is pure and clock-driven; the topology actor sends the messages it asks for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import final

from casty.abc import Address
from casty.cluster.config import JoinConfig

__all__ = ["SeedPlan", "SeedProcess"]


@dataclass(frozen=True, slots=True)
class SeedPlan:
    """What to do this round.

    Attributes:
        found: found a new cluster now (this node is the first seed and asking is pointless).
        ask: the seeds to send ``InitJoin`` to (empty when ``found``).
        next_round_in: seconds until the next round.
    """

    found: bool
    ask: frozenset[Address]
    next_round_in: float


@final
class SeedProcess:
    """One node's seed bookkeeping while it looks for a cluster to join.

    Answers expire: an ``InitJoinNack`` counts for ``seed_node_timeout`` seconds, after which a
    seed that stopped answering (it left, crashed, or joined a cluster meanwhile) is *silent*
    again, as in Akka where each round of asking starts afresh. A seed that refuses this node
    at the handshake (another actor system name, serializer or TLS identity) is dropped for
    the rest of the search, as Akka drops a seed of a foreign cluster; the search fails only
    when no seed is left that could let this node in (`refused_by_all`).

    Args:
        self_address: this node's address.
        config: the join settings.
        started_at: the clock reading when the search started (seconds).
    """

    __slots__ = (
        "_answered_this_round",
        "_config",
        "_interval",
        "_nacked",
        "_own",
        "_refused",
        "_reported",
        "_self",
        "_started_at",
        "_unreachable",
    )

    def __init__(self, self_address: Address, config: JoinConfig, started_at: float) -> None:
        self._self = self_address
        self._config = config
        self._started_at = started_at
        self._own: frozenset[Address] = frozenset()
        self._reported: set[Address] = set()
        self._nacked: dict[Address, float] = {}  # seed -> when it last answered InitJoinNack
        self._refused: dict[Address, str] = {}  # seed -> why it refused this node
        self._unreachable: set[Address] = set()
        # The first round waits the base interval; backoff starts after a silent round.
        self._answered_this_round = True
        self._interval = config.retry_interval

    @property
    def started_at(self) -> float:
        """The clock reading when the search started (seconds)."""
        return self._started_at

    @property
    def known_seeds(self) -> frozenset[Address]:
        """This node's seeds plus those other nodes reported, less those that refused it."""
        return (self._own | self._reported) - self._refused.keys()

    @property
    def own_seeds(self) -> frozenset[Address]:
        """The seeds from this node's own configuration or discovery (last resolution)."""
        return self._own

    @property
    def refusals(self) -> dict[Address, str]:
        """The seeds that refused this node, with their reasons (a copy)."""
        return dict(self._refused)

    @property
    def is_first_seed(self) -> bool:
        """Whether this node is the lowest-addressed of the seeds it knows."""
        known = self.known_seeds
        return self._self in known and min(known) == self._self

    def answered_no_at(self, now: float) -> frozenset[Address]:
        """Known seeds whose ``InitJoinNack`` is less than ``seed_node_timeout`` seconds old."""
        ttl = self._config.seed_node_timeout
        known = self.known_seeds
        return frozenset(a for a, at in self._nacked.items() if now - at < ttl and a in known)

    def silent_at(self, now: float) -> frozenset[Address]:
        """Known seeds other than this node without a current ``InitJoinNack`` (see
        `answered_no_at`)."""
        return self.known_seeds - self.answered_no_at(now) - {self._self}

    def resolved(self, seeds: Iterable[Address]) -> None:
        """Adopt a fresh resolution of this node's own seeds."""
        self._own = frozenset(seeds)

    def learn(self, sender: Address, seeds: Iterable[Address]) -> None:
        """Another node asked us (``InitJoin``) and reported the seeds it knows."""
        del sender  # asking proves nothing about membership; only its seed list counts
        self._reported.update(seeds)

    def nack(self, sender: Address, seeds: Iterable[Address], now: float) -> None:
        """``sender`` answered at ``now`` that it is alive but not a member, and reported its
        seeds."""
        self._nacked[sender] = now
        self._unreachable.discard(sender)
        self._reported.update(seeds)
        self._answered_this_round = True

    def refuse(self, seed: Address, reason: str) -> bool:
        """``seed`` refused this node at the handshake: drop it for the rest of the search.

        Returns:
            ``True`` the first time ``seed`` refused (the caller logs it then), else ``False``.
        """
        first = seed not in self._refused
        self._refused[seed] = reason
        return first

    def unreachable(self, seed: Address) -> None:
        """No connection to ``seed`` could be made (it may come later)."""
        self._unreachable.add(seed)

    def reachable(self, seed: Address) -> None:
        """A connection to ``seed`` was made (it accepted this node's handshake)."""
        self._unreachable.discard(seed)

    def refused_by_all(self) -> bool:
        """Whether no seed is left that could let this node in.

        True when some seed refused this node, this node is no seed itself (a seed can always
        found the cluster), and every other seed refused it too or cannot be reached. A seed
        that answered, or whose connection is pending, keeps the search going.
        """
        if not self._refused or self._self in self.known_seeds:
            return False
        return self.known_seeds <= self._unreachable

    def should_found(self, now: float) -> bool:
        """Whether this node should found a new cluster right now.

        True for the first seed once every other known seed answered ``InitJoinNack`` within
        the last ``seed_node_timeout`` seconds, or once ``seed_node_timeout`` seconds passed
        since the search started.
        """
        if not self.is_first_seed:
            return False
        if not self.silent_at(now):
            return True
        return now - self._started_at >= self._config.seed_node_timeout

    def plan(self, now: float) -> SeedPlan:
        """The next round: found, or ask the known seeds (other than this node) again.

        The interval between rounds is ``retry_interval`` while some seed answers and grows
        by half each round in which nobody did, up to ``max_retry_interval``.
        """
        if self.should_found(now):
            return SeedPlan(True, frozenset(), 0.0)
        if self._answered_this_round:
            self._interval = self._config.retry_interval
        else:
            self._interval = min(self._interval * 1.5, self._config.max_retry_interval)
        self._answered_this_round = False
        ask = self.known_seeds - {self._self}
        wait = self._interval
        if self.is_first_seed and self.silent_at(now):
            # Wake up for the founding deadline rather than a whole backoff interval later.
            left = self._config.seed_node_timeout - (now - self._started_at)
            wait = max(min(wait, left), 0.0)
        return SeedPlan(False, ask, wait)

    def explain(self, now: float) -> str:
        """Why the search goes on, from this node's side, for the "still joining" log line."""
        parts: list[str] = []
        silent = self.silent_at(now)
        if silent:
            parts.append("no answer from " + ", ".join(map(str, sorted(silent))))
        for seed in sorted(self.answered_no_at(now) - {self._self}):
            parts.append(f"{seed} answered that it is not a member of a cluster")
        for seed, reason in sorted(self._refused.items()):
            parts.append(f"{seed} refused this node ({reason})")
        known = self.known_seeds
        if not known:
            parts.append("no seed nodes known")
        elif self._self not in known:
            parts.append("this node is no seed, so it only joins an existing cluster")
        elif not self.is_first_seed:
            parts.append(f"waiting for the first seed {min(known)} to found the cluster")
        return "; ".join(parts)
