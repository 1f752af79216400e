"""One client connection: an asyncio Protocol around the sans-IO codec in :mod:`yakvs.protocol`.

Per read: decode every complete line, run them in order through the backend in one call, answer
with one ``transport.write``. A batch whose backend call is async is queued per connection so
replies never overtake each other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

import orjson

from yakvs.errors import BadRequestError, TooLargeError, UnavailableError, YakvsError
from yakvs.protocol import (
    LineBuffer,
    Reply,
    Request,
    encode_reply,
    error_reply,
    looks_like_http,
    request_from_dict,
)

if TYPE_CHECKING:
    from yakvs.server import Server

logger = logging.getLogger(__name__)

_NS_PER_MS = 1_000_000
_INVALID = error_reply(BadRequestError("Invalid command format"))
_NOT_OBJECT = error_reply(BadRequestError("Invalid command format: expected a JSON object"))
_Batch = tuple[list[Request], list[tuple[int, Reply]] | None]
# Queued after the last batch when the connection must close once that batch is answered.
_CLOSE: _Batch = ([], None)


class Connection(asyncio.Protocol):
    """Serves one client. Created by :class:`~yakvs.server.Server` for every accepted socket."""

    __slots__ = (
        "_backend",
        "_buffer",
        "_closing",
        "_execute_now",
        "_first",
        "_paused_pending",
        "_paused_write",
        "_queue",
        "_server",
        "_task",
        "peer",
        "transport",
    )

    def __init__(self, server: Server) -> None:
        self._server = server
        self._backend = server.backend
        # The optional synchronous fast path (LocalBackend without fsync=always).
        self._execute_now = getattr(server.backend, "try_execute_now", None)
        self._buffer = LineBuffer(server.config.max_request_size)
        self._queue: deque[_Batch] = deque()
        self._task: asyncio.Future[list[Reply]] | None = None
        self._first = True
        self._closing = False
        self._paused_write = False
        self._paused_pending = False
        self.transport: asyncio.Transport | None = None
        self.peer = "?"

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = f"{peer[0]}:{peer[1]}"
        server = self._server
        if len(server.connections) >= server.config.max_clients or server.stopping:
            reason = "Too many clients" if not server.stopping else "Server is shutting down"
            logger.warning("refusing %s: %s", self.peer, reason)
            transport.write(encode_reply(error_reply(UnavailableError(reason))))
            self._closing = True
            transport.close()
            return
        server.connections.add(self)
        high = server.config.write_high_water
        transport.set_write_buffer_limits(high=high, low=high // 4)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._queue.clear()
        self._server.connections.discard(self)

    def pause_writing(self) -> None:
        # The client is not reading its replies: stop reading its requests until it catches up,
        # so its unsent replies (and our memory) stay bounded.
        self._paused_write = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._paused_write = False
        self._update_reading()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._first:
            self._first = False
            if looks_like_http(data):
                logger.info("closing %s: it speaks HTTP", self.peer)
                self._close()
                return
        buffer = self._buffer
        lines = buffer.feed(data)
        if lines:
            self._submit(self._decode(lines))
        if buffer.overflowed:
            size = self._server.config.max_request_size
            logger.warning("closing %s: request line over %d bytes", self.peer, size)
            message = f"Request too large (limit {size} bytes)"
            self._submit(([], [(0, error_reply(TooLargeError(message)))]), close_after=True)

    def eof_received(self) -> bool | None:
        # Half-close (``nc -q``, a script's shutdown(SHUT_WR)): answer what was sent, then close.
        if self._task is None and not self._queue:
            return None
        self._closing = True
        self._queue.append(_CLOSE)
        return True

    # --- batches ---------------------------------------------------------------------------------

    def _decode(self, lines: list[bytes]) -> _Batch:
        requests: list[Request] = []
        errors: list[tuple[int, Reply]] | None = None
        now_ms = time.time_ns() // _NS_PER_MS
        loads = orjson.loads
        for line in lines:
            try:
                obj = loads(line)
                if type(obj) is not dict:
                    raise TypeError
                requests.append(request_from_dict(obj, now_ms))
                continue
            except orjson.JSONDecodeError:
                if not line.strip():
                    continue  # blank lines (a human on nc pressing Enter) get no reply
                reply = _INVALID
            except TypeError:
                reply = _NOT_OBJECT
            except YakvsError as exc:
                reply = error_reply(exc)
            if errors is None:
                errors = []
            errors.append((len(requests) + len(errors), reply))
        return requests, errors

    def _submit(self, batch: _Batch, close_after: bool = False) -> None:
        if close_after:
            self._closing = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        if self._task is not None or self._queue:
            self._queue.append(batch)
            if close_after:
                self._queue.append(_CLOSE)
            self._update_reading()
            return
        self._run(batch)
        if close_after:
            if self._task is None:
                self._close()
            else:
                self._queue.append(_CLOSE)

    def _run(self, batch: _Batch) -> None:
        requests, errors = batch
        if not requests:
            self._write([], errors)
            return
        execute_now = self._execute_now
        if execute_now is not None:
            replies = execute_now(requests)
            if replies is not None:
                self._write(replies, errors)
                return
        task = asyncio.ensure_future(self._backend.execute(requests))
        self._task = task
        self._server.inflight.add(task)
        task.add_done_callback(lambda t: self._batch_done(t, errors))

    def _batch_done(self, task: asyncio.Future[list[Reply]], errors: list | None) -> None:
        self._task = None
        self._server.inflight.discard(task)
        if task.cancelled():
            self._close()
            return
        exc = task.exception()
        if exc is not None:
            logger.error("backend failed on a batch from %s: %r", self.peer, exc)
            self._close()
            return
        self._write(task.result(), errors)
        while self._queue and self._task is None:
            batch = self._queue.popleft()
            if batch is _CLOSE:
                self._close()
                return
            self._run(batch)
        self._update_reading()

    def _write(self, replies: list[Reply], errors: list[tuple[int, Reply]] | None) -> None:
        if errors:
            replies = list(replies)
            for index, reply in errors:
                replies.insert(index, reply)
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if len(replies) == 1:
            transport.write(encode_reply(replies[0]))
        else:
            transport.write(b"".join([encode_reply(r) for r in replies]))

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        pause = self._paused_write or len(self._queue) >= self._server.config.max_pending_batches
        if pause and not self._paused_pending:
            self._paused_pending = True
            transport.pause_reading()
        elif not pause and self._paused_pending and not self._closing:
            self._paused_pending = False
            transport.resume_reading()

    def _close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    @property
    def busy(self) -> bool:
        """True while a batch is being executed or waits to be."""
        return self._task is not None or bool(self._queue)
