"""Serializer throughput: a small dataclass message through MsgpackSerializer vs. raw msgpack.

Prints one JSON line per figure, each the median of ``--runs`` runs (default 5), operations/s:

- ``serializer_encode``: ``MsgpackSerializer.encode`` of a frozen dataclass with three fields;
  the baseline is ``msgpack.packb`` of the equivalent dict (no type name, no tuple/ref support).
- ``serializer_decode``: ``decode`` of those bytes (which calls the class, so ``__init__`` runs);
  the baseline is ``msgpack.unpackb`` of the dict's bytes.
- ``serializer_roundtrip_with_ref``: encode and decode of a message carrying an actor ref through
  a `RefCodec`, against ``packb``/``unpackb`` of the dict with the ref's address string.

    python benchmarks/serializer.py [--ops N] [--runs R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from casty.abc import RefCodec
from casty.serializers.msgpack import MsgpackSerializer
from casty.testing.serializer_samples import FakeRef


@dataclass(frozen=True, slots=True)
class Deposit:
    account_id: str
    amount: int
    note: str


class PathCodec(RefCodec):
    """Refs as their path, resolved by building a new ref: what a real codec costs at least."""

    ref_type = FakeRef

    def to_wire(self, ref: Any) -> str:
        path: str = ref.path
        return path

    def from_wire(self, address: str) -> FakeRef:
        return FakeRef(address)


@dataclass(frozen=True, slots=True)
class Request:
    payload: Deposit
    reply_to: FakeRef


def rate(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def figures(n: int) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    serializer = MsgpackSerializer()
    codec = PathCodec()
    message = Deposit("acct-42", 1250, "salary")
    plain = {"account_id": "acct-42", "amount": 1250, "note": "salary"}
    encoded, plain_encoded = serializer.encode(message), msgpack.packb(plain)
    request = Request(message, FakeRef("casty://bank@10.0.0.1:25520/user/teller"))
    plain_request = {"payload": plain, "reply_to": request.reply_to.path}

    def ours_roundtrip() -> object:
        return serializer.decode(serializer.encode(request, codec), codec)

    def raw_roundtrip() -> object:
        return msgpack.unpackb(msgpack.packb(plain_request))

    return {
        "serializer_encode": (
            lambda: serializer.encode(message),
            lambda: msgpack.packb(plain),
        ),
        "serializer_decode": (
            lambda: serializer.decode(encoded),
            lambda: msgpack.unpackb(plain_encoded),
        ),
        "serializer_roundtrip_with_ref": (ours_roundtrip, raw_roundtrip),
    }


def main(n: int, runs: int) -> list[dict[str, Any]]:
    results = []
    for name, (ours_fn, raw_fn) in figures(n).items():
        rate(ours_fn, n // 10)  # warm up: builds and caches the per-class plans
        ours: list[float] = []
        baseline: list[float] = []
        for _ in range(runs):
            baseline.append(rate(raw_fn, n))
            ours.append(rate(ours_fn, n))
        o, b = statistics.median(ours), statistics.median(baseline)
        results.append(
            {
                "name": name,
                "ours": round(o),
                "baseline": round(b),
                "ratio": round(o / b, 3),
                "unit": "ops/s",
                "ops": n,
                "runs": runs,
            }
        )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for line in main(args.ops, args.runs):
        print(json.dumps(line))
