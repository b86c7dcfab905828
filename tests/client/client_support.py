"""Helpers of the client tests: the sharding harness, plus an entity that records its senders."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for sub in ("sharding", "cluster"):
    if str(ROOT / "tests" / sub) not in sys.path:
        sys.path.insert(0, str(ROOT / "tests" / sub))
