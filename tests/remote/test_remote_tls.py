"""Remoting over TLS with mutual authentication (a throwaway CA built with `casty.certs`)."""

from __future__ import annotations

from remote_support import (
    Echo,
    MakeSystem,
    Num,
    Pki,
    Recorder,
    Reply,
    Watcher,
    echo_behavior,
    watched_by,
)

from casty.actors import Behaviors, Terminated
from casty.testing import wait_until


async def test_tell_ask_and_watch_over_mutual_tls(make_system: MakeSystem, pki: Pki) -> None:
    a = await make_system(transport=pki.transport(pki.node_a))
    b = await make_system(transport=pki.transport(pki.node_b))
    sink = Recorder(b, "sink")
    b.spawn(echo_behavior(), "echo")
    target = a.resolve(sink.ref.address)
    for n in range(500):
        target.tell(Num(n))
    assert await sink.wait_count(500) == [Num(n) for n in range(500)]
    echo = a.resolve(b.address + "/user/echo")
    assert await a.ask(echo, lambda r: Echo("secret", r), timeout=5.0) == Reply("secret")
    doomed = b.spawn(Behaviors.ignore(), "doomed")
    watcher = Watcher(a, "watcher")
    remote = a.resolve(doomed.address)
    await watcher.watch(remote)
    await wait_until(lambda: watched_by(b) == 1)
    await b.stop(doomed)
    await wait_until(lambda: watcher.terminated() == [Terminated(remote)])


async def test_tls_by_url(make_system: MakeSystem, pki: Pki) -> None:
    def url(files: object) -> str:
        cert, key = files.cert, files.key  # type: ignore[attr-defined]
        return f"tls://?cert={cert}&key={key}&ca={pki.ca}"

    a = await make_system(transport=url(pki.node_a))
    b = await make_system(transport=url(pki.node_b))
    b.spawn(echo_behavior(), "echo")
    echo = a.resolve(b.address + "/user/echo")
    assert await a.ask(echo, lambda r: Echo("by url", r), timeout=5.0) == Reply("by url")
