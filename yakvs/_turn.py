"""Writes of one event-loop turn, applied together: one store lock, one log write, then replies.

Redis appends to its AOF once per loop iteration, for every client served in it, and only then
writes the replies. This does the same for the standalone server: a connection whose batch holds
a write hands it to :meth:`WriteTurn.add` instead of running it. At the end of the loop turn
(``call_soon`` runs after every ready socket of this turn was read) all of them run inside one
``store.batch()`` -- one ``pwrite`` for all their records -- and each connection gets its reply
bytes through its callback. Unpipelined clients writing at once no longer pay a system call each.

Nothing of a deferred batch is applied before the flush, so no reader can see a write whose record
might still fail to reach the log. If the shared write fails, the batch undoes itself and every
piece runs again on its own against the store, so each command gets its own outcome (some may fit
on a nearly full disk, others not) -- as a connection's own batch always did.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from yakvs.errors import StorageError

if TYPE_CHECKING:
    from yakvs.store import Store

logger = logging.getLogger(__name__)

# run(target, work) -> reply bytes; target is the store or a batch of it.
Runner = Callable[[Any, Any], bytes]
Done = Callable[[bytes], None]


class WriteTurn:
    """Collects deferred write batches of one loop turn and runs them with one log write."""

    __slots__ = ("_items", "_loop", "_store", "flushes")

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self._store = store
        self._loop = loop
        self._items: list[tuple[Runner, Any, Done]] = []
        self.flushes = 0

    def add(self, run: Runner, work: Any, done: Done) -> None:
        """Run ``run(target, work)`` at the end of this loop turn, then call ``done(reply bytes)``.

        ``done`` is called exactly once, from the event loop, unless the process dies first.
        """
        items = self._items
        if not items:
            self._loop.call_soon(self.flush)
        items.append((run, work, done))

    def flush(self) -> None:
        """Run everything added so far (the loop calls this once a turn; close() calls it too)."""
        items = self._items
        if not items:
            return
        self._items = []
        self.flushes += 1
        store = self._store
        try:
            with store.batch() as batch:
                outs = [run(batch, work) for run, work, _ in items]
        except StorageError:
            # The one write failed and the batch was undone: one by one, each its own outcome.
            outs = [run(store, work) for run, work, _ in items]
        for (_, _, done), out in zip(items, outs, strict=True):
            try:
                done(out)
            except Exception:
                # One connection's trouble (e.g. a transport closed under it) must not keep
                # the replies of the others from going out.
                logger.exception("delivering a reply failed")
