"""A linearizability checker for a key-value store seen as one register per key.

The search is Wing & Gong's, with Lowe's memoisation, as in Porcupine (the checker behind etcd's
robustness tests): walk the history's call/return events in time order, tentatively linearize
any operation whose call has been reached, back up when a return is reached before its operation
could be placed, and never visit the same (set of linearized operations, register state) twice.
Keys are independent registers, so each key is checked on its own (Porcupine's partitioning;
sound because linearizability is local, Herlihy & Wing), which keeps the exponential part small.

Outcomes: FAILED operations were never applied and are dropped; reads with an UNKNOWN outcome
tell nothing and are dropped; writes with an UNKNOWN outcome may take effect at any time after
their invocation, or never. Values are unique, so an unknown write someone read must have
landed before that read returned: it becomes an ordinary operation ending there (as etcd's
robustness tests do). The other unknown writes stay open, but the search only tries one right
before an operation that needs its effect (see _moves), so they do not multiply the search.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import cast

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

    def __init__(self, op: Operation, bit: int, time: float, match: _Entry | None) -> None:
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
    # The head is a sentinel: its op is never read (typed as an Operation to keep the hot
    # search loop free of None checks).
    head = _Entry(cast(Operation, None), -1, -math.inf, None)
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


def _prepare(ops: list[Operation]) -> tuple[list[Operation], str | None]:
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


def _effect(op: Operation) -> State:
    """The register after a write, whatever it held before: every write overwrites it all."""
    return op.value if op.kind is Kind.SET else None


def _moves(
    head: _Entry, optional: list[bool], state: State
) -> tuple[list[tuple[_Entry, ...]], _Entry]:
    """The ways to extend the linearization from here, and the first pending return.

    A move places one required operation whose call lies before that return (real time allows
    nothing else), or an unknown write immediately followed by a required operation that only
    fits after it. That is all an unknown write is ever good for: moved as late as it can go,
    it lands right before the first operation that sees its effect; followed by a write it
    would be overwritten and can be left out. Unknown writes with the same effect on that next
    operation are interchangeable (all stay open forever), so one of them stands for all.
    This keeps open-ended writes from multiplying the search."""
    required: list[_Entry] = []
    unknown: list[_Entry] = []
    entry = head.next
    while entry is not None and entry.match is not None:
        (unknown if optional[entry.bit] else required).append(entry)
        entry = entry.next
    assert entry is not None, "a required op's return entry is always still in the list"
    moves: list[tuple[_Entry, ...]] = []
    for call in required:
        if _step(state, call.op)[0]:
            moves.append((call,))
            continue
        enabler = next((u for u in unknown if _step(_effect(u.op), call.op)[0]), None)
        if enabler is not None:
            moves.append((enabler, call))
    return moves, entry


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
    # One frame per move made: the moves it was chosen from, where to resume among them, the
    # state before it, the move, and the pending return that bounded those moves.
    frames: list[tuple[list[tuple[_Entry, ...]], int, State, tuple[_Entry, ...], _Entry]] = []
    moves, blocker = _moves(head, optional, state)
    index = 0
    steps = 0
    while required_left > 0:
        steps += 1
        if steps >= max_steps or (steps & 0xFFF == 0 and time.monotonic() > deadline):
            return Verdict.UNDECIDED, steps, best
        if index < len(moves):
            move = moves[index]
            index += 1
            new_state, new_linearized = state, linearized
            for entry in move:
                new_state = _step(new_state, entry.op)[1]
                new_linearized |= 1 << entry.bit
            if (new_linearized, new_state) in cache:
                continue
            cache.add((new_linearized, new_state))
            frames.append((moves, index, state, move, blocker))
            state, linearized = new_state, new_linearized
            required_left -= 1  # a move's last op is always a required one
            for entry in move:
                _lift(entry)
            if required_left:
                moves, blocker = _moves(head, optional, state)
                index = 0
            continue
        # No move fits: the pending return's op cannot be placed here. Back up.
        placed = linearized.bit_count()
        if placed > best.placed:
            last = tuple(e.op for f in frames[-5:] for e in f[3])[-5:]
            best = _Furthest(placed, linearized, state, blocker.op, last)
        if not frames:
            return Verdict.ILLEGAL, steps, best
        moves, index, state, move, blocker = frames.pop()
        for entry in reversed(move):
            linearized &= ~(1 << entry.bit)
            _unlift(entry)
        required_left += 1
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
    prepared, reason = _prepare(ops)
    if reason is not None:
        return KeyResult(key, Verdict.ILLEGAL, len(ops), 0, reason)
    verdict, steps, best = _search(prepared, max_steps, deadline)
    if verdict is Verdict.OK:
        return KeyResult(key, verdict, len(prepared), steps)
    if verdict is Verdict.UNDECIDED:
        return KeyResult(
            key, verdict, len(prepared), steps,
            f"search budget exhausted after {steps} steps; furthest point placed "
            f"{best.placed} of {len(prepared)} ops",
        )
    message, stuck = _explain(prepared, best)
    return KeyResult(key, verdict, len(prepared), steps, message, stuck)


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
