"""Drive pysyncobj from the asyncio event loop: one thread, no hand-offs.

pysyncobj normally runs its own tick thread that polls its sockets. Measured here, driving it
from the event loop instead (``autoTick=False``) was ~50% faster and makes every callback run in
the loop thread, so results reach futures without locks. Its sockets are registered with the
loop through :class:`AsyncioPoller`; any socket event schedules one coalesced ``doTick(0)``, and a
timer ticks for elections, heartbeats and reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable
from typing import Any

import pysyncobj.tcp_connection
from pysyncobj.poller import POLL_EVENT_TYPE, Poller
from pysyncobj.transport import TCPTransport

logger = logging.getLogger(__name__)

_READ = POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.ERROR
_WRITE = POLL_EVENT_TYPE.WRITE


class AsyncioPoller(Poller):
    """pysyncobj's poller interface on top of ``loop.add_reader`` / ``add_writer``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_event: Callable[[], None]) -> None:
        self._loop = loop
        self._on_event = on_event
        self._masks: dict[int, int] = {}
        self._callbacks: dict[int, Callable[[int, int], None]] = {}

    def subscribe(self, descr: int, callback: Callable[[int, int], None], eventMask: int) -> None:
        old = self._masks.get(descr, 0)
        self._callbacks[descr] = callback
        self._masks[descr] = eventMask
        # pysyncobj re-subscribes on every write event; touch the loop only for real changes.
        if eventMask & _READ and not old & _READ:
            self._loop.add_reader(descr, self._dispatch, descr, POLL_EVENT_TYPE.READ)
        elif old & _READ and not eventMask & _READ:
            self._loop.remove_reader(descr)
        if eventMask & _WRITE and not old & _WRITE:
            self._loop.add_writer(descr, self._dispatch, descr, POLL_EVENT_TYPE.WRITE)
        elif old & _WRITE and not eventMask & _WRITE:
            self._loop.remove_writer(descr)

    def unsubscribe(self, descr: int) -> None:
        old = self._masks.pop(descr, None)
        self._callbacks.pop(descr, None)
        if old is None:
            return
        # pysyncobj closes a socket before unsubscribing it; the loop may already have dropped it.
        for remove in (self._loop.remove_reader, self._loop.remove_writer):
            try:
                remove(descr)
            except (OSError, ValueError, RuntimeError):
                pass

    def poll(self, timeout: float) -> None:
        # The event loop does the polling; doTick(0) calls this and must not block.
        return None

    def _dispatch(self, descr: int, event: int) -> None:
        callback = self._callbacks.get(descr)
        if callback is None:
            return
        try:
            callback(descr, event)
        except Exception:
            logger.exception("raft socket handler failed")
        self._on_event()

    def close(self) -> None:
        for descr in list(self._masks):
            self.unsubscribe(descr)


# Messages at least this big (snapshot chunks, a long catch-up) are still really compressed.
COMPRESS_ABOVE = 64 * 1024


class _LightZlib:
    """Stands in for the ``zlib`` module inside ``pysyncobj.tcp_connection``.

    pysyncobj runs ``zlib.compress(data, 3)`` on every message it sends. Setting up a deflate
    stream at that level costs far more than the message: measured here ~20 us for a 100-byte
    reply and ~60 us for a 25-write batch (then ~11 us to inflate it), against ~1 and ~3 us for
    a stored (level 0) stream with a small window. Small messages are sent stored: still a valid
    zlib stream, so peers that compress decode ours and the reverse (no protocol change).
    """

    error = zlib.error
    decompress = staticmethod(zlib.decompress)

    @staticmethod
    def compress(data: bytes, level: int = -1) -> bytes:
        if len(data) >= COMPRESS_ABOVE:
            return zlib.compress(data, level)
        stream = zlib.compressobj(0, zlib.DEFLATED, 9, 1)
        return stream.compress(data) + stream.flush()


def install_light_compression() -> None:
    """Process-wide and idempotent; every pysyncobj connection in this process uses it."""
    pysyncobj.tcp_connection.zlib = _LightZlib


def make_transport_class(poller: AsyncioPoller, encryptor: Any = None) -> type[TCPTransport]:
    """A TCPTransport that swaps in ``poller`` (and ``encryptor``) before any socket exists.

    SyncObj builds its own poller and encryptor before the transport; the transport is the
    first thing that subscribes or encrypts, so replacing them here covers every connection.
    Both are private attributes of pysyncobj 0.3.x (checked by the tests).
    """

    install_light_compression()

    class _LoopTransport(TCPTransport):
        def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:
            syncObj._poller = poller
            if encryptor is not None:
                syncObj._SyncObj__encryptor = encryptor
            super().__init__(syncObj, selfNode, otherNodes)

    return _LoopTransport


class Ticker:
    """Calls ``tick`` once per loop turn after socket events, and every ``period`` seconds."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tick: Callable[[], None],
                 period: float = 0.02) -> None:
        self._loop = loop
        self._tick = tick
        self._period = period
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._running = False

    def start(self) -> None:
        self._running = True
        self._timer = self._loop.call_later(self._period, self._on_timer)

    def stop(self) -> None:
        self._running = False
        if self._timer is not None:
            self._timer.cancel()

    def request(self) -> None:
        if not self._scheduled and self._running:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        if not self._running:
            return
        try:
            self._tick()
        except Exception:
            logger.exception("raft tick failed")

    def _on_timer(self) -> None:
        self._run()
        if self._running:
            self._timer = self._loop.call_later(self._period, self._on_timer)


class TickNotifier:
    """Stands in for pysyncobj's wake-up pipe: a proposal made in the loop thread only needs a
    tick on a later loop turn, not a pipe write, an epoll wake-up and two reads."""

    def __init__(self, request_tick: Callable[[], None]) -> None:
        self._request_tick = request_tick

    def notify(self) -> None:
        self._request_tick()


class CommitNotice:
    """Defer the leader's commit-only append-entries while the next proposal is on its way.

    With ``appendEntriesUseBatch=False`` pysyncobj sends every follower one append-entries
    when a new entry is proposed and another right after the leader applies entries, only to
    carry the new commit index. Under load the next batch or barrier is proposed a few loop
    turns later and its append-entries carries that commit index anyway: so while ``busy()``
    says a proposal is queued, the commit-only send waits for it (or ``fallback`` seconds at
    most), which halves raft messages per batch on every node. When nothing is queued it is
    sent at once, so a lone follower write or read is not delayed. Followers learn commits a
    little later; nothing is acknowledged on the strength of that message, so no guarantee
    changes. Wraps two private methods of pysyncobj 0.3.x (checked by the tests).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sync: Any, busy: Callable[[], bool],
                 fallback: float = 0.002) -> None:
        self._loop = loop
        self._sync = sync
        self._busy = busy
        self._fallback = fallback
        self._apply = sync._SyncObj__applyLogEntries
        self._send = sync._SyncObj__sendAppendEntries
        self._timer: asyncio.TimerHandle | None = None
        self.deferred = 0
        self.saved = 0
        # Name-mangled calls inside SyncObj look these up on the instance first. SyncObj
        # pickles into its full dump every instance attribute it did not have when built, so
        # these must join that list or every log compaction fails.
        sync._SyncObj__applyLogEntries = self._apply_entries
        sync._SyncObj__sendAppendEntries = self._send_entries
        sync._SyncObj__properies.update(("_SyncObj__applyLogEntries",
                                         "_SyncObj__sendAppendEntries"))

    def _apply_entries(self) -> bool:
        if not self._apply():
            return False
        if not self._busy() or not self._sync._isLeader():
            return True
        if self._timer is None:
            self.deferred += 1
            self._timer = self._loop.call_later(self._fallback, self._on_timer)
        return False

    def _send_entries(self) -> None:
        # Any append-entries carries the current commit index: the deferred notice is moot.
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self.saved += 1
        self._send()

    def _on_timer(self) -> None:
        self._timer = None
        if self._sync._isLeader():
            self._send()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
