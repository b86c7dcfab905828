"""Check a recorded history of operations against the final state: lost, duplicated, phantom.

A chaos test gives every operation (an increment of a counter) a unique id and records, as
JSON lines, when it was invoked and what its client learned::

    {"type": "invoke", "op": "w3-17", "key": "counter-4", "t": 1764530000.123}
    {"type": "ok", "op": "w3-17"}           # acknowledged: must be applied, exactly once
    {"type": "fail", "op": "w3-18"}         # refused for sure: must never be applied
    {"type": "unknown", "op": "w3-19"}      # timed out or failed after a partial write: either

The entity's state is the list of the op ids it applied (not a sum), so the checker can see
each op: `check_history(records, final)` compares the history with ``final`` (key -> applied
op ids, as read at the end) and returns a `HistoryReport`:

- **lost**: acknowledged (``ok``) but absent from its key's final state;
- **duplicated**: present more than once (in one key, or in several);
- **phantom**: present although refused (``fail``), never invoked, or under another key than
  the one it was sent to.

Operations still ``unknown`` (or invoked with no outcome recorded) may be present or absent.
`HistoryRecorder` writes such a history from a test's client tasks.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

__all__ = [
    "FAIL",
    "INVOKE",
    "OK",
    "UNKNOWN",
    "HistoryRecorder",
    "HistoryReport",
    "check_history",
    "read_history",
]

INVOKE: Final = "invoke"
OK: Final = "ok"
FAIL: Final = "fail"
UNKNOWN: Final = "unknown"
_OUTCOMES = (OK, FAIL, UNKNOWN)


class HistoryRecorder:
    """Appends invoke and outcome records, as JSON lines, to ``path`` (and keeps them).

    Each record gets ``t``, the wall-clock time in seconds, for lining it up with node logs.

    Not thread-safe; call it from one event loop. Close it (or use ``with``) to flush the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.records: list[dict[str, Any]] = []
        # Open for the recorder's life (closed by close()); line-buffered, so a test that
        # fails half-way still leaves every record on disk.
        self._file: IO[str] = Path(path).open("a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def invoke(self, op: str, key: str) -> None:
        """Record that op ``op`` (unique across the history) is about to be sent to ``key``."""
        self._write({"type": INVOKE, "op": op, "key": key})

    def complete(self, op: str, outcome: str, detail: str = "") -> None:
        """Record ``op``'s outcome: `OK`, `FAIL` or `UNKNOWN`; ``detail`` is kept for reading.

        Raises:
            ValueError: ``outcome`` is none of the three.
        """
        if outcome not in _OUTCOMES:
            raise ValueError(f"outcome must be one of {_OUTCOMES}, got {outcome!r}")
        record = {"type": outcome, "op": op}
        if detail:
            record["detail"] = detail
        self._write(record)

    def _write(self, record: dict[str, Any]) -> None:
        record["t"] = round(time.time(), 3)  # wall-clock seconds, to line up with node logs
        self.records.append(record)
        self._file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        """Flush and close the file; idempotent."""
        self._file.close()

    def __enter__(self) -> HistoryRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines history file (blank lines skipped).

    Raises:
        ValueError: a line is not a JSON object.
    """
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"a history line must be a JSON object, got {line!r}")
            records.append(record)
    return records


@dataclass(frozen=True, slots=True)
class HistoryReport:
    """What `check_history` found; `clean` when there are no lost, duplicated or phantom ops.

    Attributes:
        lost: ``(key, op)`` of acknowledged ops absent from the key's final state.
        duplicated: ``(key, op, times)`` of ops applied more than once (``key`` is where the op
            was sent, or where it was found when never invoked).
        phantom: ``(key, op, why)`` of ops present that must not be.
        outcomes: how many ops ended ``ok``, ``fail`` and ``unknown``.
        unknown_applied: unknown ops found applied (allowed, reported for reading).
    """

    lost: list[tuple[str, str]] = field(default_factory=list)
    duplicated: list[tuple[str, str, int]] = field(default_factory=list)
    phantom: list[tuple[str, str, str]] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    unknown_applied: int = 0

    @property
    def clean(self) -> bool:
        """No lost, duplicated or phantom operation."""
        return not (self.lost or self.duplicated or self.phantom)

    def __str__(self) -> str:
        counts = ", ".join(f"{k} {self.outcomes.get(k, 0)}" for k in _OUTCOMES)
        lines = [
            f"history: {counts} ({self.unknown_applied} unknown applied); "
            f"lost {len(self.lost)}, duplicated {len(self.duplicated)}, "
            f"phantom {len(self.phantom)}"
        ]
        lines += [f"  lost: {op} (acknowledged, absent from {key})" for key, op in self.lost]
        lines += [f"  duplicated: {op} applied {n} times ({key})" for key, op, n in self.duplicated]
        lines += [f"  phantom: {op} in {key} ({why})" for key, op, why in self.phantom]
        return "\n".join(lines)


def check_history(
    records: Iterable[Mapping[str, Any]], final: Mapping[str, Sequence[str]]
) -> HistoryReport:
    """Compare a history with the final state (key -> applied op ids); see the module docstring.

    A key absent from ``final`` counts as empty. An op's last outcome record wins only when all
    of its outcomes agree; ``unknown`` followed by a definite outcome takes the definite one.

    Raises:
        ValueError: a malformed history: a record without ``type``/``op``, an op invoked twice,
            an outcome for an op never invoked, or contradicting definite outcomes.
    """
    sent_to: dict[str, str] = {}
    outcome: dict[str, str] = {}
    for record in records:
        kind, op = record.get("type"), record.get("op")
        if not isinstance(op, str) or kind not in (INVOKE, *_OUTCOMES):
            raise ValueError(f"malformed history record: {dict(record)!r}")
        if kind == INVOKE:
            if op in sent_to:
                raise ValueError(f"op {op} invoked twice")
            sent_to[op] = str(record["key"])
            outcome[op] = UNKNOWN
            continue
        if op not in sent_to:
            raise ValueError(f"op {op} has an outcome but was never invoked")
        previous = outcome[op]
        if previous != UNKNOWN and kind != previous:
            raise ValueError(f"op {op} has contradicting outcomes {previous} and {kind}")
        if kind != UNKNOWN:
            outcome[op] = kind

    lost: list[tuple[str, str]] = []
    duplicated: list[tuple[str, str, int]] = []
    phantom: list[tuple[str, str, str]] = []
    applied: Counter[str] = Counter()
    found_in: dict[str, str] = {}
    for key, ops in final.items():
        for op in ops:
            applied[op] += 1
            found_in.setdefault(op, key)
            target = sent_to.get(op)
            if target is None:
                if applied[op] == 1:
                    phantom.append((key, op, "never invoked"))
            elif target != key:
                phantom.append((key, op, f"sent to {target}"))
    for op, times in applied.items():
        if times > 1:
            duplicated.append((sent_to.get(op, found_in[op]), op, times))
    present = {key: set(ops) for key, ops in final.items()}
    unknown_applied = 0
    for op, result in outcome.items():
        key = sent_to[op]
        is_there = op in present.get(key, ())
        if result == OK and not is_there:
            lost.append((key, op))
        elif result == FAIL and is_there:
            phantom.append((key, op, "refused"))
        elif result == UNKNOWN and is_there:
            unknown_applied += 1
    return HistoryReport(
        lost, duplicated, phantom, dict(Counter(outcome.values())), unknown_applied
    )
