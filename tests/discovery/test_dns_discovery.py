"""DNSDiscovery specifics: URLs, record handling, caching, error mapping, and a real resolver
talking to a nameserver on a loopback UDP socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import pytest

from casty.abc import Address
from casty.discovery import DNSDiscovery, as_discovery
from casty.errors import BackendNotFound, ConfigurationError, DiscoveryUnavailable, ResourceClosed
from casty.testing.clock import ManualClock
from casty.testing.wait import wait_until

Records = dict[tuple[str, str], list[str]]


def dns_error(kind: type[Exception], **details: Any) -> Exception:
    """A dnspython exception (their constructors are untyped)."""
    return kind(**details)


def add_records(
    response: dns.message.Message, qname: str, rdtype: str, texts: list[str], ttl: int
) -> None:
    name = dns.name.from_text(qname)
    kind = dns.rdatatype.from_text(rdtype)
    rrset = response.find_rrset(response.answer, name, dns.rdataclass.IN, kind, create=True)
    for text in texts:
        rrset.add(dns.rdata.from_text(dns.rdataclass.IN, kind, text), ttl)


def lookup(records: Records, qname: str, rdtype: str) -> list[str]:
    """The record texts, or dnspython's NXDOMAIN / NoAnswer as a nameserver would mean them."""
    absolute = dns.name.from_text(qname).to_text()
    texts = records.get((absolute, rdtype))
    if texts is not None:
        return texts
    if any(name == absolute for name, _ in records):
        raise dns_error(dns.resolver.NoAnswer)
    raise dns_error(dns.resolver.NXDOMAIN)


@dataclass
class FakeResolver:
    """Serves ``records`` as real dnspython answers; counts queries; can fail or hold them."""

    records: Records
    ttl: int = 300
    failure: Exception | None = None
    gate: asyncio.Event | None = None
    queries: list[tuple[str, str]] = field(default_factory=list)

    async def resolve(self, qname: str, rdtype: str) -> dns.resolver.Answer:
        self.queries.append((qname, rdtype))
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        texts = lookup(self.records, qname, rdtype)
        name = dns.name.from_text(qname)
        kind = dns.rdatatype.from_text(rdtype)
        response = cast(
            dns.message.QueryMessage, dns.message.make_response(dns.message.make_query(name, kind))
        )
        add_records(response, qname, rdtype, texts, self.ttl)
        return dns.resolver.Answer(name, kind, dns.rdataclass.IN, response)


ZONE: Records = {
    ("seeds.test.", "A"): ["10.0.0.1", "10.0.0.2"],
    ("seeds.test.", "AAAA"): ["fd00::1"],
    ("v4only.test.", "A"): ["10.0.1.1"],
    ("_casty._tcp.seeds.test.", "SRV"): [
        "10 5 7000 node-a.seeds.test.",
        "20 5 7001 node-b.seeds.test.",
        "30 0 7002 .",
        "10 5 7003 gone.seeds.test.",
    ],
    ("node-a.seeds.test.", "A"): ["10.0.0.1"],
    ("node-a.seeds.test.", "AAAA"): ["fd00::1"],
    ("node-b.seeds.test.", "A"): ["10.0.0.2"],
}


# -- construction and URLs -----------------------------------------------------------------------


def test_a_url_builds_an_a_aaaa_lookup_with_its_port() -> None:
    discovery = as_discovery("dns://seeds.test:7000?ttl=2.5&timeout=1")
    assert isinstance(discovery, DNSDiscovery)
    assert (discovery.name, discovery.port, discovery.srv) == ("seeds.test", 7000, False)
    assert (discovery.ttl, discovery.timeout) == (2.5, 1.0)


def test_a_srv_url_builds_a_srv_lookup() -> None:
    discovery = as_discovery("dns+srv://_casty._tcp.example.internal")
    assert isinstance(discovery, DNSDiscovery)
    assert (discovery.name, discovery.port, discovery.srv) == (
        "_casty._tcp.example.internal",
        None,
        True,
    )


@pytest.mark.parametrize(
    "url",
    [
        "dns://seeds.test",
        "dns+srv://_casty._tcp.seeds.test:7000",
        "dns://seeds.test:7000?ttl=soon",
        "dns://seeds.test:7000?ttl=-1",
        "dns://seeds.test:7000?timeout=0",
        "dns://seeds.test:7000?retries=3",
        f"dns://{'a' * 64}.test:7000",
        "dns://:7000",
    ],
)
def test_bad_urls_raise_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        as_discovery(url)


def test_an_unknown_variant_is_not_found() -> None:
    with pytest.raises(BackendNotFound):
        as_discovery("dns+txt://seeds.test")


def test_constructor_does_no_io() -> None:
    resolver = FakeResolver(ZONE)
    DNSDiscovery("seeds.test", 7000, resolver=resolver)
    assert resolver.queries == []


# -- records -------------------------------------------------------------------------------------


async def test_a_and_aaaa_records_are_merged_on_the_configured_port() -> None:
    discovery = DNSDiscovery("seeds.test", 7000, resolver=FakeResolver(ZONE))
    assert await discovery.seeds() == {
        Address("10.0.0.1", 7000),
        Address("10.0.0.2", 7000),
        Address("fd00::1", 7000),
    }


async def test_a_name_without_aaaa_records_gives_its_a_records() -> None:
    discovery = DNSDiscovery("v4only.test", 7000, resolver=FakeResolver(ZONE))
    assert await discovery.seeds() == {Address("10.0.1.1", 7000)}


async def test_srv_targets_resolve_to_addresses_with_the_srv_ports() -> None:
    resolver = FakeResolver(ZONE)
    discovery = DNSDiscovery("_casty._tcp.seeds.test", srv=True, resolver=resolver)
    assert await discovery.seeds() == {
        Address("10.0.0.1", 7000),
        Address("fd00::1", 7000),
        Address("10.0.0.2", 7001),
    }
    # "." means "no service here" (RFC 2782): never looked up; a vanished target adds nothing.
    assert all(not name.startswith(".") for name, _ in resolver.queries)
    assert ("gone.seeds.test.", "A") in resolver.queries


@pytest.mark.parametrize("name", ["missing.test", "_casty._tcp.missing.test"])
async def test_a_name_that_does_not_exist_gives_an_empty_set(name: str) -> None:
    srv = name.startswith("_")
    discovery = DNSDiscovery(name, None if srv else 7000, srv=srv, resolver=FakeResolver(ZONE))
    assert await discovery.seeds() == frozenset()


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        dns_error(dns.resolver.NoNameservers),
        dns_error(dns.resolver.LifetimeTimeout, timeout=5.0, errors=[]),
        dns_error(dns.exception.Timeout),
        dns_error(dns.resolver.NoResolverConfiguration),
        ConnectionRefusedError(111, "refused"),
    ],
    ids=lambda exc: type(exc).__name__,
)
async def test_resolver_failures_raise_discovery_unavailable(failure: Exception) -> None:
    discovery = DNSDiscovery("seeds.test", 7000, resolver=FakeResolver(ZONE, failure=failure))
    with pytest.raises(DiscoveryUnavailable) as info:
        await discovery.seeds()
    assert info.value.__cause__ is failure


async def test_a_failing_srv_target_raises_one_discovery_unavailable() -> None:
    class TargetsFail(FakeResolver):
        async def resolve(self, qname: str, rdtype: str) -> dns.resolver.Answer:
            if rdtype != "SRV":
                raise dns_error(dns.resolver.NoNameservers)
            return await super().resolve(qname, rdtype)

    discovery = DNSDiscovery("_casty._tcp.seeds.test", srv=True, resolver=TargetsFail(ZONE))
    with pytest.raises(DiscoveryUnavailable):
        await discovery.seeds()


async def test_a_lookup_slower_than_the_timeout_raises_discovery_unavailable() -> None:
    resolver = FakeResolver(ZONE, gate=asyncio.Event())  # never opened: the nameserver is silent
    discovery = DNSDiscovery("seeds.test", 7000, resolver=resolver, timeout=0.05)
    with pytest.raises(DiscoveryUnavailable, match=r"longer than 0\.05 s"):
        await discovery.seeds()


async def test_seeds_after_aclose_raise_resource_closed() -> None:
    discovery = DNSDiscovery("seeds.test", 7000, resolver=FakeResolver(ZONE))
    await discovery.seeds()
    await discovery.aclose()
    await discovery.aclose()
    with pytest.raises(ResourceClosed):
        await discovery.seeds()


# -- caching and concurrency ---------------------------------------------------------------------


async def test_answers_are_cached_for_the_ttl() -> None:
    clock, resolver = ManualClock(), FakeResolver(ZONE)
    discovery = DNSDiscovery("seeds.test", 7000, resolver=resolver, ttl=5.0, clock=clock)
    first = await discovery.seeds()
    await clock.advance(4.9)
    assert await discovery.seeds() == first
    assert len(resolver.queries) == 2  # A and AAAA, once
    resolver.records = {("seeds.test.", "A"): ["10.9.9.9"]}
    await clock.advance(0.2)
    assert await discovery.seeds() == {Address("10.9.9.9", 7000)}
    assert len(resolver.queries) == 4


async def test_a_shorter_record_ttl_wins_over_the_configured_ttl() -> None:
    clock, resolver = ManualClock(), FakeResolver(ZONE, ttl=1)
    discovery = DNSDiscovery("seeds.test", 7000, resolver=resolver, ttl=60.0, clock=clock)
    await discovery.seeds()
    await clock.advance(1.5)
    await discovery.seeds()
    assert len(resolver.queries) == 4


async def test_empty_answers_are_not_cached() -> None:
    clock, resolver = ManualClock(), FakeResolver({})
    discovery = DNSDiscovery("seeds.test", 7000, resolver=resolver, ttl=60.0, clock=clock)
    assert await discovery.seeds() == frozenset()
    resolver.records = ZONE
    assert len(await discovery.seeds()) == 3


async def test_concurrent_callers_share_one_lookup() -> None:
    gate = asyncio.Event()
    resolver = FakeResolver(ZONE, gate=gate)
    discovery = DNSDiscovery("seeds.test", 7000, resolver=resolver)
    calls = [asyncio.ensure_future(discovery.seeds()) for _ in range(10)]
    gate.set()
    results = await asyncio.gather(*calls)
    assert len(set(results)) == 1 and len(results[0]) == 3
    assert len(resolver.queries) == 2


async def test_cancelling_a_lookup_leaves_no_cache_and_the_next_call_works() -> None:
    gate = asyncio.Event()
    resolver = FakeResolver(ZONE, gate=gate)
    discovery = DNSDiscovery("seeds.test", 7000, resolver=resolver)
    call = asyncio.ensure_future(discovery.seeds())
    await wait_until(lambda: bool(resolver.queries), timeout=1.0, message="lookup started")
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    gate.set()
    assert len(await discovery.seeds()) == 3


# -- a real resolver against a nameserver on loopback UDP ----------------------------------------


class LoopbackNameserver(asyncio.DatagramProtocol):
    """Answers queries from ``records``; ``mode`` makes it fail or stay silent."""

    def __init__(self, records: Records) -> None:
        self.records = records
        self.mode = "answer"
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Python 3.11's selector datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.mode == "silent" or self.transport is None:
            return
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        qname, rdtype = question.name.to_text(), dns.rdatatype.to_text(question.rdtype)
        if self.mode == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
        else:
            try:
                add_records(response, qname, rdtype, lookup(self.records, qname, rdtype), 60)
            except dns.resolver.NXDOMAIN:
                response.set_rcode(dns.rcode.NXDOMAIN)
            except dns.resolver.NoAnswer:
                pass  # NOERROR with an empty answer section
        self.transport.sendto(response.to_wire(), addr)


@dataclass
class Loopback:
    server: LoopbackNameserver
    resolver: dns.asyncresolver.Resolver


@pytest.fixture
async def loopback() -> AsyncIterator[Loopback]:
    loop = asyncio.get_running_loop()
    server = LoopbackNameserver(ZONE)
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = transport.get_extra_info("sockname")[1]
    resolver.lifetime = 0.2
    try:
        yield Loopback(server, resolver)
    finally:
        transport.close()


async def test_real_resolver_reads_a_and_aaaa_records(loopback: Loopback) -> None:
    discovery = DNSDiscovery("seeds.test", 7000, resolver=loopback.resolver)
    assert await discovery.seeds() == {
        Address("10.0.0.1", 7000),
        Address("10.0.0.2", 7000),
        Address("fd00::1", 7000),
    }


async def test_real_resolver_reads_srv_records(loopback: Loopback) -> None:
    discovery = DNSDiscovery("_casty._tcp.seeds.test", srv=True, resolver=loopback.resolver)
    assert await discovery.seeds() == {
        Address("10.0.0.1", 7000),
        Address("fd00::1", 7000),
        Address("10.0.0.2", 7001),
    }


async def test_real_nxdomain_gives_an_empty_set(loopback: Loopback) -> None:
    discovery = DNSDiscovery("missing.test", 7000, resolver=loopback.resolver)
    assert await discovery.seeds() == frozenset()


async def test_real_servfail_raises_discovery_unavailable(loopback: Loopback) -> None:
    loopback.server.mode = "servfail"
    discovery = DNSDiscovery("seeds.test", 7000, resolver=loopback.resolver)
    with pytest.raises(DiscoveryUnavailable) as info:
        await discovery.seeds()
    assert isinstance(info.value.__cause__, dns.resolver.NoNameservers)


@pytest.mark.slow
async def test_real_silent_nameserver_raises_discovery_unavailable(loopback: Loopback) -> None:
    loopback.server.mode = "silent"
    discovery = DNSDiscovery("seeds.test", 7000, resolver=loopback.resolver)
    with pytest.raises(DiscoveryUnavailable) as info:
        await discovery.seeds()
    assert isinstance(info.value.__cause__, dns.exception.Timeout)
