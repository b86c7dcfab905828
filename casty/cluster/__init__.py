"""Cluster membership: members, gossip, failure detection, split brain resolution, events."""
