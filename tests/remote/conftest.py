"""Fixtures for the remoting tests: remote systems on real sockets (port 0) and probes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from remote_support import Recorder

from casty.actors import ActorSystem, DeadLetter, EventStreamSubscribe
from casty.certs import CertificateFiles, create_ca, create_node_certificate
from casty.remote import RemoteActorSystem, RemoteSettings
from casty.transports import TLSTransport

#: Short timeouts so failure paths finish quickly; each test may override them.
FAST = RemoteSettings(
    handshake_timeout=1.0,
    failure_timeout=1.0,
    min_backoff=0.02,
    max_backoff=0.2,
    heartbeat_interval=0.05,
    acceptable_heartbeat_pause=0.1,
    phi_threshold=3.0,
    shutdown_flush_timeout=0.5,
)

MakeSystem = Callable[..., Awaitable[RemoteActorSystem]]


@pytest.fixture
async def make_system() -> AsyncIterator[MakeSystem]:
    """Start a `RemoteActorSystem` (name "t", 127.0.0.1, port 0, fast settings by default);
    every system made is shut down when the test ends."""
    async with AsyncExitStack() as stack:

        async def make(name: str = "t", **options: Any) -> RemoteActorSystem:
            options.setdefault("settings", FAST)
            system = RemoteActorSystem(name, **options)
            return await stack.enter_async_context(system)

        yield make


@pytest.fixture
def dead_letters() -> Callable[[ActorSystem], Recorder]:
    """Subscribe a recorder to `DeadLetter` on a system."""

    def subscribe(system: ActorSystem) -> Recorder:
        recorder = Recorder(system, "dead-letter-probe")
        system.event_stream.tell(EventStreamSubscribe(event_type=DeadLetter, handler=recorder.ref))
        return recorder

    return subscribe


@dataclass(frozen=True)
class Pki:
    """A throwaway cluster CA (built with `casty.certs`) and two node certificates."""

    ca: Path
    node_a: CertificateFiles
    node_b: CertificateFiles
    foreign_ca: Path
    foreign: CertificateFiles

    def transport(self, files: CertificateFiles, ca: Path | None = None) -> TLSTransport:
        return TLSTransport(files.cert, files.key, ca or self.ca, handshake_timeout=1.0)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    home = tmp_path_factory.mktemp("remote-pki")
    ca = create_ca(home / "ca")
    foreign_ca = create_ca(home / "foreign", common_name="Foreign CA")
    return Pki(
        ca=ca.cert,
        node_a=create_node_certificate("node-a", home / "ca", home / "a"),
        node_b=create_node_certificate("node-b", home / "ca", home / "b"),
        foreign_ca=foreign_ca.cert,
        foreign=create_node_certificate("intruder", home / "foreign", home / "x"),
    )


@pytest.fixture(autouse=True)
def _no_internal_failures(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test during which a casty task crashed or asyncio lost an exception."""
    yield
    crashes = [
        r
        for r in caplog.get_records("call") + caplog.get_records("teardown")
        if (r.name.startswith("casty") and r.exc_info) or r.name == "asyncio"
    ]
    assert not crashes, [r.getMessage() for r in crashes]
