"""What ``casty status`` shows: a cluster's members, leader and shards, read by a `ClusterClient`.

`fetch_status` connects to one contact point as an external client (it does not join),
takes the first `TopologySnapshot` and closes; `status_document` turns a snapshot into plain
JSON-able data; `render_status` prints that as a table; `contact_problem` says why the
contact point is not a serving member (still joining, downed), for ``casty status`` to exit 1.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from casty.abc import Address
from casty.client.client import ClusterClient
from casty.cluster.events import TopologySnapshot
from casty.errors import ConnectFailed

__all__ = ["contact_problem", "fetch_status", "render_status", "status_document"]


async def fetch_status(
    contact: str,
    *,
    system_name: str = "casty",
    transport: str = "tcp://",
    timeout: float = 5.0,
) -> dict[str, Any]:
    """The `status_document` of the cluster ``contact`` (``"host:port"``) belongs to.

    Args:
        contact: a member's ``host:port``.
        system_name: the cluster's system name.
        transport: the members' transport URL (``"tls://?cert=..&key=..&ca=.."`` for TLS).
        timeout: seconds to wait for the contact point's topology.

    Raises:
        ConfigurationError: ``contact`` is not ``host:port``.
        ConnectFailed: no topology within ``timeout`` (not a member, another system name or
            transport, or unreachable).
    """
    try:
        async with ClusterClient(
            contact_points=[contact],
            system_name=system_name,
            transport=transport,
            connect_timeout=timeout,
        ) as client:
            snapshot = client.topology
    except ConnectFailed as exc:
        raise ConnectFailed(
            f"{exc} (is it a member of a cluster named {system_name!r}, reachable over "
            f"{transport.split('?', 1)[0]}?)"
        ) from exc
    if snapshot is None:  # __aenter__ returns only after the first snapshot
        raise ConnectFailed(f"{contact} sent no topology")
    return status_document(
        snapshot,
        contact=contact,
        system_name=system_name,
        # The handshake admits only the address a member advertises: the contact's own.
        contact_address=Address.parse(contact),
    )


def status_document(
    snapshot: TopologySnapshot,
    *,
    contact: str = "",
    system_name: str = "",
    contact_address: Address | None = None,
) -> dict[str, Any]:
    """A snapshot as plain data (what ``casty status --json`` prints).

    Keys: ``system``, ``contact``, ``contact_status`` (the status of the member at
    ``contact_address``, the contact point as the members know it; None when it is not in
    the snapshot: not joined yet), ``leader`` (address or None), ``members``
    (one dict per member: ``address``, ``node_id``, ``status``, ``roles``, ``reachable``,
    ``up_number``, ``incarnation``, ``shards`` (type name to shards it hosts)), and
    ``shards`` (type name to node address to shard count, nodes that are no longer members
    included).
    """
    per_type: dict[str, Counter[str]] = {
        name: Counter(str(node) for node in homes.values())
        for name, homes in sorted(snapshot.shard_allocations.items())
    }
    members = [
        {
            "address": str(m.address),
            "node_id": m.node_id,
            "status": m.status.value,
            "roles": sorted(m.roles),
            "reachable": m.address not in snapshot.unreachable,
            "up_number": m.up_number,
            "incarnation": m.unique_address.incarnation,
            "shards": {name: counts[str(m.address)] for name, counts in per_type.items()},
        }
        for m in snapshot.members
    ]
    own = next((m for m in snapshot.members if m.address == contact_address), None)
    return {
        "system": system_name,
        "contact": contact,
        "contact_status": own.status.value if own is not None else None,
        "leader": str(snapshot.leader) if snapshot.leader is not None else None,
        "members": members,
        "shards": {name: dict(sorted(counts.items())) for name, counts in per_type.items()},
    }


def contact_problem(document: dict[str, Any]) -> str | None:
    """Why the contact point of a `status_document` is not a serving member, or None.

    It is not when it knows no member at all (still joining: its seeds do not answer, or the
    leader has not admitted it), or when its own status is ``joining`` (waiting for the
    leader or for ``required_quorum``), ``down`` or ``removed``.
    """
    contact, status = document["contact"], document.get("contact_status")
    if not document["members"]:
        return (
            f"{contact} is not a member yet: it is still joining and knows no member "
            "(are its seed nodes up?)"
        )
    if status == "joining":
        return (
            f"{contact} is not up yet: it is joining (waiting for the leader to admit it, "
            "or for required_quorum members)"
        )
    if status in ("down", "removed"):
        return f"{contact} is no longer a member: it is {status}"
    return None


def render_status(document: dict[str, Any]) -> str:
    """A `status_document` as a text table, the leader and the shard counts below it."""
    header = ("ADDRESS", "NODE ID", "STATUS", "ROLES", "REACHABLE", "SHARDS")
    rows = [header]
    for m in document["members"]:
        shards = ", ".join(f"{name}={n}" for name, n in m["shards"].items()) or "-"
        leader = " (leader)" if m["address"] == document["leader"] else ""
        rows.append(
            (
                m["address"] + leader,
                m["node_id"],
                m["status"],
                ",".join(m["roles"]) or "-",
                "yes" if m["reachable"] else "NO",
                shards,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.append("")
    lines.append(f"leader: {document['leader'] or 'none'}")
    members = {m["address"] for m in document["members"]}
    for name, counts in document["shards"].items():
        total = sum(counts.values())
        stale = [node for node in counts if node not in members]
        note = f" ({', '.join(stale)} no longer a member)" if stale else ""
        lines.append(f"shards of {name}: {total} allocated over {len(counts)} nodes{note}")
    return "\n".join(lines)
