"""Group concurrent client writes into one replicated log entry, and reads behind one barrier.

pysyncobj with ``appendEntriesUseBatch=False`` sends each entry at once (~0.3 ms) but manages only
a few thousand entries a second; with its own batching it waits for the next heartbeat (~100 ms).
So yakvs batches: every write that arrives while a batch is in flight waits for it and goes out
together in the next one. One batch in flight at a time keeps order simple and measured fastest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from yakvs.errors import YakvsError
from yakvs.rediscompat import raft as redis_ops

logger = logging.getLogger(__name__)

# Keep one log entry well under pysyncobj's append-entries chunk size (see node.py).
MAX_BATCH_COMMANDS = 2000
MAX_BATCH_BYTES = 1 << 20

# Turns a command's outcome (its result, or the YakvsError that failed it) into the value its
# future resolves to: the backend gets its replies straight from the batch, with no task.
Convert = Callable[[Any, YakvsError | None], Any]


def _size(cmd: tuple[Any, ...]) -> int:
    # ("set", key, value, expiry) carries a value; the others only a key.
    if cmd[0] in redis_ops.KINDS:
        return redis_ops.size(cmd)
    return len(cmd[1]) + (len(cmd[2]) if cmd[0] == "set" else 0) + 16


class WriteBatcher:
    """Collects write commands; ``propose(cmds)`` replicates one batch and returns its results."""

    def __init__(self, propose: Callable[[list[tuple[Any, ...]]], Awaitable[list[Any]]]) -> None:
        self._propose = propose
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[Any], Convert | None]] = []
        self._in_flight = False
        self._scheduled = False
        self._task: asyncio.Future[list[Any]] | None = None
        # Reads riding on the next batch (see Barrier.wait); resolved True if it committed.
        self._riders: list[asyncio.Future[bool]] = []
        self.batches = 0
        self.commands = 0

    def waiting(self) -> bool:
        """Writes are queued for the next batch (which follows the one in flight)."""
        return bool(self._pending)

    def ride(self) -> asyncio.Future[bool] | None:
        """A future for the next batch to be proposed, if writes are waiting for one: that
        entry enters the log after this call, so it can serve as a read barrier."""
        if not self._pending:
            return None
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._riders.append(fut)
        return fut

    def submit(self, cmd: tuple[Any, ...], convert: Convert | None = None) -> asyncio.Future[Any]:
        """A future for ``cmd``'s result; with ``convert``, for ``convert(result, error)``
        (other exceptions than YakvsError still fail the future)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((cmd, fut, convert))
        self._kick(loop)
        return fut

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        # Flush on the next loop turn, so every write that arrived in this turn joins the batch.
        if not self._in_flight and not self._scheduled and self._pending:
            self._scheduled = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._in_flight or not self._pending:
            return
        take, size = 0, 0
        for cmd, _, _ in self._pending:
            size += _size(cmd)
            take += 1
            if take >= MAX_BATCH_COMMANDS or size >= MAX_BATCH_BYTES:
                break
        batch, self._pending = self._pending[:take], self._pending[take:]
        riders, self._riders = self._riders, []
        self._in_flight = True
        self.batches += 1
        self.commands += len(batch)
        # Kept alive by self._task until its done-callback has run.
        task: asyncio.Future[list[Any]] = asyncio.ensure_future(  # noqa: RUF006
            self._propose([cmd for cmd, _, _ in batch]))
        self._task = task
        task.add_done_callback(lambda t: self._done(t, batch, riders))

    def _done(self, task: asyncio.Future[list[Any]], batch: list[Any],
              riders: list[asyncio.Future[bool]]) -> None:
        self._in_flight = False
        exc = task.exception()
        for rider in riders:
            if not rider.done():
                rider.set_result(exc is None)
        if exc is not None and not isinstance(exc, YakvsError):
            logger.error("replicating a batch failed: %r", exc)
        if exc is not None:
            for _, fut, convert in batch:
                _fail(fut, convert, exc)
        else:
            for (_, fut, convert), res in zip(batch, task.result(), strict=True):
                if fut.done():
                    continue
                fut.set_result(res if convert is None else convert(res, None))
        self._kick(asyncio.get_running_loop())

    def fail_pending(self, exc: YakvsError) -> None:
        for _, fut, convert in self._pending:
            _fail(fut, convert, exc)
        for rider in self._riders:
            if not rider.done():
                rider.set_result(False)
        self._pending, self._riders = [], []


def _fail(fut: asyncio.Future[Any], convert: Convert | None, exc: BaseException) -> None:
    if fut.done():
        return
    if convert is not None and isinstance(exc, YakvsError):
        fut.set_result(convert(None, exc))
    else:
        fut.set_exception(exc)


class Barrier:
    """Linearizable reads: wait for a no-op that entered the log *after* the read arrived.

    One barrier is shared by every read waiting for it. A read arriving while one is in flight
    waits for the next one: the in-flight barrier may precede a write acknowledged since. When
    writes are queued for the next batch, reads ride on that batch instead (any entry proposed
    after the read arrived will do), and fall back to a barrier if it fails.
    """

    def __init__(self, propose: Callable[[], Awaitable[None]],
                 writes: WriteBatcher | None = None) -> None:
        self._propose = propose
        self._writes = writes
        self.rides = 0
        self._next: asyncio.Future[None] | None = None
        self._in_flight = False
        self._task: asyncio.Future[None] | None = None
        self.rounds = 0

    def waiting(self) -> bool:
        """Reads are queued for the next barrier."""
        return self._next is not None

    def wait(self) -> asyncio.Future[None]:
        ride = self._writes.ride() if self._writes is not None else None
        if ride is None:
            return self._wait_barrier()
        self.rides += 1
        out: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def landed(f: asyncio.Future[bool]) -> None:
            if out.done():
                return
            if not f.cancelled() and f.result():
                out.set_result(None)
            else:
                self._wait_barrier().add_done_callback(lambda b: _copy(b, out))

        ride.add_done_callback(landed)
        return out

    def _wait_barrier(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        if self._next is None:
            self._next = loop.create_future()
            if not self._in_flight:
                loop.call_soon(self._start)
        return self._next

    def _start(self) -> None:
        if self._in_flight or self._next is None:
            return
        fut, self._next = self._next, None
        self._in_flight = True
        self.rounds += 1
        task: asyncio.Future[None] = asyncio.ensure_future(self._propose())
        self._task = task
        task.add_done_callback(lambda t: self._done(t, fut))

    def _done(self, task: asyncio.Future[None], fut: asyncio.Future[None]) -> None:
        self._in_flight = False
        if not fut.done():
            exc = task.exception()
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(None)
        if self._next is not None:
            asyncio.get_running_loop().call_soon(self._start)


def _copy(src: asyncio.Future[None], dst: asyncio.Future[None]) -> None:
    if dst.done():
        return
    if src.cancelled():
        dst.cancel()
    elif src.exception() is not None:
        dst.set_exception(src.exception())  # type: ignore[arg-type]
    else:
        dst.set_result(None)
