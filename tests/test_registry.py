"""The backend URL grammar and the per-family registries."""

from __future__ import annotations

import pytest

from casty.abc import Journal
from casty.errors import BackendNotFound, ConfigurationError
from casty.journals import registry as journal_registry
from casty.registry import BackendRegistry, BackendURL


def test_url_with_every_part_is_parsed() -> None:
    url = BackendURL.parse("postgresql+asyncpg://al%40ice:s%2Fcret@db.example:6543/app?table=j&x=1")
    assert (url.scheme, url.variant, url.key) == ("postgresql", "asyncpg", "postgresql+asyncpg")
    assert (url.username, url.password) == ("al@ice", "s/cret")
    assert (url.host, url.port, url.path) == ("db.example", 6543, "app")
    assert dict(url.query) == {"table": "j", "x": "1"}


@pytest.mark.parametrize(
    ("raw", "path"),
    [("sqlite:///rel/j.db", "rel/j.db"), ("sqlite:////abs/j.db", "/abs/j.db"), ("sqlite://", "")],
)
def test_sqlite_slash_rules_follow_sqlalchemy(raw: str, path: str) -> None:
    assert BackendURL.parse(raw).path == path


def test_bare_word_is_a_scheme() -> None:
    url = BackendURL.parse("msgpack")
    assert (url.key, url.host, url.port) == ("msgpack", "", None)


def test_bad_port_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="port"):
        BackendURL.parse("tcp://host:notaport")


def test_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(BackendNotFound) as info:
        journal_registry.load("cassandra")
    assert "sqlite" in str(info.value) and "memory" in str(info.value)
    assert isinstance(info.value, LookupError)


def test_missing_module_gives_the_install_hint() -> None:
    registry: BackendRegistry[Journal] = BackendRegistry(
        "journals", Journal, {"nope": ("casty_no_such_module:Nope", "pip install 'casty[nope]'")}
    )
    with pytest.raises(BackendNotFound, match=r"pip install 'casty\[nope\]'"):
        registry.load("nope")


def test_runtime_registration_wins_and_is_type_checked() -> None:
    registry: BackendRegistry[Journal] = BackendRegistry("journals", Journal, {})
    registry.register("weird", "builtins:dict")
    with pytest.raises(BackendNotFound, match="not a Journal"):
        registry.load("weird")


def test_coerce_refuses_other_types() -> None:
    with pytest.raises(TypeError, match="URL string"):
        journal_registry.coerce(42)  # type: ignore[arg-type]


def test_a_repeated_query_key_is_refused_naming_it() -> None:
    with pytest.raises(ConfigurationError, match="'table'"):
        BackendURL.parse("sqlite:///j.db?table=a&x=1&table=b")
    assert dict(BackendURL.parse("tcp://?a=1&b=").query) == {"a": "1", "b": ""}
