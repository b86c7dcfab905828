"""TLS material shared by the transport and remoting benchmarks."""

from __future__ import annotations

import ssl
from pathlib import Path

from casty.abc import Transport
from casty.transports.tcp import TCPTransport
from casty.transports.tls import TLSTransport


def transport_for(kind: str, pki: Path) -> Transport:
    if kind == "tcp":
        return TCPTransport()
    return TLSTransport(pki / "node.pem", pki / "node.key", pki / "ca.pem")


def ssl_contexts(pki: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pki / "node.pem", pki / "node.key")
    server.load_verify_locations(pki / "ca.pem")
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.load_cert_chain(pki / "node.pem", pki / "node.key")
    client.load_verify_locations(pki / "ca.pem")
    return server, client
