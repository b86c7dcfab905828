"""A Prometheus endpoint serving ``system.metrics()`` (extra: ``pip install 'casty[metrics]'``).

Started by a configured node (``[metrics] prometheus_port`` in ``casty.toml``). The HTTP
server runs in a thread of ``prometheus_client``; each scrape takes the snapshot on the node's
event loop (so counters are read where they change) and waits for it at most 5 s.

Metric families, each labelled with ``node`` (the node id): ``casty_messages_processed_total``,
``casty_dead_letters_total{reason}``, ``casty_mailbox_high_water``, ``casty_members{status}``,
``casty_region_shards{type}``, ``casty_region_entities{type}``,
``casty_journal_write_seconds`` (a histogram), and per peer ``casty_peer_frames_sent_total``,
``casty_peer_bytes_sent_total``, ``casty_peer_frames_received_total``,
``casty_peer_bytes_received_total`` (label ``peer``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from casty.errors import CastyError
from casty.metrics import Metrics

if TYPE_CHECKING:
    from casty.actors.system import ActorSystem

__all__ = ["Endpoint", "collect_families", "serve"]

_SCRAPE_TIMEOUT = 5.0  # seconds a scrape waits for the event loop


class Endpoint:
    """A running endpoint; `close` stops it."""

    def __init__(self, server: Any, thread: threading.Thread, host: str) -> None:
        self._server = server
        self._thread = thread
        self.port: int = server.server_port
        self.url = f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            self._thread.join(_SCRAPE_TIMEOUT)


def serve(system: ActorSystem, host: str, port: int, node_id: str | None = None) -> Endpoint:
    """Serve ``system``'s metrics on ``http://host:port/metrics`` (port 0: a free one).

    Raises:
        CastyError: ``prometheus_client`` is not installed, or the port cannot be bound.
    """
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError as exc:
        raise CastyError(
            f"the Prometheus endpoint needs prometheus-client ({exc}); install it with "
            "`pip install 'casty[metrics]'`"
        ) from exc
    loop = asyncio.get_running_loop()
    label = node_id if node_id is not None else system._address_prefix

    class _Collector:
        def collect(self) -> Iterator[Any]:
            async def take() -> Metrics:
                return system.metrics()

            if loop.is_closed():
                return iter(())
            future = asyncio.run_coroutine_threadsafe(take(), loop)
            return collect_families(future.result(_SCRAPE_TIMEOUT), label)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise CastyError(f"cannot serve Prometheus metrics on {host}:{port}: {exc}") from exc
    return Endpoint(server, thread, host)


def collect_families(metrics: Metrics, node: str) -> Iterator[Any]:
    """The Prometheus metric families of a snapshot."""
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    processed = CounterMetricFamily(
        "casty_messages_processed", "Messages handed to actors' handlers.", labels=["node"]
    )
    processed.add_metric([node], metrics.messages_processed)
    yield processed
    dead = CounterMetricFamily(
        "casty_dead_letters", "Dropped messages by reason.", labels=["node", "reason"]
    )
    for reason, count in sorted(metrics.dead_letters.items()):
        dead.add_metric([node, reason], count)
    yield dead
    high = GaugeMetricFamily(
        "casty_mailbox_high_water", "The deepest mailbox seen.", labels=["node"]
    )
    high.add_metric([node], metrics.mailbox_high_water)
    yield high
    members = GaugeMetricFamily(
        "casty_members", "Cluster members by status.", labels=["node", "status"]
    )
    for status, count in sorted(metrics.members.items()):
        members.add_metric([node, status], count)
    yield members
    shards = GaugeMetricFamily("casty_region_shards", "Shards hosted.", labels=["node", "type"])
    entities = GaugeMetricFamily("casty_region_entities", "Live entities.", labels=["node", "type"])
    for name, region in sorted(metrics.regions.items()):
        shards.add_metric([node, name], region.shards)
        entities.add_metric([node, name], region.entities)
    yield shards
    yield entities
    latency = metrics.journal_write_latency
    buckets: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip((*latency.bounds, float("inf")), latency.counts, strict=True):
        total += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
    histogram = HistogramMetricFamily(
        "casty_journal_write_seconds", "Event-sourced journal write latency.", labels=["node"]
    )
    histogram.add_metric([node], buckets, latency.sum)
    yield histogram
    for field, text in (
        ("frames_sent", "Frames sent to the peer."),
        ("bytes_sent", "Bytes sent to the peer."),
        ("frames_received", "Frames received from the peer."),
        ("bytes_received", "Bytes received from the peer."),
    ):
        family = CounterMetricFamily(f"casty_peer_{field}", text, labels=["node", "peer"])
        for peer, traffic in sorted(metrics.peers.items()):
            family.add_metric([node, peer], getattr(traffic, field))
        yield family
