"""DESIGN.md's layering rules, checked on the import statements of the source tree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "casty"
BACKEND_FAMILIES = ("journals", "transports", "serializers", "discovery")
CORE_PACKAGES = (
    "actors", "client", "cluster", "distributed", "persistence", "remote", "replication", "sharding"
)


def _casty_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("casty"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("casty"):
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _sources(*packages: str) -> list[Path]:
    return [p for pkg in packages for p in sorted((ROOT / pkg).rglob("*.py"))]


@pytest.mark.parametrize("name", ["abc.py", "errors.py"])
def test_kernel_modules_import_nothing_else_of_casty(name: str) -> None:
    allowed = {"casty.errors", "casty.errors.ConnectionBroken"} if name == "abc.py" else set()
    assert _casty_imports(ROOT / name) <= allowed


def test_backends_import_only_the_kernel_and_their_own_family() -> None:
    # casty._calm_log: the rate-limited warning that TLS refusals share with remoting.
    kernel = ("casty.abc", "casty.errors", "casty.registry", "casty.clock", "casty._calm_log")
    for path in _sources(*BACKEND_FAMILIES):
        family = f"casty.{path.relative_to(ROOT).parts[0]}"
        for name in _casty_imports(path):
            ok = name.startswith(kernel) or name.startswith(family) or name == "casty"
            # TLS may build on TCP (DESIGN.md §2).
            ok = ok or (family == "casty.transports" and name.startswith("casty.transports"))
            assert ok, f"{_module_name(path)} imports {name}"


def _concrete_backend_modules() -> set[str]:
    """Every module named by a registry's built-in table: the concrete backends."""
    from casty.discovery import registry as discovery
    from casty.journals import registry as journals
    from casty.serializers import registry as serializers
    from casty.transports import registry as transports

    modules: set[str] = set()
    for registry in (discovery, journals, serializers, transports):
        for key in registry.known_schemes():
            target, _hint = registry._builtins[key]
            modules.add(target.partition(":")[0])
    return modules


def test_core_never_names_a_concrete_backend() -> None:
    # Family-level helpers (`casty.journals._checks`, `as_journal`) are fine: they are not backends.
    concrete = _concrete_backend_modules()
    assert "casty.journals.sqlite" in concrete
    for path in _sources(*CORE_PACKAGES):
        for name in _casty_imports(path):
            module = name if name in concrete else name.rpartition(".")[0]
            assert module not in concrete, f"{_module_name(path)} imports {name}"
