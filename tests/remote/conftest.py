"""Fixtures for the remoting tests: remote systems on real sockets (port 0) and probes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from remote_support import FAST, MakeSystem, Pki, Recorder

from casty.actors import ActorSystem, DeadLetter, EventStreamSubscribe
from casty.certs import create_ca, create_node_certificate
from casty.remote import RemoteActorSystem


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
