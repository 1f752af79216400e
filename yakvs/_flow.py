"""Flow control both connection protocols share (JSON lines in _conn, RESP in rediscompat).

A connection stops reading while its client does not read its replies (the transport's write
buffer is over its high-water mark), while too much received work waits in its queue, and once
it is closing; it reads again when none of that holds. Replies never overtake each other: work
waits in ``_queue`` while a backend call (``_task``) is pending.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

# Stands in ``_task`` for the backend call's future while a batch waits for the loop turn's
# shared log write (yakvs/_turn.py).
DEFERRED = object()


class FlowControlled(asyncio.Protocol):
    """The base of :class:`~yakvs._conn.Connection` and ``RespConnection``.

    Subclasses set the attributes below in ``__init__`` and define :meth:`_pump`, which runs
    queued work while nothing is pending and the client reads.
    """

    __slots__ = (
        "_closing",
        "_paused_reading",
        "_paused_write",
        "_queue",
        "_queue_limit",  # queued items at which reading pauses
        "_task",  # the pending backend call (or a marker), None when idle
        "transport",
    )

    transport: asyncio.Transport | None
    _closing: bool
    _paused_write: bool
    _paused_reading: bool
    _task: object | None
    _queue: deque[Any]
    _queue_limit: int

    def _pump(self) -> None:
        raise NotImplementedError

    def pause_writing(self) -> None:
        # The client is not reading its replies: stop answering and reading until it catches up.
        self._paused_write = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._paused_write = False
        self._pump()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        pause = self._paused_write or self._closing or len(self._queue) >= self._queue_limit
        if pause and not self._paused_reading:
            self._paused_reading = True
            transport.pause_reading()
        elif not pause and self._paused_reading:
            self._paused_reading = False
            transport.resume_reading()

    def _close(self) -> None:
        self._closing = True
        self._queue.clear()
        if self.transport is not None:
            self.transport.close()

    def stop_reading(self) -> None:
        """Shutdown: answer what was already received, read nothing more."""
        self._closing = True
        self._update_reading()

    @property
    def busy(self) -> bool:
        """True while a batch is being executed or waits to be."""
        return self._task is not None or bool(self._queue)
