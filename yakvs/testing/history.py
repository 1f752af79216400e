"""Record what logical clients did to a key-value store, for the linearizability checker.

Each operation is recorded with its invoke and complete times from one monotonic clock and an
outcome. The outcome is the crux of fault testing: an operation whose reply never came may have
taken effect (the server applied it and then died) or not, and the checker must allow both.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path

from yakvs.errors import (
    BadRequestError,
    KeyNotFoundError,
    NotLeaderError,
    StorageError,
    YakvsError,
)

__all__ = [
    "History",
    "Kind",
    "Operation",
    "Outcome",
    "Pending",
    "dump",
    "load",
    "make_op",
    "outcome_of_error",
]


class Kind(StrEnum):
    SET = "SET"
    GET = "GET"
    DELETE = "DELETE"


class Outcome(StrEnum):
    OK = "ok"
    # Definitely not applied: the server said so (log write failed, bad request, not the leader).
    FAILED = "failed"
    # Timeout or lost connection: may take effect at any later time, or never.
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Operation:
    """One completed (or abandoned) operation of one logical client."""

    id: int
    client: int
    kind: Kind
    key: str
    # SET: the value written. GET: the value read, None = the key was absent.
    value: str | None
    # DELETE: whether the reply said the key existed; None = not known / not checked.
    found: bool | None
    outcome: Outcome
    # Seconds on the recorder's monotonic clock.
    invoke: float
    # math.inf while pending and for UNKNOWN outcomes: the effect may land at any later time.
    complete: float

    @property
    def is_write(self) -> bool:
        return self.kind is not Kind.GET

    def describe(self) -> str:
        """A one-line, human-readable account, as used in checker failure messages."""
        if self.kind is Kind.SET:
            what = f"SET {self.key!r} = {self.value!r}"
        elif self.kind is Kind.GET:
            seen = "<absent>" if self.value is None else repr(self.value)
            what = f"GET {self.key!r} -> {seen}"
        else:
            found = {None: "", True: " -> deleted", False: " -> not found"}[self.found]
            what = f"DELETE {self.key!r}{found}"
        end = "inf" if math.isinf(self.complete) else f"{self.complete:.6f}"
        return (
            f"#{self.id} client {self.client}: {what} [{self.outcome}] "
            f"[{self.invoke:.6f} .. {end}]"
        )


@dataclass(slots=True)
class Pending:
    """Handle for an invoked operation; finish it with History.ok/fail/unknown."""

    id: int
    client: int
    kind: Kind
    key: str
    value: str | None
    invoke: float
    done: bool = False


def outcome_of_error(exc: BaseException) -> Outcome:
    """Classify an exception raised by a request into FAILED or UNKNOWN.

    Only errors where the server positively refused before applying count as FAILED; anything
    else might have been applied, and calling it FAILED would make the checker report false
    violations (or, worse, hide real ones). KeyNotFoundError is not an error for the history:
    the caller records it as an OK read of an absent key.
    """
    if isinstance(exc, KeyNotFoundError):
        raise ValueError("KeyNotFoundError is an OK outcome (absent key), not a failure")
    if isinstance(exc, StorageError | BadRequestError | NotLeaderError):
        return Outcome.FAILED
    if isinstance(exc, YakvsError | OSError | TimeoutError | EOFError):
        return Outcome.UNKNOWN
    raise exc


class History:
    """A thread-safe recorder shared by all logical clients of one test run."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._ops: dict[int, Operation] = {}
        self._pending: dict[int, Pending] = {}
        self._values = itertools.count()

    def unique_value(self, client: int) -> str:
        """A value never written before in this history; the checker relies on uniqueness."""
        with self._lock:
            return f"c{client}-{next(self._values)}"

    def invoke(self, client: int, kind: Kind, key: str, value: str | None = None) -> Pending:
        """Note the start of an operation; call this right before the request is sent."""
        with self._lock:
            handle = Pending(next(self._ids), client, Kind(kind), key, value, self._clock())
            self._pending[handle.id] = handle
            return handle

    def ok(self, handle: Pending, value: str | None = None, found: bool | None = None) -> None:
        """The reply arrived: for GET ``value`` is what was read (None = absent)."""
        if handle.kind is Kind.SET:
            value = handle.value
        self._finish(handle, Outcome.OK, value=value, found=found)

    def fail(self, handle: Pending) -> None:
        """The server refused the operation: it was definitely not applied."""
        self._finish(handle, Outcome.FAILED, value=handle.value, found=None)

    def unknown(self, handle: Pending) -> None:
        """No reply (timeout, connection lost): it may take effect at any later time, or never."""
        self._finish(handle, Outcome.UNKNOWN, value=handle.value, found=None)

    def _finish(
        self, handle: Pending, outcome: Outcome, value: str | None, found: bool | None
    ) -> None:
        with self._lock:
            now = self._clock()
            if handle.done:
                raise RuntimeError(f"operation #{handle.id} finished twice")
            handle.done = True
            del self._pending[handle.id]
            complete = math.inf if outcome is Outcome.UNKNOWN else now
            self._ops[handle.id] = Operation(
                handle.id, handle.client, handle.kind, handle.key, value, found, outcome,
                handle.invoke, complete,
            )

    def operations(self) -> list[Operation]:
        """Everything recorded so far, in invoke order. Still-pending operations count as
        UNKNOWN: a client thread that hangs in a request is indistinguishable from a lost reply."""
        with self._lock:
            ops = list(self._ops.values())
            ops.extend(
                Operation(p.id, p.client, p.kind, p.key, p.value, None, Outcome.UNKNOWN,
                          p.invoke, math.inf)
                for p in self._pending.values()
            )
        ops.sort(key=lambda op: (op.invoke, op.id))
        return ops

    def counts(self) -> dict[str, int]:
        """How many operations of each outcome, for test diagnostics."""
        result = {o.value: 0 for o in Outcome}
        for op in self.operations():
            result[op.outcome.value] += 1
        return result

    def dump(self, path: str | Path) -> None:
        """Write the history as JSON lines, for a post-mortem of a failed run."""
        dump(self.operations(), path)


def dump(ops: Iterable[Operation], path: str | Path) -> None:
    """Write operations as JSON lines (``complete`` of UNKNOWN ops as null)."""
    with open(path, "w", encoding="utf-8") as f:
        for op in ops:
            row = asdict(op)
            row["complete"] = None if math.isinf(op.complete) else op.complete
            f.write(json.dumps(row) + "\n")


def load(path: str | Path) -> list[Operation]:
    """Read operations written by :func:`dump`."""
    ops = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            complete = math.inf if row["complete"] is None else row["complete"]
            row.update(kind=Kind(row["kind"]), outcome=Outcome(row["outcome"]), complete=complete)
            ops.append(Operation(**row))
    return ops


def make_op(
    id: int,
    kind: Kind | str,
    key: str,
    value: str | None,
    invoke: float,
    complete: float,
    outcome: Outcome | str = Outcome.OK,
    client: int = 0,
    found: bool | None = None,
) -> Operation:
    """Build an operation with explicit times (checker tests and hand-written histories)."""
    outcome = Outcome(outcome)
    if outcome is Outcome.UNKNOWN:
        complete = math.inf
    return Operation(id, client, Kind(kind), key, value, found, outcome, invoke, complete)


def with_complete(op: Operation, complete: float) -> Operation:
    """A copy of ``op`` with another completion time."""
    return replace(op, complete=complete)
