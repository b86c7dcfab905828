"""The history checker (`casty.testing.check_history`) on hand-made histories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from casty.testing import HistoryRecorder, check_history, read_history
from casty.testing.history import FAIL, OK, UNKNOWN


def history(*ops: tuple[str, str, str | None]) -> list[dict[str, Any]]:
    """Records for ``(op, key, outcome)``; outcome None: invoked, no outcome recorded."""
    records: list[dict[str, Any]] = []
    for op, key, outcome in ops:
        records.append({"type": "invoke", "op": op, "key": key})
        if outcome is not None:
            records.append({"type": outcome, "op": op})
    return records


RECORDS = history(
    ("a1", "a", OK), ("a2", "a", OK), ("a3", "a", FAIL), ("a4", "a", UNKNOWN), ("b1", "b", OK)
)


def test_a_consistent_history_is_clean_and_counted() -> None:
    report = check_history(RECORDS, {"a": ["a1", "a2", "a4"], "b": ["b1"]})
    assert report.clean, str(report)
    assert report.outcomes == {OK: 3, FAIL: 1, UNKNOWN: 1}
    assert report.unknown_applied == 1
    assert "lost 0, duplicated 0, phantom 0" in str(report)


def test_unknown_and_unfinished_ops_may_be_absent() -> None:
    records = [*RECORDS, *history(("b2", "b", None))]
    report = check_history(records, {"a": ["a1", "a2"], "b": ["b1", "b2"]})
    assert report.clean, str(report)
    assert report.unknown_applied == 1 and report.outcomes[UNKNOWN] == 2


def test_an_acknowledged_op_missing_from_the_state_is_lost() -> None:
    report = check_history(RECORDS, {"a": ["a1"], "b": ["b1"]})
    assert report.lost == [("a", "a2")]
    assert not report.clean and "lost: a2" in str(report)


def test_a_key_missing_from_the_state_loses_its_acknowledged_ops() -> None:
    report = check_history(RECORDS, {"a": ["a1", "a2"]})
    assert report.lost == [("b", "b1")]


def test_an_op_applied_twice_is_duplicated() -> None:
    report = check_history(RECORDS, {"a": ["a1", "a2", "a1"], "b": ["b1"]})
    assert report.duplicated == [("a", "a1", 2)]
    assert not report.clean and "a1 applied 2 times" in str(report)


def test_an_unknown_op_applied_twice_is_duplicated_too() -> None:
    report = check_history(RECORDS, {"a": ["a1", "a2", "a4", "a4"], "b": ["b1"]})
    assert report.duplicated == [("a", "a4", 2)]


def test_a_refused_op_in_the_state_is_phantom() -> None:
    report = check_history(RECORDS, {"a": ["a1", "a2", "a3"], "b": ["b1"]})
    assert report.phantom == [("a", "a3", "refused")]
    assert not report.clean and "phantom: a3" in str(report)


def test_an_op_never_invoked_is_phantom() -> None:
    report = check_history(RECORDS, {"a": ["a1", "a2", "zz"], "b": ["b1"]})
    assert report.phantom == [("a", "zz", "never invoked")]


def test_an_op_under_another_key_is_phantom_there_and_lost_where_it_was_sent() -> None:
    report = check_history(RECORDS, {"a": ["a1", "a2"], "b": ["a1", "b1"]})
    assert report.phantom == [("b", "a1", "sent to a")]
    assert report.duplicated == [("a", "a1", 2)]
    assert report.lost == []


def test_an_unknown_outcome_followed_by_a_definite_one_takes_the_definite_one() -> None:
    records = [*history(("x1", "x", UNKNOWN)), {"type": OK, "op": "x1"}]
    assert check_history(records, {"x": []}).lost == [("x", "x1")]


@pytest.mark.parametrize(
    "records",
    [
        [{"type": "ok", "op": "never"}],
        [*history(("x1", "x", None)), *history(("x1", "x", None))],
        [*history(("x1", "x", OK)), {"type": FAIL, "op": "x1"}],
        [{"type": "bogus", "op": "x1"}],
        [{"type": "invoke", "key": "x"}],
    ],
    ids=["outcome-without-invoke", "invoked-twice", "contradiction", "bad-type", "no-op"],
)
def test_a_malformed_history_is_an_error(records: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError):
        check_history(records, {})


def test_the_recorder_writes_what_read_history_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryRecorder(path) as recorder:
        recorder.invoke("a1", "a")
        recorder.complete("a1", OK)
        recorder.invoke("a2", "a")
        recorder.complete("a2", UNKNOWN, "AskTimeout")
        with pytest.raises(ValueError):
            recorder.complete("a2", "maybe")
    records = read_history(path)
    assert records == recorder.records
    assert all(isinstance(r.pop("t"), float) for r in records)
    assert records[-1] == {"type": UNKNOWN, "op": "a2", "detail": "AskTimeout"}
    assert check_history(records, {"a": []}).lost == [("a", "a1")]
