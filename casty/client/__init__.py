"""External clients: `ClusterClient` talks to a cluster without joining it (docs/client.md)."""

from casty.client.client import ClientShardRef, ClusterClient
from casty.client.routing import ClientStatistics

__all__ = ["ClientShardRef", "ClientStatistics", "ClusterClient"]
