"""The history recorder: one clock, outcomes, thread safety, dump/load."""

from __future__ import annotations

import math
import threading

import pytest

from yakvs.errors import (
    ClientTimeoutError,
    ConnectionFailedError,
    KeyNotFoundError,
    NoLeaderError,
    NotLeaderError,
    StorageError,
    UnavailableError,
    UnknownOutcomeError,
)
from yakvs.testing.history import History, Kind, Outcome, load, outcome_of_error
from yakvs.testing.linearizability import Verdict, check


def test_outcomes_and_times():
    ticks = iter(range(100))
    h = History(clock=lambda: float(next(ticks)))
    a = h.invoke(1, Kind.SET, "k", "v1")
    b = h.invoke(2, Kind.GET, "k")
    c = h.invoke(3, Kind.DELETE, "k")
    d = h.invoke(4, Kind.SET, "k", "v2")
    h.ok(a)
    h.ok(b, value="v1")
    h.unknown(c)
    h.fail(d)
    pending = h.invoke(5, Kind.SET, "k", "v3")
    ops = {op.client: op for op in h.operations()}
    assert (ops[1].invoke, ops[1].complete, ops[1].value) == (0.0, 4.0, "v1")
    assert (ops[2].outcome, ops[2].value) == (Outcome.OK, "v1")
    assert ops[3].outcome is Outcome.UNKNOWN and math.isinf(ops[3].complete)
    assert ops[4].outcome is Outcome.FAILED and ops[4].complete == 7.0
    # A request still hanging when the run ends is as good as a lost reply.
    assert ops[5].outcome is Outcome.UNKNOWN and ops[5].invoke == 8.0
    assert h.counts() == {"ok": 2, "failed": 1, "unknown": 2}
    with pytest.raises(RuntimeError, match="twice"):
        h.ok(a)
    h.ok(pending)
    assert h.counts()["ok"] == 3


def test_concurrent_recording_is_consistent():
    h = History()

    def client(n: int) -> None:
        for _ in range(200):
            value = h.unique_value(n)
            op = h.invoke(n, Kind.SET, f"k{n}", value)
            h.ok(op)
            op = h.invoke(n, Kind.GET, f"k{n}")
            h.ok(op, value=value)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    ops = h.operations()
    assert len(ops) == 1600
    assert len({op.id for op in ops}) == 1600
    assert len({op.value for op in ops if op.kind is Kind.SET}) == 800
    assert all(op.invoke <= op.complete for op in ops)
    assert check(ops).verdict is Verdict.OK


def test_dump_and_load_round_trip(tmp_path):
    h = History()
    h.ok(h.invoke(0, Kind.SET, "k\n \x00é", "v \n"))
    h.unknown(h.invoke(1, Kind.DELETE, "k"))
    h.ok(h.invoke(2, Kind.DELETE, "k"), found=True)
    path = tmp_path / "history.jsonl"
    h.dump(path)
    assert load(path) == h.operations()


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (StorageError(), Outcome.FAILED),
        (NotLeaderError(leader="127.0.0.1:1"), Outcome.FAILED),
        (NoLeaderError(), Outcome.FAILED),
        (UnavailableError(), Outcome.UNKNOWN),
        (UnknownOutcomeError(), Outcome.UNKNOWN),
        (ClientTimeoutError(), Outcome.UNKNOWN),
        (ConnectionFailedError(), Outcome.UNKNOWN),
        (ConnectionResetError(), Outcome.UNKNOWN),
    ],
)
def test_error_classification(exc, outcome):
    assert outcome_of_error(exc) is outcome


def test_error_classification_refuses_the_unexpected():
    with pytest.raises(ValueError):
        outcome_of_error(KeyNotFoundError())
    with pytest.raises(ZeroDivisionError):
        outcome_of_error(ZeroDivisionError())
