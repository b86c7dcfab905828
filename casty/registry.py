"""Backend URLs and the per-family registries that turn them into objects.

A backend is chosen by an object or by a URL in SQLAlchemy's grammar::

    scheme[+variant]://[user[:password]@]host[:port][/path][?query]

The registry key is ``scheme`` or ``scheme+variant``. Lookup order in `BackendRegistry.load`:
runtime registrations, then the built-in table (imported lazily), then the entry-point group
``casty.<family>``; otherwise `BackendNotFound` naming the known schemes, or, when the module of
a known scheme cannot be imported, the ``pip install`` hint of its extra.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from casty.errors import BackendNotFound, ConfigurationError

__all__ = ["BackendRegistry", "BackendURL"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BackendURL:
    """A parsed backend URL.

    Attributes:
        scheme: the part before ``+`` or ``://`` (``"sqlite"``), lower-case.
        variant: the part after ``+`` (``"asyncpg"`` in ``postgresql+asyncpg://``), or ``""``.
        username, password: percent-decoded credentials, or ``None``.
        host: host name or address, ``""`` when absent; a comma-separated host list
            (``h1:7000,h2:7000``) is kept whole, ports included, with ``port`` ``None``.
        port: TCP port, or ``None``.
        path: everything after the authority, without its leading ``/`` (so
            ``sqlite:////abs.db`` gives ``"/abs.db"`` and ``sqlite:///rel.db`` gives ``"rel.db"``).
        query: query parameters (a repeated key is a `ConfigurationError`).
        raw: the original string.
    """

    scheme: str
    variant: str = ""
    username: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    path: str = ""
    query: Mapping[str, str] = field(default_factory=dict)
    raw: str = ""

    @property
    def key(self) -> str:
        """The registry key: ``scheme`` or ``scheme+variant``."""
        return f"{self.scheme}+{self.variant}" if self.variant else self.scheme

    @classmethod
    def parse(cls, url: str) -> BackendURL:
        """Parse ``url``; a bare word such as ``"msgpack"`` is a scheme with nothing else.

        Raises:
            ConfigurationError: the port is not an integer, the scheme is empty, or a query
                key is repeated.
        """
        if "://" not in url:
            scheme_part, rest = url, ""
        else:
            scheme_part, rest = url.split("://", 1)
        scheme, _, variant = scheme_part.lower().partition("+")
        if not scheme:
            raise ConfigurationError(f"backend URL {url!r} has no scheme")
        if not rest:
            return cls(scheme=scheme, variant=variant, raw=url)
        parts = urlsplit("//" + rest)
        hosts = parts.netloc.rpartition("@")[2]
        if "," in hosts:
            # A host list (``static://h1:7000,h2:7000``, as in libpq's multi-host URLs): kept
            # whole in ``host`` for the backend to split; there is no single port.
            host, port = hosts, None
        else:
            try:
                host, port = parts.hostname or "", parts.port
            except ValueError as exc:
                raise ConfigurationError(f"backend URL {url!r} has an invalid port") from exc
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        return cls(
            scheme=scheme,
            variant=variant,
            username=unquote(parts.username) if parts.username is not None else None,
            password=unquote(parts.password) if parts.password is not None else None,
            host=host,
            port=port,
            path=unquote(path),
            query=_query(scheme_part, parts.query),
            raw=url,
        )


def _query(scheme: str, query: str) -> dict[str, str]:
    """The query's parameters; a repeated key is refused rather than silently resolved.

    The message names the scheme, not the URL, which may hold a password.
    """
    params: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in params:
            raise ConfigurationError(f"{scheme}:// URL repeats the query option {name!r}")
        params[name] = value
    return params


class BackendRegistry(Generic[T]):
    """Maps URL schemes of one backend family to backend classes.

    Args:
        family: the family name, used in messages and as the entry-point group suffix
            (``"journals"`` reads the group ``casty.journals``).
        base: the ABC every backend of the family implements (checked on load).
        builtins: ``{key: ("module:Class", "pip install hint")}`` imported lazily.
    """

    def __init__(
        self, family: str, base: type, builtins: Mapping[str, tuple[str, str]]
    ) -> None:
        # ``base`` is a plain ``type``: mypy refuses abstract classes where ``type[T]`` is asked.
        self.family = family
        self.base = base
        self._builtins = dict(builtins)
        self._runtime: dict[str, str | type[T]] = {}

    def register(self, key: str, target: str | type[T]) -> None:
        """Register ``key`` (``scheme`` or ``scheme+variant``) for a class or ``"module:Class"``.

        Runtime registrations win over the built-in table and entry points.
        """
        self._runtime[key.lower()] = target

    def known_schemes(self) -> list[str]:
        """Every key this registry can resolve without entry points, sorted."""
        return sorted({*self._builtins, *self._runtime})

    def load(self, key: str) -> type[T]:
        """Return the backend class for ``key``.

        Raises:
            BackendNotFound: the key is unknown, or its module cannot be imported (the message
                carries the install hint of the extra).
        """
        key = key.lower()
        if key in self._runtime:
            target = self._runtime[key]
            if isinstance(target, type):
                return self._check(key, target)
            return self._import(key, target, None)
        if key in self._builtins:
            target_path, hint = self._builtins[key]
            return self._import(key, target_path, hint)
        # Imported here: reading package metadata costs every process ~15 ms at start-up, and
        # only a scheme no built-in backend knows needs it.
        from importlib.metadata import entry_points

        for ep in entry_points(group=f"casty.{self.family}"):
            if ep.name.lower() == key:
                cls = ep.load()
                return self._check(key, cls)
        raise BackendNotFound(
            f"no {self.family} backend for scheme {key!r}; known: "
            f"{', '.join(self.known_schemes())} (third-party backends register under the "
            f"entry-point group 'casty.{self.family}')"
        )

    def from_url(self, url: str, **options: Any) -> T:
        """Parse ``url``, load its class and call ``cls.from_url(parsed, **options)``."""
        parsed = BackendURL.parse(url)
        cls = self.load(parsed.key)
        factory: Callable[..., T] = cls.from_url  # type: ignore[attr-defined]
        return factory(parsed, **options)

    def coerce(self, value: T | str, **options: Any) -> T:
        """Return ``value`` unchanged when it is a backend, build one when it is a URL.

        Raises:
            TypeError: ``value`` is neither a ``base`` instance nor a string.
            BackendNotFound: see `load`.
        """
        if isinstance(value, self.base):
            return cast(T, value)
        if isinstance(value, str):
            return self.from_url(value, **options)
        raise TypeError(
            f"expected a {self.base.__name__} instance or a URL string, got {type(value).__name__}"
        )

    def _import(self, key: str, target: str, hint: str | None) -> type[T]:
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            extra = f"; install it with `{hint}`" if hint else ""
            raise BackendNotFound(
                f"{self.family} backend {key!r} is not available ({exc}){extra}"
            ) from exc
        return self._check(key, getattr(module, attr))

    def _check(self, key: str, cls: Any) -> type[T]:
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise BackendNotFound(f"{self.family} backend {key!r} is not a {self.base.__name__}")
        return cast(type[T], cls)
