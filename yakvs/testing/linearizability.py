"""A linearizability checker for a key-value store seen as one register per key.

The search is Wing & Gong's, with Lowe's memoisation, as in Porcupine (the checker behind etcd's
robustness tests): walk the history's call/return events in time order, tentatively linearize
any operation whose call has been reached, back up when a return is reached before its operation
could be placed, and never visit the same (set of linearized operations, register state) twice.
Keys are independent registers, so each key is checked on its own (Porcupine's partitioning;
sound because linearizability is local, Herlihy & Wing), which keeps the exponential part small.

Outcomes: FAILED operations were never applied and are dropped; reads with an UNKNOWN outcome
tell nothing and are dropped; writes with an UNKNOWN outcome may take effect at any time after
their invocation, or never. Values are unique, which allows two tightenings before the search
(as etcd's robustness tests do): an unknown write someone read must have landed before that read
returned, so it becomes an ordinary operation ending there; an unknown write nobody read can be
left out (a second, full pass runs when a "deleted" DELETE might have needed it).
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from yakvs.testing.history import Kind, Operation, Outcome

__all__ = ["CheckResult", "KeyResult", "Verdict", "check", "check_key"]

logger = logging.getLogger(__name__)

# Register state: the value held, None = absent.
State = str | None


class Verdict(StrEnum):
    OK = "ok"
    ILLEGAL = "illegal"
    # The search budget ran out before a linearization (or proof of none) was found.
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class KeyResult:
    key: str
    verdict: Verdict
    # Operations that took part in the search (after dropping failed ops and unknown reads).
    checked: int
    steps: int
    message: str = ""
    # The operations the search could not place at its furthest point (empty when OK).
    stuck: tuple[Operation, ...] = ()


@dataclass(frozen=True)
class CheckResult:
    verdict: Verdict
    keys: dict[str, KeyResult] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    def describe(self) -> str:
        """All non-OK keys' messages, or a one-line summary when everything is OK."""
        bad = [r for r in self.keys.values() if r.verdict is not Verdict.OK]
        if not bad:
            ops = sum(r.checked for r in self.keys.values())
            return f"linearizable: {len(self.keys)} keys, {ops} ops, {self.seconds:.3f} s"
        return "\n\n".join(f"key {r.key!r}: {r.verdict}: {r.message}" for r in bad)


def _step(state: State, op: Operation) -> tuple[bool, State]:
    """The sequential specification of one key."""
    if op.kind is Kind.SET:
        return True, op.value
    if op.kind is Kind.GET:
        return state == op.value, state
    return op.found is None or op.found == (state is not None), None


class _Entry:
    """A call or return event in the doubly linked list the search lifts operations out of."""

    __slots__ = ("bit", "match", "next", "op", "prev", "time")

    def __init__(self, op: Operation | None, bit: int, time: float, match: _Entry | None) -> None:
        self.op = op
        self.bit = bit
        self.time = time
        # Set on call entries only: the return entry of the same operation.
        self.match = match
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def _build_list(ops: list[Operation]) -> _Entry:
    """Events sorted by time; a call sorts before a return at the same instant (they overlap)."""
    events: list[tuple[float, int, int, _Entry]] = []
    for bit, op in enumerate(ops):
        ret = _Entry(op, bit, op.complete, None)
        call = _Entry(op, bit, op.invoke, ret)
        events.append((op.invoke, 0, bit, call))
        events.append((op.complete, 1, bit, ret))
    events.sort(key=lambda e: e[:3])
    head = _Entry(None, -1, -math.inf, None)
    prev = head
    for *_, entry in events:
        prev.next = entry
        entry.prev = prev
        prev = entry
    return head


def _lift(call: _Entry) -> None:
    for e in (call, call.match):
        e.prev.next = e.next  # type: ignore[union-attr]
        if e.next is not None:  # type: ignore[union-attr]
            e.next.prev = e.prev  # type: ignore[union-attr]


def _unlift(call: _Entry) -> None:
    # Reverse order of _lift, so each entry's neighbours are already back in place.
    for e in (call.match, call):
        e.prev.next = e  # type: ignore[union-attr]
        if e.next is not None:  # type: ignore[union-attr]
            e.next.prev = e  # type: ignore[union-attr]


def _prepare(ops: list[Operation], drop_unread: bool) -> tuple[list[Operation], str | None]:
    """Drop what cannot matter and tighten what we can; return (ops, reason) where a reason
    means the history is illegal without any search (e.g. a read of a value never written)."""
    writes: dict[str | None, Operation] = {}
    for op in ops:
        if op.kind is Kind.SET:
            if op.value in writes:
                raise ValueError(f"SET values must be unique per key; repeated: {op.describe()}")
            writes[op.value] = op
    reads_of: dict[str | None, list[Operation]] = defaultdict(list)
    for op in ops:
        if op.kind is Kind.GET and op.outcome is Outcome.OK and op.value is not None:
            w = writes.get(op.value)
            if w is None:
                return [], f"read a value that was never written: {op.describe()}"
            if w.outcome is Outcome.FAILED:
                return [], (
                    f"read a value whose write definitely failed: {op.describe()}; "
                    f"the write: {w.describe()}"
                )
            if op.complete < w.invoke:
                return [], (
                    f"read a value before it was written: {op.describe()}; "
                    f"the write: {w.describe()}"
                )
            reads_of[op.value].append(op)
    kept = []
    for op in ops:
        if op.outcome is Outcome.FAILED:
            continue
        if op.outcome is Outcome.UNKNOWN:
            if op.kind is Kind.GET:
                continue
            op = replace(op, complete=math.inf)
            readers = reads_of.get(op.value) if op.kind is Kind.SET else None
            if readers:
                # Someone saw this value, so it was applied before that reader returned:
                # a required operation with a finite interval, not an open-ended option.
                op = replace(op, complete=min(r.complete for r in readers))
            elif op.kind is Kind.SET and drop_unread:
                continue
        kept.append(op)
    return kept, None


@dataclass
class _Furthest:
    """Where the search got furthest, for the failure message."""

    placed: int = -1
    linearized: int = 0
    state: State = None
    blocker: Operation | None = None
    last: tuple[Operation, ...] = ()


def _search(
    ops: list[Operation], max_steps: int, deadline: float
) -> tuple[Verdict, int, _Furthest]:
    """Wing-Gong-Lowe search; returns (verdict, steps taken, furthest point reached)."""
    optional = [math.isinf(op.complete) for op in ops]
    required_left = optional.count(False)
    best = _Furthest()
    if required_left == 0:
        return Verdict.OK, 0, best
    head = _build_list(ops)
    linearized = 0
    state: State = None
    cache: set[tuple[int, State]] = set()
    calls: list[tuple[_Entry, State]] = []
    entry = head.next
    steps = 0
    while required_left > 0:
        steps += 1
        if steps >= max_steps or (steps & 0xFFF == 0 and time.monotonic() > deadline):
            return Verdict.UNDECIDED, steps, best
        # Never None: an unplaced required op's return entry is always still ahead of us.
        assert entry is not None
        if entry.match is not None:
            ok, new_state = _step(state, entry.op)
            if ok:
                new_linearized = linearized | (1 << entry.bit)
                cache_key = (new_linearized, new_state)
                if cache_key not in cache:
                    cache.add(cache_key)
                    calls.append((entry, state))
                    state = new_state
                    linearized = new_linearized
                    if not optional[entry.bit]:
                        required_left -= 1
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
            continue
        # A return reached before its operation was placed: back up.
        if len(calls) > best.placed:
            last = tuple(c.op for c, _ in calls[-5:])
            best = _Furthest(len(calls), linearized, state, entry.op, last)
        if not calls:
            return Verdict.ILLEGAL, steps, best
        call, state = calls.pop()
        linearized &= ~(1 << call.bit)
        if not optional[call.bit]:
            required_left += 1
        _unlift(call)
        entry = call.next
    return Verdict.OK, steps, best


def _explain(ops: list[Operation], best: _Furthest) -> tuple[str, tuple[Operation, ...]]:
    shown = "<absent>" if best.state is None else repr(best.state)
    blocker = best.blocker
    lines = [
        f"not linearizable; the search placed at most {best.placed} of {len(ops)} ops, "
        f"then could not place:",
        f"  {blocker.describe() if blocker else '?'}",
        f"  the register held {shown} after these last placed ops:",
    ]
    lines += [f"    {op.describe()}" for op in best.last] or ["    (none)"]
    stuck: list[Operation] = [blocker] if blocker else []
    if blocker is not None:
        concurrent = [
            op for bit, op in enumerate(ops)
            if not best.linearized >> bit & 1 and op.id != blocker.id
            and op.invoke <= blocker.complete and op.complete >= blocker.invoke
        ]
        if concurrent:
            lines.append("  operations overlapping it, not placed:")
            lines += [f"    {op.describe()}" for op in concurrent[:8]]
            stuck += concurrent[:8]
    return "\n".join(lines), tuple(stuck)


def check_key(
    key: str, ops: list[Operation], max_steps: int = 5_000_000, timeout: float = 30.0
) -> KeyResult:
    """Check the operations on one key (all ``ops`` must be on ``key``)."""
    deadline = time.monotonic() + timeout
    has_found_check = any(op.kind is Kind.DELETE and op.found for op in ops)
    # Leaving out unknown writes that nobody read is always allowed, and it removes most of the
    # branching. It can only hurt where a DELETE reported "deleted" and might have needed such
    # a write to have something to delete: then, if the quick pass fails, search again in full.
    passes = (True, False) if has_found_check else (True,)
    total_steps = 0
    result: KeyResult | None = None
    for drop_unread in passes:
        prepared, reason = _prepare(ops, drop_unread)
        if reason is not None:
            return KeyResult(key, Verdict.ILLEGAL, len(ops), 0, reason)
        verdict, steps, best = _search(prepared, max_steps - total_steps, deadline)
        total_steps += steps
        if verdict is Verdict.OK:
            return KeyResult(key, verdict, len(prepared), total_steps)
        if verdict is Verdict.UNDECIDED:
            message = (
                f"search budget exhausted after {total_steps} steps; furthest point placed "
                f"{best.placed} of {len(prepared)} ops"
            )
            if result is not None:
                # The quick pass's dead end is still the best lead for a human.
                message += (
                    "\nwith unread unknown writes left out it was not linearizable:\n"
                    + result.message
                )
            return KeyResult(key, verdict, len(prepared), total_steps, message,
                             result.stuck if result else ())
        message, stuck = _explain(prepared, best)
        result = KeyResult(key, verdict, len(prepared), total_steps, message, stuck)
    assert result is not None
    return result


def check(
    ops: Iterable[Operation], max_steps: int = 5_000_000, timeout: float = 60.0
) -> CheckResult:
    """Check a whole history, key by key. ``timeout`` bounds the total wall time."""
    start = time.monotonic()
    by_key: dict[str, list[Operation]] = defaultdict(list)
    for op in ops:
        by_key[op.key].append(op)
    results: dict[str, KeyResult] = {}
    for key in sorted(by_key):
        left = max(0.0, timeout - (time.monotonic() - start))
        results[key] = check_key(key, by_key[key], max_steps, left)
        logger.debug("key %r: %s in %d steps", key, results[key].verdict, results[key].steps)
    verdicts = {r.verdict for r in results.values()}
    if Verdict.ILLEGAL in verdicts:
        verdict = Verdict.ILLEGAL
    elif Verdict.UNDECIDED in verdicts:
        verdict = Verdict.UNDECIDED
    else:
        verdict = Verdict.OK
    return CheckResult(verdict, results, time.monotonic() - start)
