"""The documentation site builds with ``mkdocs build --strict``: no broken link, no bad docstring.

Needs the ``docs`` extra (mkdocs, mkdocs-material, mkdocstrings[python]); skipped with the
missing package named when it is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Import names of the docs extra's packages (mkdocstrings[python] brings the python handler).
_NEEDED = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")


def _missing() -> list[str]:
    missing = []
    for name in _NEEDED:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # the parent package of a dotted name is absent
            found = False
        if not found:
            missing.append(name)
    return missing


@pytest.mark.slow
@pytest.mark.skipif(
    bool(_missing()),
    reason=f"the docs extra is not installed (missing: {', '.join(_missing())}); "
    "pip install -e '.[docs]'",
)
def test_site_builds_in_strict_mode(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The prose pages and the API reference generated from the docstrings are both there.
    assert (site / "getting-started" / "index.html").is_file()
    reference = (site / "reference" / "abc" / "index.html").read_text(encoding="utf-8")
    assert 'id="casty.abc.Journal.write"' in reference
