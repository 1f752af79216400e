"""Record what logical clients did to a key-value store, for the linearizability checker.

Each operation is recorded with its invoke and complete times from one monotonic clock and an
outcome. The outcome is the crux of fault testing: an operation whose reply never came may have
taken effect (the server applied it and then died) or not, and the checker must allow both.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from yakvs.errors import (
    BadRequestError,
    KeyNotFoundError,
    NoLeaderError,
    NotLeaderError,
    StorageError,
    YakvsError,
    error_from_code,
)
from yakvs.protocol import Consistency, LineBuffer, Op, Reply, Request, decode_reply, encode_request

__all__ = [
    "History",
    "Kind",
    "Operation",
    "Outcome",
    "Pending",
    "Session",
    "WireSession",
    "Workload",
    "dump",
    "execute_recorded",
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
    else might have been applied, and calling it FAILED would make the checker report
    violations that are not there. KeyNotFoundError is not an error for the history: the
    caller records it as an OK read of an absent key.
    """
    if isinstance(exc, KeyNotFoundError):
        raise ValueError("KeyNotFoundError is an OK outcome (absent key), not a failure")
    # NoLeaderError: the Raft node gives it only when the command was never handed to a leader.
    if isinstance(exc, StorageError | BadRequestError | NotLeaderError | NoLeaderError):
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

    def error(self, handle: Pending, exc: BaseException) -> Outcome:
        """Record the outcome ``exc`` stands for (see :func:`outcome_of_error`) and return it."""
        outcome = outcome_of_error(exc)
        if outcome is Outcome.FAILED:
            self.fail(handle)
        else:
            self.unknown(handle)
        return outcome

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


class Session(Protocol):
    """One logical client's connection, as the workload drives it."""

    def connect(self) -> None:
        """Raise OSError or YakvsError when the server cannot be reached (nothing was sent)."""

    def execute(self, request: Request) -> Reply:
        """Send one request, wait for its reply; raise when the outcome is unknown."""

    def close(self) -> None: ...


class WireSession:
    """A bare JSON-lines connection, no retries: every lost reply is visibly an unknown outcome
    (a retrying client would hide, or duplicate, exactly what a fault test must see)."""

    def __init__(self, addr: str, timeout: float = 2.0) -> None:
        host, _, port = addr.rpartition(":")
        self._address = (host, int(port))
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._lines = LineBuffer()
        self._ready: list[bytes] = []

    def connect(self) -> None:
        self._sock = socket.create_connection(self._address, timeout=self._timeout)
        self._lines = LineBuffer()
        self._ready = []

    def execute(self, request: Request) -> Reply:
        if self._sock is None:
            raise ConnectionError("not connected")
        self._sock.sendall(encode_request(request))
        while not self._ready:
            data = self._sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self._ready.extend(self._lines.feed(data))
        try:
            return decode_reply(self._ready.pop(0))
        except BadRequestError as exc:
            # Garbage from the server says nothing about whether the write was applied.
            raise ConnectionError(f"bad reply: {exc}") from None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def execute_recorded(
    history: History,
    session: Session,
    client: int,
    kind: Kind,
    key: str,
    value: str | None = None,
    consistency: Consistency | None = None,
) -> Outcome:
    """Run one operation through ``session`` and record it; on UNKNOWN the caller must drop the
    session, since a late reply on it would be taken for the next request's."""
    handle = history.invoke(client, kind, key, value)
    request = Request(Op(kind.value), key, value or "", consistency=consistency)
    try:
        reply = session.execute(request)
    except (OSError, YakvsError) as exc:
        return history.error(handle, exc)
    if reply.ok:
        history.ok(handle, value=reply.value, found=True if kind is Kind.DELETE else None)
        return Outcome.OK
    err = error_from_code(reply.code, reply.message)
    if isinstance(err, KeyNotFoundError) and kind is not Kind.SET:
        history.ok(handle, value=None, found=False if kind is Kind.DELETE else None)
        return Outcome.OK
    return history.error(handle, err)


class Workload:
    """Logical clients, one thread each, issuing random SET / GET / DELETE with unique values
    on a small key set until stopped; every operation lands in ``history``."""

    def __init__(
        self,
        history: History,
        new_session: Callable[[], Session],
        keys: Sequence[str],
        clients: int = 4,
        seed: int = 0,
        mix: tuple[float, float, float] = (0.45, 0.4, 0.15),  # SET, GET, DELETE
    ) -> None:
        self.history = history
        self._new_session = new_session
        self._keys = list(keys)
        self._mix = mix
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._run, args=(n, random.Random(seed * 1000 + n)),
                             name=f"workload-{n}", daemon=True)
            for n in range(clients)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop and join every client; re-raise the first bug a client thread hit."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        if self._errors:
            raise self._errors[0]
        if stuck:
            raise RuntimeError(f"workload clients did not stop: {stuck}")

    def _run(self, client: int, rng: random.Random) -> None:
        session: Session | None = None
        try:
            while not self._stop.is_set():
                if session is None:
                    session = self._new_session()
                    try:
                        session.connect()
                    except (OSError, YakvsError):
                        session = None
                        self._stop.wait(0.02)  # the server is down: nothing was sent
                        continue
                kind = rng.choices((Kind.SET, Kind.GET, Kind.DELETE), self._mix)[0]
                key = rng.choice(self._keys)
                value = self.history.unique_value(client) if kind is Kind.SET else None
                if execute_recorded(self.history, session, client, kind, key, value) is not (
                    Outcome.OK
                ):
                    session.close()
                    session = None
        except BaseException as exc:
            self._errors.append(exc)
        finally:
            if session is not None:
                session.close()
