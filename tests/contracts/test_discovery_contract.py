"""Every built-in discovery passes `DiscoveryContract`: static, DNS A/AAAA and SRV with a fake
resolver answering real dnspython messages, and a plain function wrapped by `as_discovery`."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, cast

import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import pytest

from casty.abc import Address, Discovery
from casty.discovery import as_discovery
from casty.testing.discovery_contract import (
    SHARED_PORT,
    DiscoveryCapabilities,
    DiscoveryContract,
    PublishedSeeds,
)

SERVICE = "_casty._tcp.seeds.test."
HOST = "seeds.test."


def dns_error(kind: type[Exception], **details: Any) -> Exception:
    """A dnspython exception (their constructors are untyped)."""
    return kind(**details)


def answer(qname: str, rdtype: str, texts: list[str], ttl: int = 30) -> dns.resolver.Answer:
    """A real dnspython `Answer`, as a nameserver's response would produce it."""
    name = dns.name.from_text(qname)
    kind = dns.rdatatype.from_text(rdtype)
    response = cast(
        dns.message.QueryMessage, dns.message.make_response(dns.message.make_query(name, kind))
    )
    rrset = response.find_rrset(response.answer, name, dns.rdataclass.IN, kind, create=True)
    for text in texts:
        rrset.add(dns.rdata.from_text(dns.rdataclass.IN, kind, text), ttl)
    return dns.resolver.Answer(name, kind, dns.rdataclass.IN, response)


class PublishedZone:
    """A fake resolver serving ``published`` as A/AAAA records of `HOST` and SRV records of
    `SERVICE` (one target per seed), failing like a dead nameserver when unavailable."""

    def __init__(self, published: PublishedSeeds) -> None:
        self.published = published
        self._zone: tuple[frozenset[Address], dict[tuple[dns.name.Name, str], list[str]]] | None
        self._zone = None

    async def resolve(self, qname: str, rdtype: str) -> dns.resolver.Answer:
        if not self.published.available:
            raise dns_error(dns.resolver.LifetimeTimeout, timeout=5.0, errors=[])
        records = self.records()
        texts = records.get((dns.name.from_text(qname), rdtype))
        if texts is None:
            names = {name for name, _ in records}
            if dns.name.from_text(qname) in names:
                raise dns_error(dns.resolver.NoAnswer)
            raise dns_error(dns.resolver.NXDOMAIN)
        return answer(qname, rdtype, texts)

    def records(self) -> dict[tuple[dns.name.Name, str], list[str]]:
        if self._zone is None or self._zone[0] is not self.published.seeds:
            self._zone = (self.published.seeds, self.build_zone())
        return self._zone[1]

    def build_zone(self) -> dict[tuple[dns.name.Name, str], list[str]]:
        records: dict[tuple[dns.name.Name, str], list[str]] = {}
        for i, seed in enumerate(sorted(self.published.seeds)):
            kind = "AAAA" if ipaddress.ip_address(seed.host).version == 6 else "A"
            records.setdefault((dns.name.from_text(HOST), kind), []).append(seed.host)
            target = f"node-{i}.{HOST}"
            records.setdefault((dns.name.from_text(SERVICE), "SRV"), []).append(
                f"10 5 {seed.port} {target}"
            )
            records[(dns.name.from_text(target), kind)] = [seed.host]
        return records


def static(published: PublishedSeeds) -> Discovery:
    return as_discovery("static://" + ",".join(str(seed) for seed in published.seeds))


def dns_hosts(published: PublishedSeeds) -> Discovery:
    return as_discovery(f"dns://{HOST}:{SHARED_PORT}?ttl=0", resolver=PublishedZone(published))


def dns_srv(published: PublishedSeeds) -> Discovery:
    return as_discovery(f"dns+srv://{SERVICE}?ttl=0", resolver=PublishedZone(published))


def function(published: PublishedSeeds) -> Discovery:
    async def fetch() -> list[tuple[str, int]]:
        if not published.available:
            raise ConnectionError("registry unreachable")
        return [(seed.host, seed.port) for seed in published.seeds]

    return as_discovery(fetch)


FIXED = DiscoveryCapabilities(dynamic=False, can_fail=False)
RESOLVED = DiscoveryCapabilities(host_names=False)
BACKENDS: dict[str, tuple[Callable[[PublishedSeeds], Discovery], DiscoveryCapabilities]] = {
    "static": (static, FIXED),
    "dns": (dns_hosts, DiscoveryCapabilities(host_names=False, per_seed_ports=False)),
    "dns+srv": (dns_srv, RESOLVED),
    "function": (function, DiscoveryCapabilities()),
}


class TestDiscoveryContract(DiscoveryContract):
    @pytest.fixture(params=sorted(BACKENDS))
    def backend(self, request: pytest.FixtureRequest) -> str:
        name: str = request.param
        return name

    @pytest.fixture
    def discovery_factory(self, backend: str) -> Callable[[PublishedSeeds], Discovery]:
        return BACKENDS[backend][0]

    @pytest.fixture
    def capabilities(self, backend: str) -> DiscoveryCapabilities:
        return BACKENDS[backend][1]
