"""What a configured node starts beside its actors: its journal, the node id in its log
records (`casty.logs`) and the Prometheus endpoint (`casty.prometheus`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from casty import logs
from casty.journals import as_journal

if TYPE_CHECKING:
    from casty.cluster.system import ClusteredActorSystem

__all__ = ["start_node_services", "stop_node_services"]

log = logging.getLogger("casty.cluster")


async def start_node_services(system: ClusteredActorSystem) -> None:
    """Start them (the address is bound).

    Raises:
        BackendNotFound: the journal's scheme is unknown or its extra is not installed.
        JournalUnavailable: the journal cannot be opened.
        CastyError: the Prometheus endpoint cannot start (see `casty.prometheus`).
    """
    node_id = system._node_id if system._node_id is not None else str(system.node_address)
    logs.node_started(id(system), node_id, system._context)
    node = system.configuration
    if node.journal.url is not None and system._journal is None:
        journal = as_journal(node.journal.url)
        await journal.open()
        system._journal = journal
    port = node.metrics.prometheus_port
    if port is not None and system._prometheus is None:
        from casty.prometheus import serve

        system._prometheus = serve(system, node.metrics.prometheus_host, port, node_id)
        log.info("%s: Prometheus metrics on %s", node_id, system._prometheus.url)


async def stop_node_services(system: ClusteredActorSystem) -> None:
    """Stop them (idempotent)."""
    endpoint, system._prometheus = system._prometheus, None
    if endpoint is not None:
        endpoint.close()
    journal, system._journal = system._journal, None
    if journal is not None:
        await journal.aclose()
    logs.node_stopped(id(system))
