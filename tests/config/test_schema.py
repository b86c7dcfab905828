"""`casty.config`: reading casty.toml, refusing bad keys and values, the environment, flags."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from casty.cluster.downing import KeepOldest, StaticQuorum
from casty.config import CastyConfig, config_keys, load_config
from casty.config.reference import example
from casty.errors import ConfigurationError


def test_defaults_are_the_components_defaults() -> None:
    config = load_config(environ={})
    default = CastyConfig()
    assert config.remote == default.remote
    assert config.cluster.config.failure_detector == default.cluster.config.failure_detector
    assert repr(config.cluster) == repr(default.cluster)  # strategies compare by identity
    assert config.cluster.config.failure_detector.threshold == 8.0
    assert config.sharding.num_shards == 256


def test_a_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "casty.toml"
    path.write_text(
        '[cluster]\nname = "q"\nport = 25520\nseeds = ["127.0.0.1:25520"]\n'
        "join_timeout = 3\n"
        "[cluster.failure_detector]\nthreshold = 9\n"
        '[cluster.downing]\nstrategy = "keep-oldest"\ndown_if_alone = false\n'
        "[sharding]\npassivate_after = false\n"
    )
    config = load_config(path, environ={})
    assert config.cluster.name == "q"
    assert config.cluster.port == 25520
    assert config.cluster.seeds == ("127.0.0.1:25520",)
    assert config.cluster.config.join_timeout == 3.0
    assert config.cluster.config.failure_detector.threshold == 9.0
    strategy = config.cluster.config.downing.strategy
    assert isinstance(strategy, KeepOldest) and strategy.down_if_alone is False
    assert config.sharding.passivate_after is None  # `false` unsets a key whose default is set


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        (
            {"cluster": {"failure_detector": {"threshold": "x"}}},
            "cluster.failure_detector.threshold: expected a number, got 'x'",
        ),
        ({"cluster": {"failure_detectr": {}}}, "cluster.failure_detectr: unknown key"),
        ({"clustr": {}}, "clustr: unknown key"),
        ({"cluster": {"port": 1.5}}, "cluster.port: expected an integer, got 1.5"),
        ({"cluster": {"port": True}}, "cluster.port: expected an integer, got True"),
        ({"cluster": {"roles": "a"}}, "cluster.roles: expected a list of strings, got 'a'"),
        ({"cluster": {"roles": [1]}}, "cluster.roles: expected a list of strings"),
        ({"transport": {"require_client_cert": 1}}, "transport.require_client_cert: expected"),
        ({"cluster": {"gossip": 3}}, "cluster.gossip: expected a table"),
        ({"sharding": {"retry_interval": "fast"}}, "sharding.retry_interval: expected a number"),
        # Range and validation checks name the key's full path too, as type errors do.
        ({"cluster": {"port": 70000}}, "cluster.port: must be in 0..65535, got 70000"),
        (
            {"cluster": {"failure_detector": {"threshold": -1}}},
            "cluster.failure_detector.threshold: must be > 0",
        ),
        ({"cluster": {"downing": {"strategy": "keep-all"}}}, "cluster.downing.strategy: must be"),
        ({"replication": {"min_acks": 3}}, "replication.min_acks: must be"),
        ({"remote": {"min_backoff": 9.0}}, "remote.max_backoff: max_backoff (5.0) is below"),
        ({"metrics": {"prometheus_port": -1}}, "metrics.prometheus_port: must be in 0..65535"),
        ({"cluster": {"seeds": ["a:1"], "discovery": "static://"}}, "cluster.seeds: give seeds"),
        ({"transport": {"cert": "node.pem"}}, "transport.cert: cert apply to tls:// only"),
    ],
)
def test_bad_keys_and_values_are_refused_with_their_path(tree: dict, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config(tree, environ={})
    assert message in str(info.value)


def test_a_missing_or_broken_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_config(tmp_path / "absent.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[cluster\n")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_config(broken, environ={})


def test_environment_overrides_the_file_and_flags_override_both(tmp_path: Path) -> None:
    path = tmp_path / "casty.toml"
    path.write_text('[cluster]\nport = 1000\nname = "file"\n[cluster.gossip]\nfanout = 4\n')
    environ = {
        "CASTY_CLUSTER__PORT": "2000",
        "CASTY_CLUSTER__NAME": "123",  # a string key takes the text as written
        "CASTY_CLUSTER__ROLES": "a, b",
        "CASTY_CLUSTER__FAILURE_DETECTOR__THRESHOLD": "9.5",
        "CASTY_CLUSTER__DOWNING__STRATEGY": "static-quorum",
        "CASTY_CLUSTER__DOWNING__QUORUM_SIZE": "2",
        "CASTY_SHARDING__PASSIVATE_AFTER": "false",
        "CASTY_TEST_POSTGRES_DSN": "postgresql://elsewhere",  # no "__": not a key
    }
    config = load_config(path, environ=environ, overrides={"cluster.port": 3000})
    assert config.cluster.port == 3000
    assert config.cluster.name == "123"
    assert config.cluster.roles == ("a", "b")
    assert config.cluster.config.gossip.fanout == 4
    assert config.cluster.config.failure_detector.threshold == 9.5
    strategy = config.cluster.config.downing.strategy
    assert isinstance(strategy, StaticQuorum) and strategy.quorum_size == 2
    assert config.sharding.passivate_after is None
    assert load_config(path, environ={"CASTY_CLUSTER__PORT": "2000"}).cluster.port == 2000


def test_unknown_environment_keys_and_overrides_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="CASTY_CLUSTER__PROT: no such"):
        load_config(environ={"CASTY_CLUSTER__PROT": "1"})
    with pytest.raises(ConfigurationError, match=r"cluster\.prot: no such"):
        load_config(environ={}, overrides={"cluster.prot": 1})
    with pytest.raises(ConfigurationError, match="CASTY_CLUSTER__PORT: expected an integer"):
        load_config(environ={"CASTY_CLUSTER__PORT": "x"})
    with pytest.raises(ConfigurationError, match="config must be"):
        load_config(object())  # type: ignore[arg-type]


def test_every_key_has_a_description_and_an_environment_variable() -> None:
    keys = config_keys()
    assert len({key.path for key in keys}) == len(keys)
    for key in keys:
        assert key.doc, f"{key.path} has no description in {key.owner.__name__}'s docstring"
        assert key.env == "CASTY_" + key.path.upper().replace(".", "__")


def test_the_documented_example_loads() -> None:
    config = load_config(tomllib.loads(example()), environ={})
    assert config.cluster.required_quorum == 3
    assert config.transport.ca == "/etc/casty/ca.pem"


def test_a_built_configuration_is_used_as_is() -> None:
    built = load_config({"cluster": {"port": 5}}, environ={})
    assert load_config(built, environ={"CASTY_CLUSTER__PORT": "6"}) is built
    with pytest.raises(ConfigurationError, match="final"):
        load_config(built, overrides={"cluster.port": 7})


def test_overrides_take_nested_tables_as_well_as_dotted_paths() -> None:
    config = load_config(
        environ={},
        overrides={"cluster": {"port": 1, "gossip": {"fanout": 5}}, "cluster.name": "flag"},
    )
    assert config.cluster.port == 1
    assert config.cluster.config.gossip.fanout == 5
    assert config.cluster.name == "flag"
    with pytest.raises(ConfigurationError, match=r"cluster\.prot: no such"):
        load_config(environ={}, overrides={"cluster": {"prot": 1}})
    with pytest.raises(ConfigurationError, match=r"cluster\.port: expected an integer"):
        load_config(environ={}, overrides={"cluster": {"port": "x"}})


def _strategy_field(name: str) -> Callable[[CastyConfig], object]:
    return lambda c: getattr(c.cluster.config.downing.strategy, name, None)


TLS = {"url": "tls://"}
#: Every optional key: a value to set it to, how to read it back, and the other keys of its
#: table it needs beside it.
OPTIONAL: dict[str, tuple[object, Callable[[CastyConfig], object], dict[str, object]]] = {
    "cluster.node_id": ("n1", lambda c: c.cluster.node_id, {}),
    "cluster.seeds": (["127.0.0.1:1"], lambda c: c.cluster.seeds, {}),
    "cluster.discovery": ("static://127.0.0.1:1", lambda c: c.cluster.discovery, {}),
    "cluster.required_quorum": (2, lambda c: c.cluster.required_quorum, {}),
    "cluster.join_timeout": (3.0, lambda c: c.cluster.config.join_timeout, {}),
    "cluster.downing.role": ("r", _strategy_field("role"), {}),
    "cluster.downing.quorum_size": (2, _strategy_field("quorum_size"), {}),
    "transport.cert": ("n.pem", lambda c: c.transport.cert, TLS),
    "transport.key": ("n.key", lambda c: c.transport.key, TLS),
    "transport.ca": ("ca.pem", lambda c: c.transport.ca, TLS),
    "journal.url": ("memory://", lambda c: c.journal.url, {}),
    "sharding.passivate_after": (5.0, lambda c: c.sharding.passivate_after, {}),
    "sharding.removal_margin": (1.0, lambda c: c.sharding.settings.removal_margin, {}),
    "mailbox.capacity": (10, lambda c: c.mailbox.capacity, {}),
    "supervision.max_restarts": (3, lambda c: c.supervision.max_restarts, {"strategy": "restart"}),
    "supervision.within": (3.0, lambda c: c.supervision.within, {"strategy": "restart"}),
    "metrics.prometheus_port": (9464, lambda c: c.metrics.prometheus_port, {}),
}


def test_the_optional_keys_are_all_covered() -> None:
    assert set(OPTIONAL) == {k.path for k in config_keys() if k.type_name.endswith("| unset")}


@pytest.mark.parametrize("path", sorted(OPTIONAL))
def test_false_unsets_every_optional_key_in_the_file_the_environment_and_overrides(
    path: str,
) -> None:
    value, read, beside = OPTIONAL[path]
    table, _, name = path.rpartition(".")
    env = next(k.env for k in config_keys() if k.path == path)

    def tree(v: object) -> dict[str, Any]:
        return _nested(table, {**beside, name: v})

    assert read(load_config(tree(False), environ={})) is None
    assert read(load_config(tree(False), environ={env: "false"})) is None
    if path == "cluster.downing.quorum_size":
        return  # only static-quorum takes it, and static-quorum needs it: nothing to unset
    set_in_file = tree(value)
    assert read(load_config(set_in_file, environ={})) == (
        tuple(value) if isinstance(value, list) else value
    )
    for environ, overrides in (({env: "false"}, {}), ({}, {path: False}), ({}, {path: None})):
        assert read(load_config(set_in_file, environ=environ, overrides=overrides)) is None


def _nested(table: str, values: dict[str, object]) -> dict[str, Any]:
    tree: dict[str, Any] = dict(values)
    for part in reversed(table.split(".")):
        tree = {part: tree}
    return tree
