"""`casty.config`: reading casty.toml, refusing bad keys and values, the environment, flags."""

from __future__ import annotations

import tomllib
from pathlib import Path

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
        ({"cluster": {"failure_detector": {"threshold": -1}}}, "cluster.failure_detector: "),
        ({"cluster": {"downing": {"strategy": "keep-all"}}}, "cluster.downing: strategy must"),
        ({"replication": {"min_acks": 3}}, "replication: min_acks must"),
        ({"cluster": {"seeds": ["a:1"], "discovery": "static://"}}, "not both"),
        ({"transport": {"cert": "node.pem"}}, "transport: cert apply to tls:// only"),
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
