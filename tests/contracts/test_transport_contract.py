"""The Transport contract over every built-in transport, each built from its URL."""

from __future__ import annotations

import itertools
import ssl
from pathlib import Path
from typing import Any

import pytest

from casty.abc import Address, Transport
from casty.certs import create_ca, create_node_certificate
from casty.testing.transport_contract import (
    RawConnector,
    RawPeer,
    TransportCapabilities,
    TransportContract,
    TransportFactory,
    open_stream_raw_peer,
)
from casty.transports import as_transport
from casty.transports.memory import MemoryNetwork

_networks = itertools.count()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway cluster CA and one node certificate, shared by the session."""
    directory = tmp_path_factory.mktemp("contract-ca")
    ca = create_ca(directory)
    node = create_node_certificate("node-1", directory)
    return {"ca": ca.cert, "cert": node.cert, "key": node.key}


class TestTransportContract(TransportContract):
    @pytest.fixture(params=["memory", "tcp", "tls"])
    def backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def network(self, backend: str) -> MemoryNetwork:
        return MemoryNetwork.named(f"contract-{next(_networks)}")

    @pytest.fixture
    def transport_factory(
        self, backend: str, network: MemoryNetwork, tls_files: dict[str, Path]
    ) -> TransportFactory:
        if backend == "memory":
            url = f"memory://{network.name}?identity=CN%3Dmemory-peer"
        elif backend == "tcp":
            url = "tcp://"
        else:
            url = "tls://?cert={cert}&key={key}&ca={ca}".format(**tls_files)

        def factory(**options: Any) -> Transport:
            return as_transport(url, **options)

        return factory

    @pytest.fixture
    def capabilities(self, backend: str) -> TransportCapabilities:
        return TransportCapabilities(peer_identity=backend != "tcp", raw_peers=True)

    @pytest.fixture
    def listen_address(self, backend: str) -> Address:
        return Address("server", 0) if backend == "memory" else Address("127.0.0.1", 0)

    @pytest.fixture
    def raw_connector(
        self, backend: str, network: MemoryNetwork, tls_files: dict[str, Path]
    ) -> RawConnector:
        if backend == "memory":
            return network.raw_connect
        if backend == "tcp":
            return open_stream_raw_peer
        context = ssl.create_default_context(cafile=str(tls_files["ca"]))
        context.check_hostname = False
        context.load_cert_chain(tls_files["cert"], tls_files["key"])

        async def connect(address: Address) -> RawPeer:
            return await open_stream_raw_peer(address, context)

        return connect
