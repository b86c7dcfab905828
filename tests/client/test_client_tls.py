"""A ClusterClient reaches a cluster over mutual TLS, with a certificate of the cluster's CA."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import client_support  # noqa: F401  (puts the sharding harness on the path)
import pytest
from sharding_harness import Where, WhereIs, start_cluster, stop_all, where_entity

from casty import ActorRef, Behaviors, ShardEnvelope
from casty.certs import CertificateFiles, create_ca, create_node_certificate
from casty.client import ClusterClient
from casty.errors import ConnectFailed
from casty.sharding import wait_registered

pytestmark = pytest.mark.slow


def where_is(entity_id: str) -> Callable[[ActorRef[Any]], ShardEnvelope]:
    def factory(reply_to: ActorRef[Any]) -> ShardEnvelope:
        return ShardEnvelope(entity_id, WhereIs(reply_to))

    return factory


def tls_url(files: CertificateFiles, ca: Path) -> str:
    return f"tls://?cert={files.cert}&key={files.key}&ca={ca}"


async def test_a_client_with_a_certificate_of_the_cluster_ca_routes_over_tls(
    tmp_path: Path,
) -> None:
    ca = create_ca(tmp_path / "ca")
    member = create_node_certificate("member", tmp_path / "ca", tmp_path / "member")
    client_cert = create_node_certificate("client", tmp_path / "ca", tmp_path / "client")
    create_ca(tmp_path / "other")
    stranger = create_node_certificate("stranger", tmp_path / "other", tmp_path / "stranger")
    nodes = await start_cluster(2, transport=tls_url(member, ca.cert))
    try:
        for n in nodes:
            region = n.system.spawn(Behaviors.sharded(where_entity, num_shards=16), "where")
            await wait_registered(n.system, region)
        at = nodes[0].system.node_address
        async with ClusterClient(
            cluster_host=at.host,
            cluster_port=at.port,
            system_name="test",
            transport=tls_url(client_cert, ca.cert),
        ) as client:
            ref = await client.shard_ref("where", num_shards=16)
            for entity_id in (f"tls-{i}" for i in range(8)):
                answer: Where = await client.ask(ref, where_is(entity_id), timeout=10.0)
                assert answer.entity_id == entity_id
        intruder = ClusterClient(
            cluster_host=at.host,
            cluster_port=at.port,
            system_name="test",
            transport=tls_url(stranger, tmp_path / "other" / "ca.pem"),
            connect_timeout=1.0,
        )
        with pytest.raises(ConnectFailed):
            async with intruder:
                pass
    finally:
        await stop_all(nodes, leave=False)
