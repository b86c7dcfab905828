"""`DNSDiscovery`: seeds from DNS, by A/AAAA records or SRV records (dnspython)."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, final

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver

from casty.abc import Address, Discovery
from casty.clock import Clock, SystemClock
from casty.errors import ConfigurationError, DiscoveryUnavailable, ResourceClosed
from casty.registry import BackendURL

__all__ = ["DNSDiscovery"]


class _Resolver(Protocol):
    """What `DNSDiscovery` needs of a resolver: dnspython's ``dns.asyncresolver.Resolver``."""

    async def resolve(self, qname: str, rdtype: str) -> Any:
        """An iterable of rdata (``.address`` for A/AAAA; ``.target``, ``.port`` for SRV)."""


@final
class DNSDiscovery(Discovery):
    """Seeds from DNS: the A and AAAA records of a name, or the targets of its SRV records.

    - ``DNSDiscovery("casty.prod.internal", 25520)``: every address of the name, on one port
      (a Kubernetes headless service, for example).
    - ``DNSDiscovery("_casty._tcp.prod.internal", srv=True)``: every SRV target, resolved to its
      A/AAAA addresses, each with the port its SRV record gives. Targets of every priority are
      seeds; a target of ``.`` (RFC 2782's "not available") is skipped.

    A name that does not exist (NXDOMAIN) or has no such records yields an empty set: a node
    can start before its peers are registered. Successful non-empty answers are cached for
    ``ttl`` seconds, or less when the records' own TTL is shorter; empty answers and failures
    are not cached. Concurrent callers share one lookup.

    URL: ``dns://name:port`` (A/AAAA) or ``dns+srv://_service._proto.domain`` (SRV; no port).
    Query options: ``ttl`` (seconds, default 5.0), ``timeout`` (seconds, default 5.0). Extra:
    ``pip install 'casty[dns]'`` (dnspython).

    Args:
        name: the DNS name to look up.
        port: the seeds' port for A/AAAA lookups (1..65535); must be ``None`` with ``srv``.
        srv: look up SRV records instead of A/AAAA.
        resolver: any object with dnspython's ``async resolve(qname, rdtype)``; by default a
            ``dns.asyncresolver.Resolver`` reading the system configuration, created on first use.
        ttl: upper bound in seconds on how long an answer is reused (0 disables the cache).
        timeout: seconds one `seeds` call may take, every lookup included.
        clock: the time source of the cache (`casty.testing.ManualClock` in tests).

    Raises:
        ConfigurationError: an invalid name, a missing or out-of-range port for A/AAAA, a port
            with ``srv``, a negative ``ttl`` or a non-positive ``timeout``.
    """

    def __init__(
        self,
        name: str,
        port: int | None = None,
        *,
        srv: bool = False,
        resolver: _Resolver | None = None,
        ttl: float = 5.0,
        timeout: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        try:
            dns.name.from_text(name)
        except dns.exception.DNSException as exc:
            raise ConfigurationError(f"invalid DNS name {name!r}: {exc}") from exc
        if not name or name == ".":
            raise ConfigurationError("DNS discovery needs a name")
        if srv and port is not None:
            raise ConfigurationError("SRV records carry their own ports: do not give a port")
        if not srv and (port is None or not 1 <= port <= 65535):
            raise ConfigurationError(f"A/AAAA discovery needs a port in 1..65535, got {port!r}")
        if ttl < 0:
            raise ConfigurationError(f"ttl must be >= 0 seconds, got {ttl}")
        if timeout <= 0:
            raise ConfigurationError(f"timeout must be > 0 seconds, got {timeout}")
        self.name = name
        self.port = port
        self.srv = srv
        self.ttl = ttl
        self.timeout = timeout
        self._resolver = resolver
        self._clock = clock if clock is not None else SystemClock()
        self._cached: frozenset[Address] = frozenset()
        self._expires = float("-inf")
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    def from_url(cls, url: BackendURL, **options: Any) -> DNSDiscovery:
        """Build from ``dns://name:port`` or ``dns+srv://_service._proto.domain``.

        Raises:
            ConfigurationError: an unknown variant or option, an option that is not a number,
                or what the constructor refuses.
        """
        if url.variant not in ("", "srv"):
            raise ConfigurationError(f"unknown DNS discovery variant {url.variant!r}")
        unknown = (set(url.query) | set(options)) - {"ttl", "timeout", "resolver", "clock"}
        if unknown:
            raise ConfigurationError(f"DNS discovery: unknown options {sorted(unknown)}")
        numbers: dict[str, float] = {}
        for key in ("ttl", "timeout"):
            if key in url.query:
                try:
                    numbers[key] = float(url.query[key])
                except ValueError as exc:
                    raise ConfigurationError(f"{key} must be seconds: {url.query[key]!r}") from exc
        return cls(url.host, url.port, srv=url.variant == "srv", **{**numbers, **options})

    async def seeds(self) -> frozenset[Address]:
        """The addresses the records name now (cached up to ``ttl`` seconds).

        Raises:
            DiscoveryUnavailable: no nameserver answered within ``timeout`` seconds, none is
                configured, or they failed (SERVFAIL, refused); retrying later makes sense.
            ResourceClosed: after `aclose`.

        Cancellation abandons the lookup and leaves the cache as it was.
        """
        if self._closed:
            raise ResourceClosed("this DNSDiscovery is closed")
        if self._clock.monotonic() < self._expires:
            return self._cached
        async with self._lock:
            if self._clock.monotonic() < self._expires:  # another caller just looked it up
                return self._cached
            try:
                async with asyncio.timeout(self.timeout):
                    if self.srv:
                        seeds, ttl = await self._lookup_srv()
                    else:
                        assert self.port is not None
                        seeds, ttl = await self._lookup_host(self.name, self.port)
            except TimeoutError as exc:
                raise DiscoveryUnavailable(
                    f"DNS lookup of {self.name!r} took longer than {self.timeout} s"
                ) from exc
            if seeds:
                self._cached = seeds
                self._expires = self._clock.monotonic() + min(self.ttl, ttl)
            return seeds

    async def aclose(self) -> None:
        """Drop the cache; idempotent. dnspython keeps no sockets open between lookups."""
        self._closed = True
        self._cached = frozenset()

    async def _lookup_host(self, host: str, port: int) -> tuple[frozenset[Address], float]:
        v4, ttl4 = await self._query(host, "A")
        v6, ttl6 = await self._query(host, "AAAA")
        seeds = frozenset(Address(str(rdata.address), port) for rdata in [*v4, *v6])
        return seeds, min(ttl4, ttl6)

    async def _lookup_srv(self) -> tuple[frozenset[Address], float]:
        records, ttl = await self._query(self.name, "SRV")
        targets = {
            (rdata.target.to_text(), int(rdata.port))
            for rdata in records
            if rdata.target != dns.name.root
        }
        try:
            async with asyncio.TaskGroup() as group:
                lookups = [
                    group.create_task(self._lookup_host(target, port)) for target, port in targets
                ]
        except* DiscoveryUnavailable as failures:
            raise DiscoveryUnavailable(str(failures.exceptions[0])) from failures
        results = [lookup.result() for lookup in lookups]
        seeds = frozenset(address for addresses, _ in results for address in addresses)
        return seeds, min([ttl, *(target_ttl for _, target_ttl in results)])

    async def _query(self, qname: str, rdtype: str) -> tuple[list[Any], float]:
        """The records and their TTL in seconds; the one place dnspython errors are translated.

        NXDOMAIN and "no answer" are an empty list, not an error.
        """
        try:
            if self._resolver is None:
                self._resolver = dns.asyncresolver.Resolver()  # reads /etc/resolv.conf
            answer = await self._resolver.resolve(qname, rdtype)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return [], float("inf")
        except (dns.exception.DNSException, OSError) as exc:
            # Timeouts, no (working) nameservers, no resolver configuration, socket errors.
            raise DiscoveryUnavailable(
                f"DNS lookup of {qname!r} ({rdtype}) failed: {type(exc).__name__}: {exc}"
            ) from exc
        rrset = getattr(answer, "rrset", None)
        ttl = float(rrset.ttl) if rrset is not None else float("inf")
        return list(answer), ttl
