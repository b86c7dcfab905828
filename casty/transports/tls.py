"""Length-prefixed frames over TLS 1.2+ with mutual authentication (built on the TCP transport)."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from pathlib import Path
from typing import Any, Final, Self, cast, final

from casty._calm_log import CalmLog
from casty.abc import Address, Connection, ConnectionHandler, Listener, Transport
from casty.errors import ConfigurationError, HandshakeFailed
from casty.registry import BackendURL
from casty.transports._framing import (
    DEFAULT_HIGH_WATER,
    HEADER_SIZE,
    OptionReader,
    check_frame_limit,
    check_positive,
    url_address,
)
from casty.transports.tcp import (
    StreamConnection,
    StreamListener,
    connect_errors,
    listen_host,
)

__all__ = ["TLSTransport"]

logger = logging.getLogger("casty.transports")

#: Seconds between two log lines about refused peers of the same kind (probes, scans).
REFUSAL_LOG_INTERVAL: Final = 10.0

#: What a listener sends first after a successful handshake: an empty frame. In TLS 1.3 the
#: client's handshake completes before the server has checked the client certificate, so
#: without this a refused client would only learn of it on its first read.
ACCEPTED: Final = b"\x00" * HEADER_SIZE

# RFC 4514 section 3 short names, keyed by the long names `ssl` reports; other attributes are
# written as dotted OIDs, as RFC 4514 (and `cryptography`'s rfc4514_string) does.
_SHORT_NAMES: Final = {
    "commonName": "CN",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}
_OIDS: Final = {
    "emailAddress": "1.2.840.113549.1.9.1",
    "serialNumber": "2.5.4.5",
    "surname": "2.5.4.4",
    "givenName": "2.5.4.42",
    "title": "2.5.4.12",
    "initials": "2.5.4.43",
    "generationQualifier": "2.5.4.44",
    "pseudonym": "2.5.4.65",
    "dnQualifier": "2.5.4.46",
    "businessCategory": "2.5.4.15",
    "postalCode": "2.5.4.17",
}


def _escape(value: str) -> str:
    # RFC 4514 section 2.4: escape the specials, a leading '#' or space and a trailing space.
    out = "".join("\\" + ch if ch in '\\,+"<>;' else "\\00" if ch == "\0" else ch for ch in value)
    if out.startswith(("#", " ")):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out


def subject_rfc4514(peercert: Any) -> str | None:
    """The subject of an ``SSLObject.getpeercert()`` dict as an RFC 4514 string.

    RDNs are written last to first, as RFC 4514 requires; ``None`` when there is no certificate.
    """
    if not peercert or "subject" not in peercert:
        return None
    rdns = []
    for rdn in reversed(peercert["subject"]):
        parts = [
            f"{_SHORT_NAMES.get(name) or _OIDS.get(name, name)}={_escape(value)}"
            for name, value in rdn
        ]
        rdns.append("+".join(parts))
    return ",".join(rdns)


def describe(exc: BaseException) -> str:
    """A one-line reason for a TLS failure (OpenSSL's reason code when there is one)."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, ConnectionResetError) and not str(exc):
        return "connection reset by peer"
    return str(exc) or type(exc).__name__


def _refused_by_tls(exc: BaseException | None) -> bool:
    """Whether a handshake failure is TLS refusing a peer (a certificate check, an alert), not
    a connection lost or cut short, which a node stopping mid-handshake causes as well."""
    return isinstance(exc, ssl.SSLError) and not isinstance(
        exc, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError
    )


class _Credentials:
    """PEM files turned into server and client contexts, rebuilt when a file changes on disk.

    The files are stat-ed (mtime, size, inode) before each new connection; a change rebuilds
    both contexts, so certificate rotation needs no restart. A rebuild that fails (say the
    certificate was replaced but not yet its key) keeps the previous contexts and retries on the
    next connection.
    """

    def __init__(
        self, cert: Path, key: Path, ca: Path, require_client_cert: bool, check_hostname: bool
    ) -> None:
        self._paths = (cert, key, ca)
        self._require_client_cert = require_client_cert
        self._check_hostname = check_hostname
        self._signature: tuple[tuple[int, int, int], ...] | None = None
        self._contexts: tuple[ssl.SSLContext, ssl.SSLContext] | None = None

    def contexts(self) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        try:
            signature = tuple(
                (st.st_mtime_ns, st.st_size, st.st_ino) for st in map(os.stat, self._paths)
            )
            if signature != self._signature or self._contexts is None:
                self._contexts = self._build()
                self._signature = signature
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            if self._contexts is None:
                raise ConfigurationError(
                    f"cannot load TLS credentials {', '.join(map(str, self._paths))}: "
                    f"{describe(exc)}"
                ) from exc
            logger.warning("keeping the previous TLS credentials: reload failed: %s", exc)
            return self._contexts
        return self._contexts

    def _build(self) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        cert, key, ca = (str(path) for path in self._paths)
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.minimum_version = ssl.TLSVersion.TLSv1_2
        server.load_cert_chain(cert, key)
        server.load_verify_locations(cafile=ca)
        server.verify_mode = ssl.CERT_REQUIRED if self._require_client_cert else ssl.CERT_OPTIONAL
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.minimum_version = ssl.TLSVersion.TLSv1_2
        client.check_hostname = self._check_hostname
        client.verify_mode = ssl.CERT_REQUIRED
        client.load_cert_chain(cert, key)
        client.load_verify_locations(cafile=ca)
        return server, client


class _PendingHandshake(asyncio.Protocol):
    """Holds an accepted socket, not reading, until the listener's task upgrades it to TLS."""

    def __init__(self, transport: TLSTransport, listener: StreamListener) -> None:
        self._owner = transport
        self._listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        transport.pause_reading()  # the ClientHello must reach the TLS layer, not this protocol
        self._listener.spawn(self._owner._accept(transport, self._listener), transport)


class _ClientConnection(StreamConnection):
    """The connecting side: usable once the listener's `ACCEPTED` marker has arrived.

    ``accepted`` resolves to ``None`` on the marker, or to the `HandshakeFailed` explaining the
    refusal (a result, not an exception, so an abandoned connect leaves nothing unretrieved).
    """

    def __init__(self, max_frame_size: int, high_water: int) -> None:
        super().__init__(max_frame_size, high_water)
        self._prefix = b""
        self.accepted: asyncio.Future[HandshakeFailed | None] = self._loop.create_future()

    def data_received(self, data: bytes) -> None:
        if not self.accepted.done():
            self._prefix += data
            if len(self._prefix) < HEADER_SIZE:
                return
            marker, data = self._prefix[:HEADER_SIZE], self._prefix[HEADER_SIZE:]
            self._prefix = b""
            if marker != ACCEPTED:
                refusal = HandshakeFailed("peer is not a Casty TLS listener", permanent=True)
                self.accepted.set_result(refusal)
                self.abort()
                return
            self.accepted.set_result(None)
            if not data:
                return
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.accepted.done():
            error = HandshakeFailed(
                f"peer refused the connection: {describe(exc)}"
                if exc is not None
                else "peer closed the connection before accepting it "
                "(does it trust this node's certificate?)",
                # Our TLS handshake is done, and a listener refusing our certificate closes
                # without an alert (asyncio aborts). A listener stopping in that one round trip
                # looks the same: rare, and its queued messages are then dropped early.
                permanent=exc is None or _refused_by_tls(exc),
            )
            error.__cause__ = exc
            self.accepted.set_result(error)
        super().connection_lost(exc)


@final
class TLSTransport(Transport):
    """Frames over TLS 1.2+ on TCP, with mutual authentication by default.

    Every node has a certificate and key signed by a cluster CA; both sides verify the other
    against that CA, and `Connection.peer_identity` is the peer certificate's subject as an
    RFC 4514 string (``"CN=node-1"``). Hostnames are not checked by default: the CA is private
    to the cluster, so every certificate it signed is a member; pass ``check_hostname=True``
    to also match the peer's host against the certificate's SANs. The PEM files are re-read
    for new connections when they change on disk (rotation without a restart); established
    connections keep their session. Build the files with ``casty cert`` (`casty.certs`).

    On the listening side a peer whose handshake fails (untrusted or expired certificate, no
    client certificate, plain TCP, silence past ``handshake_timeout``) is logged on the
    ``casty.transports`` logger and dropped; it never reaches the handler. Refusals are logged
    calmly (TCP health probes and port scans would otherwise log a line each): one line per
    reason every 10 s at most; the refusals of that reason held back in between are counted,
    and the count is printed at the end of the next line logged for that reason, so a burst
    followed by silence never reports it. After the handshake
    the listener sends one empty frame, which `connect` consumes: this is how a client refused
    by the server learns it from `connect` (`HandshakeFailed`) under TLS 1.3.

    URL: ``tls://[host[:port]]?cert=node.pem&key=node.key&ca=ca.pem`` with the options
    ``require_client_cert`` (default true), ``check_hostname`` (default false),
    ``handshake_timeout`` (seconds, default 5), and ``max_frame_size``, ``high_water`` and
    ``connect_timeout`` as for `TCPTransport`. SSL contexts go in as keywords only.

    Args:
        cert: PEM certificate (chain) of this node.
        key: PEM private key of ``cert``.
        ca: PEM bundle of the CAs that sign the cluster's certificates.
        server_context: instead of the files, a ready ``ssl.SSLContext`` for accepting (must
            allow no version below TLS 1.2); requires ``client_context`` too.
        client_context: the ``ssl.SSLContext`` for connecting.
        require_client_cert: refuse clients without a certificate signed by ``ca``.
        check_hostname: also match the server's certificate against the connected host.
        handshake_timeout: seconds a handshake may take before the peer is dropped.
        max_frame_size, high_water, connect_timeout, default_address: as for `TCPTransport`.

    Raises:
        ConfigurationError: neither the three files nor both contexts were given, a context
            allows TLS below 1.2, or an option is out of range. Missing or unreadable files
            raise `ConfigurationError` from `listen` / `connect` (the constructor does no I/O).

    Extra: none (``casty[tls]`` installs ``cryptography`` for ``casty cert``).
    Capabilities: peer identity.
    """

    def __init__(
        self,
        cert: str | os.PathLike[str] | None = None,
        key: str | os.PathLike[str] | None = None,
        ca: str | os.PathLike[str] | None = None,
        *,
        server_context: ssl.SSLContext | None = None,
        client_context: ssl.SSLContext | None = None,
        require_client_cert: bool = True,
        check_hostname: bool = False,
        handshake_timeout: float = 5.0,
        max_frame_size: int = Transport.DEFAULT_MAX_FRAME_SIZE,
        high_water: int = DEFAULT_HIGH_WATER,
        connect_timeout: float = 5.0,
        default_address: Address | None = None,
    ) -> None:
        self.max_frame_size = check_frame_limit(max_frame_size)
        self.high_water = check_positive("high_water", high_water)
        self.connect_timeout = check_positive("connect_timeout", connect_timeout)
        self.handshake_timeout = check_positive("handshake_timeout", handshake_timeout)
        self.default_address = default_address
        self.check_hostname = check_hostname
        # Refused peers (TCP health probes, port scans, bad certificates): one line per kind
        # of failure per interval, as remoting logs connections that never handshake.
        self._refusals = CalmLog(logger, time.monotonic, REFUSAL_LOG_INTERVAL)
        self._credentials: _Credentials | None = None
        self._fixed: tuple[ssl.SSLContext, ssl.SSLContext] | None = None
        if server_context is not None or client_context is not None:
            if server_context is None or client_context is None or cert or key or ca:
                raise ConfigurationError(
                    "TLSTransport takes either cert, key and ca, or both server_context and "
                    "client_context"
                )
            for context in (server_context, client_context):
                if context.minimum_version < ssl.TLSVersion.TLSv1_2 or (
                    context.minimum_version == ssl.TLSVersion.MINIMUM_SUPPORTED
                ):
                    raise ConfigurationError("TLS contexts must set minimum_version >= TLSv1_2")
            self._fixed = (server_context, client_context)
        elif cert and key and ca:
            self._credentials = _Credentials(
                Path(cert), Path(key), Path(ca), require_client_cert, check_hostname
            )
        else:
            raise ConfigurationError(
                "TLSTransport needs cert, key and ca (PEM paths): "
                "tls://?cert=node.pem&key=node.key&ca=ca.pem"
            )

    @classmethod
    def from_url(cls, url: BackendURL, **options: Any) -> Self:
        """Build from ``tls://host:port?cert=...&key=...&ca=...`` (see the class docstring).

        Raises:
            ConfigurationError: an unknown or malformed option, or missing credentials.
        """
        reader = OptionReader("tls", url.query, options)
        transport = cls(
            reader.text("cert"),
            reader.text("key"),
            reader.text("ca"),
            server_context=reader.keyword("server_context"),
            client_context=reader.keyword("client_context"),
            require_client_cert=reader.flag("require_client_cert", True),
            check_hostname=reader.flag("check_hostname", False),
            handshake_timeout=reader.number("handshake_timeout", 5.0),
            max_frame_size=reader.integer("max_frame_size", cls.DEFAULT_MAX_FRAME_SIZE),
            high_water=reader.integer("high_water", DEFAULT_HIGH_WATER),
            connect_timeout=reader.number("connect_timeout", 5.0),
            default_address=reader.keyword("default_address", url_address(url)),
        )
        reader.finish()
        return transport

    def _contexts(self) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        if self._fixed is not None:
            return self._fixed
        assert self._credentials is not None
        return self._credentials.contexts()

    async def listen(self, address: Address, handler: ConnectionHandler) -> Listener:
        """Bind ``address`` and run ``handler`` for each peer that completes the handshake.

        Raises:
            ConnectFailed: the address cannot be bound.
            ConfigurationError: the certificate files cannot be loaded.
        """
        self._contexts()  # fail now on unusable credentials, not on the first peer
        loop = asyncio.get_running_loop()
        listener = StreamListener(handler)
        with connect_errors(f"cannot listen on {address}"):
            server = await loop.create_server(
                lambda: _PendingHandshake(self, listener),
                listen_host(address),
                address.port,
                reuse_address=True,
            )
        listener.bind(server)
        return listener

    async def _accept(self, raw: asyncio.Transport, listener: StreamListener) -> None:
        """Handshake an accepted socket, then serve it; a failure is logged and dropped."""
        peer = raw.get_extra_info("peername")
        connection = StreamConnection(self.max_frame_size, self.high_water)
        connection.learn_addresses(raw)
        try:
            server_context = self._contexts()[0]
            upgraded = await asyncio.get_running_loop().start_tls(
                raw,
                connection,
                server_context,
                server_side=True,
                ssl_handshake_timeout=self.handshake_timeout,
            )
            if upgraded is None:
                raise ConnectionResetError("peer left during the handshake")
        except (OSError, ConfigurationError) as exc:  # ssl.SSLError, resets, handshake timeout
            reason = describe(exc)
            self._refusals.warning(reason, "refused TLS peer %s: %s", peer, reason)
            raw.abort()
            return
        finally:
            listener.release(raw)
        connection.connection_made(upgraded)
        connection._identity = subject_rfc4514(upgraded.get_extra_info("peercert"))
        upgraded.write(ACCEPTED)
        await listener.serve(connection)

    async def connect(self, address: Address, timeout: float | None = None) -> Connection:
        """Connect, handshake and wait for the listener's acceptance within ``timeout`` seconds.

        Raises:
            ConnectFailed: the TCP connection was refused, unreachable or timed out.
            HandshakeFailed: the TLS handshake failed or the server refused this node (untrusted,
                expired or missing certificate), or did not accept it within the timeout.
            ConfigurationError: the certificate files cannot be loaded.

        Cancellation closes the half-open connection.
        """
        client_context = self._contexts()[1]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.connect_timeout if timeout is None else timeout)
        with connect_errors(f"cannot connect to {address}"):
            async with asyncio.timeout_at(deadline):
                raw, _ = await loop.create_connection(asyncio.Protocol, address.host, address.port)
        connection = _ClientConnection(self.max_frame_size, self.high_water)
        try:
            async with asyncio.timeout_at(deadline):
                upgraded = await loop.start_tls(
                    raw,
                    connection,
                    client_context,
                    server_hostname=address.host,
                    ssl_handshake_timeout=self.handshake_timeout,
                )
                if upgraded is None:
                    raise ConnectionResetError("peer left during the handshake")
                connection.connection_made(upgraded)
                connection._identity = subject_rfc4514(upgraded.get_extra_info("peercert"))
                refusal = await connection.accepted
            if refusal is not None:
                raise refusal
        except HandshakeFailed:
            connection.abort()
            raise
        except OSError as exc:  # ssl.SSLError, resets, TimeoutError
            connection.abort()
            raw.abort()
            reason = "timed out" if isinstance(exc, TimeoutError) else describe(exc)
            raise HandshakeFailed(
                f"TLS handshake with {address} failed: {reason}", permanent=_refused_by_tls(exc)
            ) from exc
        except asyncio.CancelledError:
            connection.abort()
            raw.abort()
            raise
        return connection

    def __repr__(self) -> str:
        return f"TLSTransport(max_frame_size={self.max_frame_size})"
