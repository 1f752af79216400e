"""Property tests of the checker: histories from a real sequential register, with random valid
overlaps, are always accepted; mutations that provably break them are always rejected."""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yakvs.testing.history import Kind, Operation, Outcome, make_op
from yakvs.testing.linearizability import Verdict, check

KEYS = ("a", "b")
SETTINGS = settings(
    max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def histories(draw: st.DrawFn) -> list[Operation]:
    """Ops applied one by one to a register per key at times 0, 1, 2, ...; each op's interval
    is stretched by a random amount around that point, so concurrency varies from none to
    several ops. Failed writes are not applied; unknown writes are applied or not, at random."""
    n = draw(st.integers(1, 40))
    width = draw(st.sampled_from([0.4, 1.5, 4.0]))
    state: dict[str, str | None] = dict.fromkeys(KEYS)
    ops: list[Operation] = []
    for i in range(n):
        key = draw(st.sampled_from(KEYS))
        kind = draw(st.sampled_from([Kind.SET, Kind.SET, Kind.GET, Kind.GET, Kind.DELETE]))
        outcome = draw(st.sampled_from([Outcome.OK] * 6 + [Outcome.FAILED, Outcome.UNKNOWN] * 2))
        t0 = i - draw(st.floats(0, width))
        t1 = i + draw(st.floats(0, width))
        applied = outcome is Outcome.OK or (outcome is Outcome.UNKNOWN and draw(st.booleans()))
        found = None
        if kind is Kind.SET:
            value: str | None = f"v{i}"
            if applied:
                state[key] = value
        elif kind is Kind.GET:
            value = state[key] if outcome is Outcome.OK else "junk"
        else:
            value = None
            if outcome is Outcome.OK and draw(st.booleans()):
                found = state[key] is not None
            if applied:
                state[key] = None
        ops.append(make_op(i, kind, key, value, t0, t1, outcome, client=i % 4, found=found))
    return ops


@SETTINGS
@given(histories())
def test_histories_from_a_sequential_register_are_accepted(ops):
    result = check(ops, max_steps=2_000_000)
    assert result.verdict is Verdict.OK, result.describe()


def _ok(op: Operation) -> bool:
    return op.outcome is Outcome.OK


@SETTINGS
@given(histories(), st.data())
def test_read_of_an_unwritten_value_is_rejected(ops, data):
    reads = [i for i, op in enumerate(ops) if op.kind is Kind.GET and _ok(op)]
    if not reads:
        return
    i = data.draw(st.sampled_from(reads))
    ops[i] = replace(ops[i], value="never-written")
    result = check(ops)
    assert result.verdict is Verdict.ILLEGAL
    assert "never written" in result.describe()


def _provably_stale(ops: list[Operation]) -> list[tuple[int, str]]:
    """(read index, value) pairs where that read returning that value cannot be linearized:
    the value's SET completed before another acknowledged write to the key began, and that
    write completed before the read began; values are unique, so nothing can bring it back."""
    found = []
    for i, r in enumerate(ops):
        if r.kind is not Kind.GET or not _ok(r):
            continue
        for s in ops:
            if s.kind is not Kind.SET or not _ok(s) or s.key != r.key or s.value == r.value:
                continue
            if any(
                w.key == r.key and w.is_write and _ok(w) and w.id != s.id
                and s.complete < w.invoke and w.complete < r.invoke
                for w in ops
            ):
                found.append((i, s.value))  # type: ignore[arg-type]
    return found


@SETTINGS
@given(histories(), st.data())
def test_provably_stale_read_is_rejected(ops, data):
    candidates = _provably_stale(ops)
    if not candidates:
        return
    i, value = data.draw(st.sampled_from(candidates))
    ops[i] = replace(ops[i], value=value)
    result = check(ops, max_steps=2_000_000)
    assert result.verdict is Verdict.ILLEGAL, [op.describe() for op in ops]


@SETTINGS
@given(histories(), st.data())
def test_acknowledged_write_lost_at_the_end_is_rejected(ops, data):
    """A final read, after everything acknowledged, that misses the last acknowledged SET."""
    # Every op may have an unknown outcome (complete = inf): then nothing is acknowledged.
    end = max((op.complete for op in ops if math.isfinite(op.complete)), default=0.0) + 1
    last_set = {}
    for op in ops:
        if op.is_write and _ok(op):
            last_set[op.key] = op
    settled = [
        k for k, w in last_set.items()
        if w.kind is Kind.SET
        # No other write of any outcome may overlap or follow it, or it could legally win.
        and all(
            o.id == w.id or o.key != k or not o.is_write or o.outcome is Outcome.FAILED
            or o.complete < w.invoke
            for o in ops
        )
    ]
    if not settled:
        return
    key = data.draw(st.sampled_from(settled))
    good = make_op(10_000, Kind.GET, key, last_set[key].value, end, end + 1)
    assert check([*ops, good]).verdict is Verdict.OK
    lost = make_op(10_000, Kind.GET, key, None, end, end + 1)
    assert check([*ops, lost]).verdict is Verdict.ILLEGAL
