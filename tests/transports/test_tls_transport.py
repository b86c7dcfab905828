"""TLSTransport: mutual authentication, refusals, rotation and identity.

The certificate authorities are throwaway ones built with `casty.certs` once per session.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import shutil
import ssl
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from casty.abc import Address, Connection
from casty.certs import CertificateFiles, certificate_info, create_ca, create_node_certificate
from casty.errors import ConfigurationError, HandshakeFailed
from casty.testing import wait_until
from casty.testing.transport_contract import Recorder, echo
from casty.transports import as_transport
from casty.transports.tcp import TCPTransport
from casty.transports.tls import TLSTransport, subject_rfc4514


@dataclass(frozen=True)
class Pki:
    """A cluster CA with two nodes, an expired node, and a foreign CA with its own node."""

    ca: Path
    node_a: CertificateFiles
    node_b: CertificateFiles
    expired: CertificateFiles
    foreign_ca: Path
    foreign: CertificateFiles

    def transport(
        self, files: CertificateFiles, ca: Path | None = None, **options: Any
    ) -> TLSTransport:
        """A transport presenting ``files`` and trusting ``ca`` (the cluster CA by default)."""
        return TLSTransport(files.cert, files.key, ca or self.ca, **options)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    home = tmp_path_factory.mktemp("pki")
    ca = create_ca(home / "ca")
    now = dt.datetime.now(dt.UTC)
    foreign_ca = create_ca(home / "foreign", common_name="Foreign CA")
    return Pki(
        ca=ca.cert,
        node_a=create_node_certificate("node-a", home / "ca", home / "a"),
        node_b=create_node_certificate("node-b", home / "ca", home / "b"),
        expired=create_node_certificate(
            "old-node",
            home / "ca",
            home / "old",
            not_before=now - dt.timedelta(days=30),
            not_after=now - dt.timedelta(days=1),
        ),
        foreign_ca=foreign_ca.cert,
        foreign=create_node_certificate("intruder", home / "foreign", home / "intruder"),
    )


LOCAL = Address("127.0.0.1", 0)
STEP = 10.0


def client_context(pki: Pki, *, with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.check_hostname = False
    if with_certificate:
        context.load_cert_chain(pki.node_b.cert, pki.node_b.key)
    return context


def server_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.node_a.cert, pki.node_a.key)
    context.load_verify_locations(cafile=str(pki.ca))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


async def roundtrip(connection: Connection, payload: bytes) -> None:
    connection.send(payload)
    async with asyncio.timeout(STEP):
        assert await connection.receive() == payload


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refused TLS peer" in r.getMessage()]


async def test_peer_identity_is_the_certificate_subject_on_both_ends(pki: Pki) -> None:
    seen: list[str | None] = []

    async def handler(connection: Connection) -> None:
        seen.append(connection.peer_identity)
        await echo(connection)

    listener = await pki.transport(pki.node_a).listen(LOCAL, handler)
    async with listener, await pki.transport(pki.node_b).connect(listener.address) as client:
        await roundtrip(client, b"hello")
        assert client.peer_identity == certificate_info(pki.node_a.cert)["subject"]
    assert seen == [certificate_info(pki.node_b.cert)["subject"]] == ["CN=node-b"]


@pytest.mark.parametrize(
    ("client_files", "reason"),
    [
        ("foreign", "a client certificate from another CA"),
        ("expired", "an expired client certificate"),
    ],
)
async def test_server_refuses_untrusted_clients_and_never_calls_the_handler(
    pki: Pki, caplog: pytest.LogCaptureFixture, client_files: str, reason: str
) -> None:
    calls: list[Connection] = []

    async def handler(connection: Connection) -> None:
        calls.append(connection)

    caplog.set_level(logging.WARNING, logger="casty.transports")
    async with await pki.transport(pki.node_a).listen(LOCAL, handler) as listener:
        client = pki.transport(getattr(pki, client_files), ca=pki.ca)
        with pytest.raises(HandshakeFailed):
            await client.connect(listener.address)
        assert refusals(caplog), reason
    assert calls == []


@pytest.mark.parametrize("server_files", ["foreign", "expired"])
async def test_client_refuses_untrusted_servers(pki: Pki, server_files: str) -> None:
    # The server would accept the client (it trusts the cluster CA); the client refuses it.
    server = pki.transport(getattr(pki, server_files), ca=pki.ca)
    async with await server.listen(LOCAL, echo) as listener:
        with pytest.raises(HandshakeFailed, match="certificate"):
            await pki.transport(pki.node_b).connect(listener.address)


async def test_client_without_a_certificate_is_refused(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="casty.transports")
    recorder = Recorder()
    async with await pki.transport(pki.node_a).listen(LOCAL, recorder.handler) as listener:
        anonymous = TLSTransport(
            server_context=server_context(pki),
            client_context=client_context(pki, with_certificate=False),
        )
        with pytest.raises(HandshakeFailed):
            await anonymous.connect(listener.address)
        assert any("certificate" in message for message in refusals(caplog))
        assert recorder.outcomes.empty()


async def test_require_client_cert_false_accepts_anonymous_clients(pki: Pki) -> None:
    seen: list[str | None] = []

    async def handler(connection: Connection) -> None:
        seen.append(connection.peer_identity)
        await echo(connection)

    server = pki.transport(pki.node_a, require_client_cert=False)
    anonymous = TLSTransport(
        server_context=server_context(pki),
        client_context=client_context(pki, with_certificate=False),
    )
    listener = await server.listen(LOCAL, handler)
    async with listener, await anonymous.connect(listener.address) as client:
        await roundtrip(client, b"anonymous")
        assert client.peer_identity == "CN=node-a"
    assert seen == [None]


async def test_plain_tcp_peer_is_dropped_while_a_healthy_peer_keeps_working(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="casty.transports")
    listener = await pki.transport(pki.node_a).listen(LOCAL, echo)
    async with listener, await pki.transport(pki.node_b).connect(listener.address) as healthy:
        await roundtrip(healthy, b"before")
        plain = await TCPTransport().connect(listener.address)
        plain.send(b"I speak no TLS")
        await roundtrip(healthy, b"during")
        async with asyncio.timeout(STEP):
            assert await plain.receive_many() == []
        await plain.aclose()
        await roundtrip(healthy, b"after")
    assert any("wrong version number" in message for message in refusals(caplog))


async def test_silent_peer_is_dropped_after_the_handshake_timeout(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="casty.transports")
    server = pki.transport(pki.node_a, handshake_timeout=0.1)
    async with await server.listen(LOCAL, echo) as listener:
        reader, writer = await asyncio.open_connection(listener.address.host, listener.address.port)
        async with asyncio.timeout(STEP):
            assert await reader.read() == b""  # the server gave up on the silent peer
        writer.close()
    assert any("taking longer" in message for message in refusals(caplog))


def replace_file(source: Path, target: Path) -> None:
    staging = target.with_suffix(".staging")
    shutil.copyfile(source, staging)
    os.replace(staging, target)


async def test_rotated_certificate_files_are_used_for_new_connections(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    replace_file(pki.node_a.cert, cert)
    replace_file(pki.node_a.key, key)
    server = TLSTransport(cert, key, pki.ca)
    client = pki.transport(pki.node_b)
    listener = await server.listen(LOCAL, echo)
    async with listener, await client.connect(listener.address) as first:
        assert first.peer_identity == "CN=node-a"
        replace_file(pki.node_b.cert, cert)
        replace_file(pki.node_b.key, key)
        async with await client.connect(listener.address) as second:
            assert second.peer_identity == "CN=node-b"
            await roundtrip(first, b"old session still works")
        # A half-written rotation (a certificate without its key) keeps the last good pair.
        cert.write_text("not a certificate")
        caplog.set_level(logging.WARNING, logger="casty.transports")
        async with await client.connect(listener.address) as third:
            assert third.peer_identity == "CN=node-b"
            await roundtrip(third, b"still served")
    assert any("keeping the previous TLS credentials" in r.getMessage() for r in caplog.records)


async def test_check_hostname_refuses_a_certificate_for_another_host(
    pki: Pki, tmp_path: Path
) -> None:
    other = create_node_certificate("elsewhere", pki.ca.parent, tmp_path, sans=["other.example"])
    server = pki.transport(other)
    async with await server.listen(LOCAL, echo) as listener:
        strict = pki.transport(pki.node_b, check_hostname=True)
        with pytest.raises(HandshakeFailed, match="mismatch"):
            await strict.connect(listener.address)
        async with await pki.transport(pki.node_b).connect(listener.address) as lenient:
            await roundtrip(lenient, b"private CA: any member is trusted")


async def test_tls_url_builds_a_working_transport(pki: Pki) -> None:
    url = f"tls://127.0.0.1:0?cert={pki.node_a.cert}&key={pki.node_a.key}&ca={pki.ca}"
    transport = as_transport(url, handshake_timeout=2.0)
    assert isinstance(transport, TLSTransport)
    assert transport.default_address == Address("127.0.0.1", 0)
    assert transport.handshake_timeout == 2.0
    listener = await transport.listen(LOCAL, echo)
    async with listener, await transport.connect(listener.address) as client:
        await roundtrip(client, b"via url")


async def test_missing_or_unreadable_credentials_are_configuration_errors(
    pki: Pki, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match="cert, key and ca"):
        as_transport("tls://")
    with pytest.raises(ConfigurationError, match="unknown tls:// option"):
        as_transport("tls://?cert=a&key=b&ca=c&verify=0")
    missing = TLSTransport(tmp_path / "no.pem", tmp_path / "no.key", pki.ca)
    with pytest.raises(ConfigurationError, match="cannot load TLS credentials"):
        await missing.listen(LOCAL, echo)
    with pytest.raises(ConfigurationError, match="cannot load TLS credentials"):
        await missing.connect(Address("127.0.0.1", 1))


def test_contexts_allowing_old_tls_versions_are_refused(pki: Pki) -> None:
    weak = server_context(pki)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1 is deprecated: the point
        weak.minimum_version = ssl.TLSVersion.TLSv1
    with pytest.raises(ConfigurationError, match="TLSv1_2"):
        TLSTransport(server_context=weak, client_context=client_context(pki, with_certificate=True))
    with pytest.raises(ConfigurationError, match="either"):
        TLSTransport(pki.node_a.cert, server_context=weak)


def test_subject_is_written_as_rfc4514_like_cryptography_does() -> None:
    attributes = [
        (NameOID.COUNTRY_NAME, "countryName", "BR"),
        (NameOID.ORGANIZATION_NAME, "organizationName", " Casty, Inc.+"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "organizationalUnitName", "#ops;<dev>"),
        (NameOID.EMAIL_ADDRESS, "emailAddress", 'ops@example.com "x"'),
        (NameOID.COMMON_NAME, "commonName", "node\\1 "),
    ]
    name = x509.Name([x509.NameAttribute(oid, value) for oid, _, value in attributes])
    peercert = {"subject": tuple(((long, value),) for _, long, value in attributes)}
    assert subject_rfc4514(peercert) == name.rfc4514_string()
    assert subject_rfc4514({}) is None
    assert subject_rfc4514(None) is None


async def test_probes_that_connect_and_close_are_logged_calmly(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    # TCP health probes and port scans: connect, then close without a ClientHello.
    caplog.set_level(logging.WARNING, logger="casty.transports")
    transport = pki.transport(pki.node_a)
    async with await transport.listen(LOCAL, echo) as listener:
        for _ in range(100):
            _, writer = await asyncio.open_connection(listener.address.host, listener.address.port)
            writer.close()
            await writer.wait_closed()

        def seen() -> int:
            return len(refusals(caplog)) + sum(transport._refusals._held.values())

        await wait_until(lambda: seen() == 100, message="every probe was refused")
        async with await pki.transport(pki.node_b).connect(listener.address) as healthy:
            await roundtrip(healthy, b"still serving")
    lines = refusals(caplog)
    assert 1 <= len(lines) <= 3, lines  # one line per kind of failure within 10 s
    assert "127.0.0.1" in lines[0]  # the peer's address stays in the line


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0])
def test_handshake_timeout_must_be_a_finite_positive_number(pki: Pki, value: float) -> None:
    url = f"tls://?cert={pki.node_a.cert}&key={pki.node_a.key}&ca={pki.ca}"
    with pytest.raises(ConfigurationError, match="handshake_timeout"):
        as_transport(f"{url}&handshake_timeout={value}")
    with pytest.raises(ConfigurationError, match="handshake_timeout"):
        pki.transport(pki.node_a, handshake_timeout=value)
