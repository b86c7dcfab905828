"""The coordinator's allocation table: operations, epochs, replicas, reports and wire form."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from casty.errors import ConfigurationError, DecodeError, ShardingError
from casty.sharding.allocation import LeastShardAllocationStrategy
from casty.sharding.table import ShardAllocationTable


def _table(num_shards: int = 8, regions: tuple[str, ...] = ("a", "b", "c")) -> ShardAllocationTable:
    table = ShardAllocationTable(num_shards)
    for region in regions:
        table.add_region(region)
    return table


# ---------------------------------------------------------------------------- operations


def test_new_table_is_empty() -> None:
    table = ShardAllocationTable(4)
    assert table.num_shards == 4
    assert table.regions == frozenset()
    assert table.unallocated() == [0, 1, 2, 3]
    assert table.owner(0) is None
    assert table.epoch(0) == 0
    assert table.version == 0


@pytest.mark.parametrize("num_shards", [0, -3, True, 2.0])
def test_bad_num_shards_raises_configuration_error(num_shards: Any) -> None:
    with pytest.raises(ConfigurationError, match="num_shards"):
        ShardAllocationTable(num_shards)


def test_allocate_records_owner_and_first_epoch() -> None:
    table = _table()
    assert table.allocate(3, "b") == 1
    assert table.owner(3) == "b"
    assert table.shards_of("b") == {3}
    assert table.allocations() == {"a": frozenset(), "b": frozenset({3}), "c": frozenset()}
    assert 3 not in table.unallocated()
    assert table.is_current(3, "b", 1)
    assert not table.is_current(3, "a", 1)
    assert not table.is_current(3, "b", 0)


def test_add_region_is_idempotent_and_keeps_shards() -> None:
    table = _table()
    table.allocate(0, "a")
    version = table.version
    table.add_region("a")
    assert table.shards_of("a") == {0}
    assert table.version == version


@pytest.mark.parametrize("region", ["", 7, None])
def test_bad_region_key_raises_configuration_error(region: Any) -> None:
    with pytest.raises(ConfigurationError, match="region key"):
        ShardAllocationTable(4).add_region(region)


def test_allocating_an_allocated_shard_raises() -> None:
    table = _table()
    table.allocate(1, "a")
    with pytest.raises(ShardingError, match="already allocated to 'a'"):
        table.allocate(1, "b")


def test_allocating_to_an_unregistered_region_raises() -> None:
    with pytest.raises(ShardingError, match="unregistered 'z'"):
        _table().allocate(1, "z")


@pytest.mark.parametrize("shard_id", [-1, 8, True, "1"])
def test_shard_ids_out_of_range_raise_configuration_error(shard_id: Any) -> None:
    table = _table()
    with pytest.raises(ConfigurationError, match="shard id"):
        table.allocate(shard_id, "a")


def test_handoff_moves_a_shard_with_a_higher_epoch() -> None:
    table = _table()
    table.allocate(2, "a")
    assert table.begin_handoff(2) == "a"
    assert table.in_handoff == {2}
    assert table.owner(2) == "a"  # still the owner until it stopped the shard
    assert table.complete_handoff(2) == "a"
    assert table.owner(2) is None
    assert table.in_handoff == frozenset()
    assert table.epoch(2) == 1
    assert table.allocate(2, "c") == 2
    assert table.is_current(2, "c", 2)
    assert not table.is_current(2, "a", 1)


def test_handoff_errors() -> None:
    table = _table()
    with pytest.raises(ShardingError, match="not allocated"):
        table.begin_handoff(0)
    with pytest.raises(ShardingError, match="not in handoff"):
        table.complete_handoff(0)
    table.allocate(0, "a")
    table.begin_handoff(0)
    with pytest.raises(ShardingError, match="already in handoff"):
        table.begin_handoff(0)


def test_abort_handoff_keeps_the_owner_and_is_idempotent() -> None:
    table = _table()
    table.allocate(0, "a")
    table.begin_handoff(0)
    table.abort_handoff(0)
    table.abort_handoff(0)
    assert table.in_handoff == frozenset()
    assert table.owner(0) == "a"
    assert table.epoch(0) == 1


def test_remove_region_unallocates_its_shards_and_cancels_their_handoffs() -> None:
    table = _table()
    for shard_id, region in [(0, "a"), (1, "b"), (2, "b"), (3, "c")]:
        table.allocate(shard_id, region)
    table.begin_handoff(1)
    table.set_replicas(0, ["b", "c"])
    assert table.remove_region("b") == {1, 2}
    assert table.regions == {"a", "c"}
    assert table.owner(1) is None and table.owner(2) is None
    assert table.in_handoff == frozenset()
    assert table.replicas(0) == ("c",)
    assert table.epoch(1) == 1  # kept, so the next allocation outranks the lost owner
    assert table.allocate(1, "a") == 2
    version = table.version
    assert table.remove_region("b") == frozenset()
    assert table.version == version


def test_version_increases_on_every_change() -> None:
    table = ShardAllocationTable(4)
    versions = [table.version]
    table.add_region("a")
    versions.append(table.version)
    table.allocate(0, "a")
    versions.append(table.version)
    table.begin_handoff(0)
    versions.append(table.version)
    table.complete_handoff(0)
    versions.append(table.version)
    table.remove_region("a")
    versions.append(table.version)
    assert versions == sorted(set(versions))


# ---------------------------------------------------------------------------- replicas


def test_replicas_are_never_the_primary_and_spread_evenly() -> None:
    regions = [f"node-{i}:25520" for i in range(5)]
    table = _table(256, tuple(regions))
    strategy: LeastShardAllocationStrategy[str] = LeastShardAllocationStrategy()
    for shard_id in range(256):
        primary = strategy.allocate_shard(regions[0], shard_id, table.allocations())
        assert primary is not None
        table.allocate(shard_id, primary)
        replicas = table.choose_replicas(shard_id, primary, regions, 2)
        assert len(replicas) == 2 == len(set(replicas))
        assert primary not in replicas
        table.set_replicas(shard_id, replicas)
    slots = Counter(region for s in range(256) for region in table.replicas(s))
    assert set(slots) == set(regions)
    assert max(slots.values()) - min(slots.values()) <= 1, slots


def test_choose_replicas_keeps_current_valid_replicas() -> None:
    table = _table(4, ("a", "b", "c", "d"))
    table.allocate(0, "a")
    table.set_replicas(0, ["d"])
    assert table.choose_replicas(0, "a", ["a", "b", "c", "d"], 2) == ("d", "b")
    # "d" is no longer a candidate (unreachable): it is replaced.
    assert table.choose_replicas(0, "a", ["a", "b", "c"], 1) == ("b",)


def test_choose_replicas_returns_fewer_when_candidates_run_out() -> None:
    table = _table(4, ("a", "b"))
    assert table.choose_replicas(0, "a", ["a", "b"], 3) == ("b",)
    assert table.choose_replicas(0, "a", ["a"], 1) == ()
    assert table.choose_replicas(0, "a", ["a", "b"], 0) == ()
    with pytest.raises(ConfigurationError, match="n must be"):
        table.choose_replicas(0, "a", ["b"], -1)


def test_a_promoted_replica_leaves_the_replica_list() -> None:
    table = _table()
    table.allocate(0, "a")
    table.set_replicas(0, ["b", "c"])
    table.remove_region("a")
    assert table.allocate(0, "b") == 2
    assert table.replicas(0) == ("c",)


def test_set_replicas_rejects_owner_unknown_and_repeated_regions() -> None:
    table = _table()
    table.allocate(0, "a")
    with pytest.raises(ShardingError, match="is its owner"):
        table.set_replicas(0, ["a"])
    with pytest.raises(ShardingError, match="not registered"):
        table.set_replicas(0, ["z"])
    with pytest.raises(ShardingError, match="repeat"):
        table.set_replicas(0, ["b", "b"])
    table.set_replicas(0, ["b"])
    table.set_replicas(0, [])
    assert table.replicas(0) == ()


# ---------------------------------------------------------------------------- reports


def test_apply_report_adopts_newer_and_flags_stale_owners() -> None:
    table = _table()
    table.allocate(0, "a")  # epoch 1
    table.allocate(1, "b")  # epoch 1
    stale = table.apply_report("c", {0: 2, 1: 1, 5: 3})
    # Shard 0: "c" holds a newer epoch, so "a" (epoch 1) must stop. Shard 1: an equal epoch
    # keeps the owner, so "c" must stop. Shard 5 was free: adopted.
    assert stale == [("a", 0, 1), ("c", 1, 1)]
    assert table.is_current(0, "c", 2)
    assert table.is_current(1, "b", 1)
    assert table.is_current(5, "c", 3)
    assert table.shards_of("a") == frozenset()


def test_apply_report_by_the_owner_with_an_old_epoch_is_stale() -> None:
    table = _table()
    table.allocate(0, "a")
    table.remove_region("a")
    table.add_region("a")
    assert table.allocate(0, "a") == 2
    assert table.apply_report("a", {0: 1}) == [("a", 0, 1)]
    assert table.apply_report("a", {0: 2}) == []
    assert table.apply_report("a", {0: 3}) == []  # the owner at a newer epoch keeps it
    assert table.is_current(0, "a", 3)


@pytest.mark.parametrize("hosted", [{0: 0}, {0: -1}, {0: True}, {9: 1}])
def test_apply_report_rejects_bad_entries(hosted: dict[int, int]) -> None:
    with pytest.raises(ConfigurationError):
        _table().apply_report("a", hosted)


def test_rebuild_resolves_conflicts_by_highest_epoch_then_region_key() -> None:
    reports = {
        "b": {0: 4, 1: 2, 2: 1},
        "a": {0: 3, 1: 2},
        "c": {2: 5, 3: 1},
    }
    table = ShardAllocationTable.rebuild_from_reports(reports, num_shards=8)
    assert table.regions == {"a", "b", "c"}
    assert table.is_current(0, "b", 4)
    assert table.is_current(1, "a", 2)  # equal epochs: the first region in key order
    assert table.is_current(2, "c", 5)
    assert table.is_current(3, "c", 1)
    assert table.unallocated() == [4, 5, 6, 7]
    losers = {
        (region, shard_id)
        for region, hosted in reports.items()
        for shard_id, epoch in hosted.items()
        if not table.is_current(shard_id, region, epoch)
    }
    assert losers == {("a", 0), ("b", 1), ("b", 2)}


def test_rebuild_keeps_epochs_and_replicas_of_a_previous_copy() -> None:
    previous = _table(4, ("a", "b", "c"))
    previous.allocate(0, "a")
    previous.remove_region("a")
    previous.add_region("a")
    previous.allocate(0, "b")  # epoch 2
    previous.allocate(1, "c")  # epoch 1
    previous.set_replicas(1, ["a", "b"])
    # "b" died with the coordinator; "a" and "c" report.
    table = ShardAllocationTable.rebuild_from_reports(
        {"a": {}, "c": {1: 1}}, num_shards=4, previous=previous
    )
    assert table.owner(0) is None
    assert table.allocate(0, "a") == 3  # outranks "b"'s epoch 2
    assert table.is_current(1, "c", 1)
    assert table.replicas(1) == ("a",)
    assert table.version > previous.version


def test_rebuild_with_a_previous_table_of_another_size_raises() -> None:
    with pytest.raises(ConfigurationError, match="num_shards"):
        ShardAllocationTable.rebuild_from_reports({}, num_shards=8, previous=_table(4))


# ---------------------------------------------------------------------------- wire


def _busy_table() -> ShardAllocationTable:
    table = _table(16, ("10.0.0.1:25520", "10.0.0.2:25520", "10.0.0.3:25520", "idle:1"))
    regions = sorted(table.regions - {"idle:1"})
    for shard_id in range(12):
        table.allocate(shard_id, regions[shard_id % 3])
    table.begin_handoff(4)
    table.begin_handoff(5)
    table.complete_handoff(5)
    table.remove_region("10.0.0.3:25520")
    table.add_region("10.0.0.3:25520")
    table.allocate(2, "10.0.0.3:25520")
    table.set_replicas(0, ["10.0.0.2:25520", "idle:1"])
    table.set_replicas(7, ["10.0.0.3:25520"])
    table.raise_mark(0, (3, 120))
    return table


def test_wire_round_trip_preserves_everything() -> None:
    table = _busy_table()
    copy = ShardAllocationTable.from_wire(table.to_wire())
    assert copy == table
    assert copy.version == table.version
    assert copy.allocations() == table.allocations()
    assert copy.in_handoff == {4}
    assert [copy.epoch(s) for s in range(16)] == [table.epoch(s) for s in range(16)]
    assert copy.replicas(0) == ("10.0.0.2:25520", "idle:1")
    assert copy.mark(0) == (3, 120) and copy.mark(1) == (0, 0)
    assert copy.allocate(5, "idle:1") == table.allocate(5, "idle:1") == 2


def test_a_shards_mark_only_rises_and_a_wire_form_without_marks_is_read() -> None:
    table = _table(4, ("a",))
    table.raise_mark(1, (2, 50))
    table.raise_mark(1, (2, 40))  # lower: kept
    table.raise_mark(1, (1, 900))  # older epoch: kept
    assert table.mark(1) == (2, 50)
    table.raise_mark(1, (3, 0))
    assert table.mark(1) == (3, 0)
    with pytest.raises(ConfigurationError):
        table.raise_mark(4, (1, 1))
    wire = table.to_wire()
    del wire["marks"]  # a table sent by a node from before marks
    assert ShardAllocationTable.from_wire(wire).mark(1) == (0, 0)


def test_wire_form_survives_msgpack_and_json() -> None:
    table = _busy_table()
    packed = msgpack.unpackb(msgpack.packb(table.to_wire()))
    assert ShardAllocationTable.from_wire(packed) == table
    tupled = msgpack.unpackb(msgpack.packb(table.to_wire()), use_list=False)
    assert ShardAllocationTable.from_wire(tupled) == table
    assert ShardAllocationTable.from_wire(json.loads(json.dumps(table.to_wire()))) == table


def test_wire_ignores_unknown_keys() -> None:
    wire = _busy_table().to_wire()
    wire["added_later"] = [1, 2, 3]
    assert ShardAllocationTable.from_wire(wire) == _busy_table()


def _broken(**changes: Any) -> dict[str, Any]:
    wire = _busy_table().to_wire()
    wire.update(changes)
    return wire


@pytest.mark.parametrize(
    "wire",
    [
        None,
        [],
        "table",
        {},
        _broken(format=2),
        _broken(format="1"),
        _broken(num_shards=0),
        _broken(version=-1),
        _broken(version=True),
        _broken(regions=[["a", [0]], ["b", [0]]], epochs=[[0, 1]]),  # allocated twice
        _broken(regions=[["a", [0]], ["a", []]], epochs=[[0, 1]]),  # region repeated
        _broken(regions=[["", []]]),
        _broken(regions=[[["unhashable"], []]]),
        _broken(regions=[["a", [99]]]),  # shard out of range
        _broken(regions=[["a", [0]]], epochs=[]),  # allocated without epoch
        _broken(epochs=[[0, 0]]),
        _broken(epochs=[[0, 1], [0, 2]]),
        _broken(epochs=[[0, 1, 2]]),
        _broken(handoff=[15]),  # not allocated
        _broken(handoff=[4, 4]),
        _broken(handoff="4"),
        _broken(replicas=[[0, ["10.0.0.1:25520"]]]),  # the owner
        _broken(replicas=[[0, ["nowhere"]]]),
        _broken(replicas=[[0, []]]),
        _broken(replicas=[[0, [["x"], ["x"]]]]),
        _broken(replicas=[[0, ["idle:1"]], [0, ["idle:1"]]]),
        _broken(marks=[[0, 1]]),
        _broken(marks=[[0, 1, -1]]),
        _broken(marks=[[99, 1, 1]]),  # shard out of range
        _broken(marks=[[0, 1, 1], [0, 2, 2]]),
        _broken(marks="0"),
    ],
)
def test_malformed_wire_raises_decode_error(wire: object) -> None:
    with pytest.raises(DecodeError, match="invalid shard allocation table"):
        ShardAllocationTable.from_wire(wire)


_primitives = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-5, max_value=40)
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
    | st.binary(max_size=3),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.slow
@settings(max_examples=200)
@given(_primitives)
def test_garbage_raises_decode_error(garbage: object) -> None:
    with pytest.raises(DecodeError):
        ShardAllocationTable.from_wire(garbage)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            paths.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            paths.extend(_paths(child, (*prefix, index)))
    return paths


@pytest.mark.slow
@settings(max_examples=300)
@given(data=st.data(), value=_primitives)
def test_a_corrupted_value_is_refused_or_yields_a_consistent_table(
    data: st.DataObject, value: Any
) -> None:
    wire = _busy_table().to_wire()
    path = data.draw(st.sampled_from(_paths(wire)[1:]))
    parent = wire
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    try:
        table = ShardAllocationTable.from_wire(wire)
    except DecodeError:
        return
    # Whatever decoded must satisfy the invariants: it re-encodes to an accepted wire form.
    assert ShardAllocationTable.from_wire(table.to_wire()) == table


# ---------------------------------------------------------------------------- model-based


class TableMachine(RuleBasedStateMachine):
    """Random operation sequences: invariants hold, epochs only grow, the wire form round-trips."""

    REGIONS = ("r0", "r1", "r2", "r3")
    NUM_SHARDS = 6

    def __init__(self) -> None:
        super().__init__()
        self.table = ShardAllocationTable(self.NUM_SHARDS)
        self.epochs = [0] * self.NUM_SHARDS

    @rule(region=st.sampled_from(REGIONS))
    def add_region(self, region: str) -> None:
        self.table.add_region(region)

    @rule(region=st.sampled_from(REGIONS))
    def remove_region(self, region: str) -> None:
        before = self.table.shards_of(region)
        assert self.table.remove_region(region) == before

    @precondition(lambda self: bool(self.table.regions) and bool(self.table.unallocated()))
    @rule(data=st.data())
    def allocate(self, data: st.DataObject) -> None:
        shard_id = data.draw(st.sampled_from(self.table.unallocated()))
        region = data.draw(st.sampled_from(sorted(self.table.regions)))
        epoch = self.table.allocate(shard_id, region)
        assert epoch == self.epochs[shard_id] + 1
        self.epochs[shard_id] = epoch

    @precondition(lambda self: any(self.table.owner(s) for s in range(TableMachine.NUM_SHARDS)))
    @rule(data=st.data(), complete=st.booleans())
    def handoff(self, data: st.DataObject, complete: bool) -> None:
        allocated = [s for s in range(self.NUM_SHARDS) if self.table.owner(s) is not None]
        shard_id = data.draw(st.sampled_from(allocated))
        owner = self.table.owner(shard_id)
        if shard_id not in self.table.in_handoff:
            assert self.table.begin_handoff(shard_id) == owner
        if complete:
            assert self.table.complete_handoff(shard_id) == owner
        else:
            self.table.abort_handoff(shard_id)

    @precondition(lambda self: len(self.table.regions) >= 2)
    @rule(data=st.data(), n=st.integers(min_value=0, max_value=3))
    def replicate(self, data: st.DataObject, n: int) -> None:
        shard_id = data.draw(st.integers(min_value=0, max_value=self.NUM_SHARDS - 1))
        owner = self.table.owner(shard_id)
        if owner is None:
            return
        replicas = self.table.choose_replicas(shard_id, owner, self.table.regions, n)
        assert owner not in replicas
        self.table.set_replicas(shard_id, replicas)

    @invariant()
    def epochs_never_decrease(self) -> None:
        for shard_id in range(self.NUM_SHARDS):
            assert self.table.epoch(shard_id) == self.epochs[shard_id]

    @invariant()
    def indexes_agree(self) -> None:
        for shard_id in range(self.NUM_SHARDS):
            owner = self.table.owner(shard_id)
            if owner is not None:
                assert shard_id in self.table.shards_of(owner)
                assert self.table.epoch(shard_id) >= 1
            assert owner not in self.table.replicas(shard_id)
            assert set(self.table.replicas(shard_id)) <= self.table.regions
        assert self.table.in_handoff <= {
            s for s in range(self.NUM_SHARDS) if self.table.owner(s) is not None
        }

    @invariant()
    def wire_round_trips(self) -> None:
        assert ShardAllocationTable.from_wire(self.table.to_wire()) == self.table


TableMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_table_model = pytest.mark.slow(TableMachine.TestCase)
