"""`CastyConfig`, the schema walk (`config_keys`) and loading (`load_config`).

The schema is the dataclasses themselves: a table is a frozen dataclass, a key is one of its
fields (type from the annotation, default from the field, description from the class
docstring's ``Attributes:``). A field holding a dataclass is a sub-table, unless its metadata
says `FLATTEN` (its fields then sit in the parent table). `DowningConfig` holds a strategy
object, so its table is read through `DowningSettings`.

Precedence, lowest first: the defaults, the file, the environment, the overrides (flags).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from casty.cluster.config import DowningConfig
from casty.config.sections import (
    ClusterSettings,
    DowningSettings,
    JournalSettings,
    MailboxSettings,
    MetricsSettings,
    SerializerSettings,
    ShardingDefaults,
    SupervisionSettings,
    TransportSettings,
)
from casty.errors import ConfigurationError
from casty.remote.settings import RemoteSettings
from casty.replication.config import ReplicationConfig

__all__ = ["ENV_PREFIX", "CastyConfig", "ConfigKey", "config_keys", "load_config"]

#: Environment variables ``CASTY_<TABLE>__<KEY>`` (levels joined by ``__``) override the file.
ENV_PREFIX = "CASTY_"
_ENV_SEPARATOR = "__"


@dataclass(frozen=True, slots=True)
class CastyConfig:
    """A whole node's configuration: what ``casty.toml`` holds (see ``docs/configuration.md``).

    Build it with `load_config` (a file, a dict, the environment, overrides), or directly;
    hand it to ``ClusteredActorSystem(config=...)``.

    Attributes:
        cluster: the node, its seeds and the cluster's timings.
        transport: the connections (TLS paths included).
        serializer: the wire and journal encoding.
        journal: the node's journal.
        remote: remoting's queues, timeouts and backoff.
        sharding: defaults of sharded types and the sharding timings.
        replication: what ``Behaviors.sharded(replication=True)`` replicates with.
        mailbox: user actors' mailboxes.
        supervision: user actors' default supervision.
        metrics: the Prometheus endpoint.
    """

    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    transport: TransportSettings = field(default_factory=TransportSettings)
    serializer: SerializerSettings = field(default_factory=SerializerSettings)
    journal: JournalSettings = field(default_factory=JournalSettings)
    remote: RemoteSettings = field(default_factory=RemoteSettings)
    sharding: ShardingDefaults = field(default_factory=ShardingDefaults)
    replication: ReplicationConfig = field(default_factory=ReplicationConfig)
    mailbox: MailboxSettings = field(default_factory=MailboxSettings)
    supervision: SupervisionSettings = field(default_factory=SupervisionSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)


# The table a field of these types is read through, and how it becomes the field's value.
_READ_AS: dict[type, tuple[type, typing.Callable[[Any], Any]]] = {
    DowningConfig: (DowningSettings, DowningSettings.to_config),
}


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """One key of ``casty.toml``.

    Attributes:
        path: dotted path (``"cluster.failure_detector.threshold"``).
        type: the annotation of the field (``float``, ``str | None``, ``tuple[str, ...]``).
        default: the value when the key is absent (None: unset).
        doc: the description, from the owning class's docstring.
        owner: the dataclass holding the value.
        attribute: the field's name in ``owner`` (the key's last part).
    """

    path: str
    type: Any
    default: Any
    doc: str
    owner: type
    attribute: str

    @property
    def env(self) -> str:
        """The environment variable that overrides this key."""
        return ENV_PREFIX + self.path.upper().replace(".", _ENV_SEPARATOR)

    @property
    def type_name(self) -> str:
        """The key's type as the reference page writes it."""
        return _type_name(self.type)


def config_keys() -> list[ConfigKey]:
    """Every key of ``casty.toml``, in file order (walked from `CastyConfig`'s fields)."""
    return list(_walk(CastyConfig, ""))


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | CastyConfig | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> CastyConfig:
    """Build a `CastyConfig` from a TOML file (or a dict shaped like one).

    Args:
        source: a ``casty.toml`` path, a mapping of its tables, None for the defaults, or a
            `CastyConfig`, returned as is (the environment is not read again).
        environ: the environment to read ``CASTY_<TABLE>__<KEY>`` variables from (default
            ``os.environ``; pass ``{}`` to ignore it). A value is read as TOML (``8.5``,
            ``true``, ``["a", "b"]``) or, for a string key, taken as written; a list of
            strings may also be written ``a,b``.
        overrides: values that win over the file and the environment, as command-line flags
            do: dotted key paths (``{"cluster.port": 25520}``), nested tables shaped like the
            file (``{"cluster": {"port": 25520}}``), or both. ``None`` or ``False`` unsets a
            key whose type includes unset, as ``false`` does in the file and the environment.

    Raises:
        ConfigurationError: ``source`` is of another type, the file is missing or not TOML, a
            key is unknown, a value has the wrong type or is out of its range; the message
            names the key's full path (or the environment variable).
    """
    if isinstance(source, CastyConfig):
        if overrides:
            raise ConfigurationError("a CastyConfig is final; pass a file or a dict to override it")
        return source  # built, or loaded with the environment already
    tree: dict[str, Any]
    if source is None:
        tree = {}
    elif isinstance(source, Mapping):
        tree = _copy_tree(source)
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            with path.open("rb") as file:
                tree = tomllib.load(file)
        except OSError as exc:
            raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc
    else:
        raise ConfigurationError(
            "config must be a ClusterConfig, a CastyConfig, a casty.toml path or a dict, "
            f"got {source!r}"
        )
    keys = {key.path: key for key in config_keys()}
    for name, text in _env_items(os.environ if environ is None else environ):
        path_ = name[len(ENV_PREFIX) :].lower().replace(_ENV_SEPARATOR, ".")
        key = keys.get(path_)
        if key is None:
            raise ConfigurationError(f"{name}: no such configuration key ({path_})")
        _set(tree, path_, _check(key.type, _from_env(key, text), name))
    for path_, value in _dotted(overrides or {}, ""):
        if path_ not in keys:
            raise ConfigurationError(f"{path_}: no such configuration key")
        _set(tree, path_, value)
    built: CastyConfig = _build(CastyConfig, tree, "")
    return built


# -- the walk ---------------------------------------------------------------------------------


def _walk(cls: type, prefix: str) -> Iterator[ConfigKey]:
    """The keys of ``cls``'s table, then those of its sub-tables (TOML's order)."""
    keys, tables = _table(cls, prefix)
    yield from keys
    for table, table_prefix in tables:
        yield from _walk(table, table_prefix)


def _table(cls: type, prefix: str) -> tuple[list[ConfigKey], list[tuple[type, str]]]:
    """The keys of ``cls``'s table and its sub-tables (classes and prefixes)."""
    hints = typing.get_type_hints(cls)
    docs = _attribute_docs(cls)
    keys: list[ConfigKey] = []
    tables: list[tuple[type, str]] = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        read_as = _READ_AS.get(kind, (kind,))[0]
        if f.metadata.get("flatten"):
            more_keys, more_tables = _table(read_as, prefix)
            keys += more_keys
            tables += more_tables
        elif dataclasses.is_dataclass(read_as):
            tables.append((read_as, f"{prefix}{f.name}."))
        else:
            doc = docs.get(f.name, "")
            keys.append(ConfigKey(f"{prefix}{f.name}", kind, _default(f), doc, cls, f.name))
    return keys, tables


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


_ATTRIBUTE = re.compile(r"^(\s+)(\w+): (.*)$")


def _attribute_docs(cls: type) -> dict[str, str]:
    """The ``Attributes:`` section of ``cls``'s docstring, one joined line per name."""
    doc = inspect.getdoc(cls) or ""
    _, _, section = doc.partition("Attributes:\n")
    docs: dict[str, str] = {}
    indent: int | None = None
    name = ""
    for line in section.splitlines():
        if line and not line[0].isspace():
            break  # the next section (Raises:, ...)
        match = _ATTRIBUTE.match(line)
        if match and (indent is None or len(match.group(1)) == indent):
            indent = len(match.group(1))
            name = match.group(2)
            docs[name] = match.group(3).strip()
        elif name and line.strip():
            docs[name] += " " + line.strip()
    return docs


def _type_name(kind: Any) -> str:
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType):
        return " | ".join(_type_name(arg) for arg in args)
    if typing.get_origin(kind) is tuple:
        return f"list of {_type_name(args[0])}"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "unset"}
    return names.get(kind, getattr(kind, "__name__", str(kind)))


# -- building ---------------------------------------------------------------------------------


def _build(cls: type, table: Mapping[str, Any], prefix: str) -> Any:
    """Instantiate ``cls`` from ``table``; every error names the key's path."""
    if not isinstance(table, Mapping):
        raise ConfigurationError(f"{prefix.rstrip('.') or 'the file'}: expected a table")
    hints = typing.get_type_hints(cls)
    known: set[str] = set()
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        read_as, convert = _READ_AS.get(kind, (kind, None))
        if f.metadata.get("flatten"):
            names = {g.name for g in _all_names(read_as)}
            known |= names
            kwargs[f.name] = _build(read_as, {k: v for k, v in table.items() if k in names}, prefix)
            continue
        known.add(f.name)
        if f.name not in table:
            continue
        value = table[f.name]
        if dataclasses.is_dataclass(read_as):
            built = _build(read_as, value, f"{prefix}{f.name}.")
            kwargs[f.name] = convert(built) if convert is not None else built
        else:
            kwargs[f.name] = _check(kind, value, f"{prefix}{f.name}")
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigurationError(f"{prefix}{unknown[0]}: unknown key")
    try:
        return cls(**kwargs)
    except ConfigurationError as exc:
        raise ConfigurationError(_with_key(str(exc), prefix, known)) from None


_WORD = re.compile(r"\w+")


def _with_key(message: str, prefix: str, names: set[str]) -> str:
    """A settings class's check ``message`` led by the full path of the key it names.

    The classes word their checks ``"port must be in 0..65535, got 70000"`` (some with their
    class name first); the first word before ``got`` that is a key of the table names the
    key (``cluster.port: must be in 0..65535, got 70000``), else the table is named.
    """
    text = re.sub(r"^[A-Z]\w*\.", "", message)  # "RemoteSettings.min_backoff must ..."
    subject = text.partition(" got ")[0]
    name = next((w for w in _WORD.findall(subject) if w in names), None)
    if name is None:
        return f"{prefix.rstrip('.') or 'configuration'}: {message}"
    if text.startswith(f"{name} must "):
        text = text[len(name) + 1 :]
    return f"{prefix}{name}: {text}"


def _all_names(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields that appear in ``cls``'s table (nested flattened fields included)."""
    result: list[dataclasses.Field[Any]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("flatten"):
            result.extend(_all_names(_READ_AS.get(hints[f.name], (hints[f.name],))[0]))
        else:
            result.append(f)
    return result


def _check(kind: Any, value: Any, path: str) -> Any:
    """``value`` converted to ``kind``, or a `ConfigurationError` naming ``path``."""
    options = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    if value is None and type(None) in options:
        return None
    if value is False and type(None) in options and bool not in options:
        return None  # TOML has no null: `false` unsets an optional key
    for option in options:
        if option is bool and isinstance(value, bool):
            return value
        if option is int and type(value) is int:
            return value
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
        if (
            typing.get_origin(option) is tuple
            and isinstance(value, list | tuple)
            and all(isinstance(item, str) for item in value)
        ):
            return tuple(value)
    raise ConfigurationError(f"{path}: expected {_expected(options)}, got {value!r}")


def _expected(options: tuple[Any, ...]) -> str:
    words = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        type(None): "",
    }
    parts = [
        "a list of strings" if typing.get_origin(o) is tuple else words.get(o, str(o))
        for o in options
    ]
    return " or ".join(p for p in parts if p)


def _env_items(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    # Other CASTY_ variables (CASTY_TEST_POSTGRES_DSN) have no "__": only those are keys.
    return sorted(
        (name, value)
        for name, value in environ.items()
        if name.startswith(ENV_PREFIX) and _ENV_SEPARATOR in name[len(ENV_PREFIX) :]
    )


def _from_env(key: ConfigKey, text: str) -> Any:
    options = typing.get_args(key.type) if isinstance(key.type, types.UnionType) else (key.type,)
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    if value is False and type(None) in options and bool not in options:
        return value  # `false` unsets an optional key, a string one too (`"false"` is text)
    if str in options and not isinstance(value, str) and not text.startswith(("[", '"', "'")):
        return text  # a string key takes the text as written (CASTY_CLUSTER__NAME=123)
    if isinstance(value, str) and any(typing.get_origin(o) is tuple for o in options):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _dotted(overrides: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    """``overrides`` as (dotted path, value) pairs: nested tables are walked."""
    for name, value in overrides.items():
        if isinstance(value, Mapping):
            yield from _dotted(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    """Set ``path`` in ``tree`` (creating tables; flattened keys live in their parent)."""
    *tables, last = path.split(".")
    node = tree
    for table in tables:
        child = node.setdefault(table, {})
        if not isinstance(child, dict):
            raise ConfigurationError(f"{table}: expected a table")
        node = child
    node[last] = value


def _copy_tree(source: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _copy_tree(v) if isinstance(v, Mapping) else v for k, v in source.items()}
