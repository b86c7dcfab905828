"""Checked decoding of the gossip wire forms (private to `casty.cluster.gossip`).

Every helper raises `DecodeError` naming the offending field; nothing here trusts its input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from casty.abc import Address
from casty.cluster.member import MAX_INCARNATION, Member, MemberStatus, UniqueAddress
from casty.cluster.reachability import ReachabilityStatus, Row
from casty.cluster.vclock import VectorClock
from casty.errors import DecodeError

WIRE_FORMAT = 1
"""Version of the `Gossip.to_wire` and `GossipStatus.to_wire` layouts; other values are refused."""

STATUS_CODES = {
    MemberStatus.JOINING: 0,
    MemberStatus.WEAKLY_UP: 1,
    MemberStatus.UP: 2,
    MemberStatus.LEAVING: 3,
    MemberStatus.EXITING: 4,
    MemberStatus.DOWN: 5,
}
REACH_CODES = {ReachabilityStatus.UNREACHABLE: 1, ReachabilityStatus.TERMINATED: 2}
_STATUS_BY_CODE = {code: status for status, code in STATUS_CODES.items()}
_REACH_BY_CODE = {code: status for status, code in REACH_CODES.items()}
_MAX_DEPTH = 32


class GossipParts(NamedTuple):
    """The checked fields of a gossip wire form, before they become a `Gossip`."""

    members: list[Member]
    rows: dict[UniqueAddress, Row]
    row_versions: dict[UniqueAddress, int]
    seen: list[UniqueAddress]
    version: VectorClock
    tombstones: list[tuple[UniqueAddress, float, int]]
    extensions: list[tuple[str, int, Any]]


def clock_to_wire(clock: VectorClock) -> list[list[Any]]:
    """``[[node_key, counter], ...]`` sorted by key."""
    return [[node, counter] for node, counter in sorted(clock.versions.items())]


def check_format(value: object) -> None:
    """Refuse anything but `WIRE_FORMAT` (a bool is not an int here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value != WIRE_FORMAT:
        raise DecodeError(f"unsupported gossip wire format {value!r} (expected {WIRE_FORMAT})")


def seq(value: object, what: str, length: int | None = None) -> Sequence[Any]:
    """``value`` as a list or tuple, of ``length`` items when given."""
    if not isinstance(value, list | tuple):
        raise DecodeError(f"{what}: expected a list, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise DecodeError(f"{what}: expected {length} items, got {len(value)}")
    return value


def integer(value: object, what: str, low: int = 0, high: int = 2**63) -> int:
    """``value`` as an int in ``[low, high)``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < high:
        raise DecodeError(f"{what}: expected an int in [{low}, {high}), got {value!r}")
    return value


def string(value: object, what: str) -> str:
    """``value`` as a str."""
    if not isinstance(value, str):
        raise DecodeError(f"{what}: expected a string, got {type(value).__name__}")
    return value


def unique_address(fields: Sequence[Any], what: str) -> UniqueAddress:
    """``[host, port, incarnation]`` as a `UniqueAddress`."""
    host = string(fields[0], f"{what} host")
    port = integer(fields[1], f"{what} port", 0, 65536)
    incarnation = integer(fields[2], f"{what} incarnation", 0, MAX_INCARNATION)
    return UniqueAddress(Address(host, port), incarnation)


def clock_from_wire(value: object) -> VectorClock:
    """The inverse of `clock_to_wire`; counters are >= 1 and keys unique."""
    versions: dict[str, int] = {}
    for entry in seq(value, "version"):
        key, counter = seq(entry, "version entry", 2)
        key = string(key, "version key")
        if key in versions:
            raise DecodeError(f"version: duplicate key {key!r}")
        versions[key] = integer(counter, "version counter", 1)
    return VectorClock(versions)


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as canonical plain data (tuples become lists).

    Raises:
        DecodeError: a type other than None, bool, int, finite float, str, bytes, list, tuple
            or str-keyed dict, or nesting deeper than 32.
    """
    if depth > _MAX_DEPTH:
        raise DecodeError("extension value nested too deep")
    if isinstance(value, float) and not math.isfinite(value):
        raise DecodeError("extension floats must be finite")
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    if isinstance(value, list | tuple):
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, dict):
        if any(not isinstance(k, str) for k in value):
            raise DecodeError("extension dict keys must be strings")
        return {k: plain(v, depth + 1) for k, v in value.items()}
    raise DecodeError(f"extension values are plain data, got {type(value).__name__}")


def decode_gossip(data: object) -> GossipParts:
    """Check the `Gossip.to_wire` layout and return its fields."""
    fields = seq(data, "gossip", 7)
    check_format(fields[0])
    members: list[Member] = []
    for raw in seq(fields[1], "members"):
        host, port, inc, node_id, status, roles, up_number = seq(raw, "member", 7)
        code = integer(status, "member status", 0, len(_STATUS_BY_CODE))
        members.append(
            Member(
                unique_address((host, port, inc), "member"),
                string(node_id, "member node_id"),
                _STATUS_BY_CODE[code],
                frozenset(string(r, "member role") for r in seq(roles, "member roles")),
                integer(up_number, "member up_number"),
            )
        )
    nodes = [m.unique_address for m in members]
    if nodes != sorted(set(nodes)):
        raise DecodeError("members: not sorted by unique address or duplicated")

    def node_at(index: object, what: str) -> UniqueAddress:
        return nodes[integer(index, what, 0, len(nodes))]

    rows: dict[UniqueAddress, Row] = {}
    row_versions: dict[UniqueAddress, int] = {}
    for raw in seq(fields[2], "reachability"):
        observer_index, row_version, records = seq(raw, "reachability row", 3)
        observer = node_at(observer_index, "reachability observer")
        if observer in row_versions:
            raise DecodeError(f"reachability: duplicate observer {observer}")
        row_versions[observer] = integer(row_version, "reachability row version", 1)
        row: dict[UniqueAddress, ReachabilityStatus] = {}
        for record in seq(records, "reachability records"):
            subject_index, status_code = seq(record, "reachability record", 2)
            subject = node_at(subject_index, "reachability subject")
            row[subject] = _REACH_BY_CODE[integer(status_code, "reachability status", 1, 3)]
        rows[observer] = row
    seen = [node_at(i, "seen index") for i in seq(fields[3], "seen")]
    tombstones: list[tuple[UniqueAddress, float, int]] = []
    for raw in seq(fields[5], "tombstones"):
        entry = seq(raw, "tombstone", 5)
        at = entry[3]
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
            raise DecodeError(f"tombstone: removal time must be a finite number, got {at!r}")
        node = unique_address(entry[:3], "tombstone")
        tombstones.append((node, float(at), integer(entry[4], "tombstone counter")))
    if len({node for node, _, _ in tombstones}) != len(tombstones):
        raise DecodeError("tombstones: duplicate node")
    extensions: list[tuple[str, int, Any]] = []
    for raw in seq(fields[6], "extensions"):
        key, version, value = seq(raw, "extension", 3)
        entry_key = string(key, "extension key")
        extensions.append((entry_key, integer(version, "extension version", 1), plain(value)))
    if len({key for key, _, _ in extensions}) != len(extensions):
        raise DecodeError("extensions: duplicate key")
    return GossipParts(
        members, rows, row_versions, seen, clock_from_wire(fields[4]), tombstones, extensions
    )
