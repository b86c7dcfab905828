"""`ClientRouting`'s decisions for one envelope, from given snapshots (no network).

The routing state is fed real `TopologySnapshot` values; ``resolve`` returns refs that record
what they are told, standing in for the remote refs of the client's system.
"""

from __future__ import annotations

from typing import Any

from casty.abc import Address
from casty.actors.ref import ActorRef
from casty.client.routing import ClientRouting
from casty.cluster import Member, MemberStatus, TopologySnapshot, UniqueAddress
from casty.sharding import ShardEnvelope, shard_id_for

A, B, C = Address("10.0.0.1", 1), Address("10.0.0.2", 1), Address("10.0.0.3", 1)
SHARDS = 8
ENTITY = "queue:emails"
SHARD = shard_id_for(ENTITY, SHARDS)


class Sink(ActorRef[Any]):
    """A ref that keeps what it is told."""

    def __init__(self, address: str) -> None:
        self._address = address
        self.told: list[Any] = []

    @property
    def path(self) -> str:
        return self._address.split("@", 1)[1].split("/", 1)[1]

    @property
    def address(self) -> str:
        return self._address

    def tell(self, message: Any) -> None:
        self.told.append(message)


class Harness:
    def __init__(self, buffer_size: int = 2) -> None:
        self.refs: dict[str, Sink] = {}
        self.dead: list[tuple[object, str]] = []
        self.routing = ClientRouting(
            "app", self.resolve, lambda m, r: self.dead.append((m, r)), buffer_size
        )

    def resolve(self, address: str) -> Sink:
        return self.refs.setdefault(address, Sink(address))

    def told(self, node: Address) -> list[Any]:
        sink = self.refs.get(f"casty://app@{node}/user/tasks")
        return sink.told if sink is not None else []

    def send(self, entity_id: str = ENTITY, message: object = "m") -> ShardEnvelope:
        envelope = ShardEnvelope(entity_id, message)
        self.routing.route("tasks", SHARDS, envelope)
        return envelope


def snapshot(
    statuses: dict[Address, MemberStatus],
    owner: Address | None,
    unreachable: frozenset[Address] = frozenset(),
    incarnation: int = 1,
) -> TopologySnapshot:
    members = tuple(
        Member(UniqueAddress(a, incarnation), a.host, status, up_number=i + 1)
        for i, (a, status) in enumerate(sorted(statuses.items(), key=lambda kv: kv[0].host))
    )
    allocations = {"tasks": {SHARD: owner}} if owner is not None else {}
    return TopologySnapshot(members, A, unreachable, allocations)


UP = MemberStatus.UP
ALL_UP = {A: UP, B: UP, C: UP}


def test_an_envelope_goes_to_the_owner_only() -> None:
    h = Harness()
    h.routing.on_snapshot(snapshot(ALL_UP, B))
    envelope = h.send()
    assert h.told(B) == [envelope] and h.told(A) == [] and h.told(C) == []
    assert h.routing.statistics().direct == 1


def test_no_snapshot_buffers_and_the_first_snapshot_flushes_in_order() -> None:
    h = Harness()
    first, second = h.send(message=1), h.send(message=2)
    assert h.routing.statistics().buffered == 2
    h.routing.on_snapshot(snapshot(ALL_UP, C))
    assert h.told(C) == [first, second]
    assert h.routing.statistics().buffered == 0


def test_an_unreachable_owner_buffers_until_it_is_downed_then_a_region_allocates() -> None:
    h = Harness()
    h.routing.on_snapshot(snapshot(ALL_UP, B, unreachable=frozenset({B})))
    envelope = h.send()
    assert h.routing.statistics().buffered == 1 and h.told(B) == []
    h.routing.on_snapshot(snapshot({A: UP, B: MemberStatus.DOWN, C: UP}, B))
    [via] = [n for n in (A, C) if h.told(n)]
    assert h.told(via) == [envelope]
    assert h.routing.statistics().via_region == 1


def test_an_unallocated_shard_goes_to_some_usable_region() -> None:
    h = Harness()
    h.routing.on_snapshot(snapshot(ALL_UP, None))
    envelope = h.send()
    assert [envelope] in (h.told(A), h.told(B), h.told(C))
    assert h.routing.statistics().via_region == 1


def test_a_tripped_breaker_holds_until_the_node_changes_or_resets() -> None:
    h = Harness()
    h.routing.on_snapshot(snapshot(ALL_UP, B))
    h.routing.trip(B)
    held = h.send()
    assert h.told(B) == [] and B in h.routing.statistics().open_breakers
    h.routing.on_snapshot(snapshot(ALL_UP, B))  # nothing changed about B: still open
    assert h.told(B) == []
    h.routing.on_snapshot(snapshot(ALL_UP, B, incarnation=2))  # B restarted
    assert h.told(B) == [held] and not h.routing.statistics().open_breakers
    h.routing.trip(B)
    again = h.send()
    h.routing.reset(B)  # reconnected, or half-open after breaker_reset
    assert h.told(B) == [held, again]


def test_overflow_bad_ids_and_other_messages_are_dead_letters_with_reasons() -> None:
    h = Harness(buffer_size=1)
    h.send(message=1)
    late = h.send(message=2)
    h.routing.route("tasks", SHARDS, "not an envelope")
    bad = ShardEnvelope("\ud800", "x")  # not UTF-8 encodable
    h.routing.route("tasks", SHARDS, bad)
    (m1, r1), (m2, r2), (m3, r3) = h.dead
    assert m1 == late and "buffer full (1 envelopes)" in r1
    assert m2 == "not an envelope" and "takes ShardEnvelope" in r2
    assert m3 == bad and "invalid entity id" in r3
    assert h.routing.statistics().dead_letters == 3
    h.routing.drain("closing")
    assert h.dead[-1][1] == "closing"
