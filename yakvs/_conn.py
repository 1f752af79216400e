"""One client connection: an asyncio Protocol around the sans-IO codec in :mod:`yakvs.protocol`.

Per read: decode every complete line, run them in order through the backend in one call, answer
with one ``transport.write``. Batches wait in a per-connection queue while an async backend call
is pending or the client is not reading its replies, so replies never overtake each other and
unsent replies stay bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, cast

import orjson

from yakvs._flow import DEFERRED as _DEFERRED
from yakvs._flow import FlowControlled
from yakvs.errors import BadRequestError, TooLargeError, UnavailableError, YakvsError
from yakvs.protocol import (
    FastRequest,
    LineBuffer,
    Op,
    Reply,
    Request,
    encode_reply,
    error_reply,
    fast_request,
    request_from_dict,
)
from yakvs.rediscompat.connection import RespConnection
from yakvs.rediscompat.sniff import sniff

if TYPE_CHECKING:
    from yakvs.server import Server

logger = logging.getLogger(__name__)

_NS_PER_MS = 1_000_000
# Requests per backend call. One read may hold thousands of pipelined requests; answering them
# in slices lets backpressure act between slices, so one read of small GETs for big values cannot
# pile up unbounded replies in memory.
MAX_BATCH = 64
_INVALID = error_reply(BadRequestError("Invalid command format"))
_NOT_OBJECT = error_reply(BadRequestError("Invalid command format: expected a JSON object"))
_Batch = tuple[list[Request | FastRequest], list[tuple[int, Reply]] | None]
# Queued after the last batch when the connection must close once that batch is answered.
_CLOSE: _Batch = ([], None)
_SET, _GET = Op.SET, Op.GET
_loads = orjson.loads
# A connection over --max-clients (or during shutdown) is answered in its own protocol, so it
# waits this long for its first bytes (clients that speak first send them at once); a client
# that sends nothing gets the JSON-lines error. At most _MAX_REFUSING such sockets wait at a time
# in this process (none counts in server.connections); past that they are refused at once.
_REFUSE_WAIT_S = 0.5
_MAX_REFUSING = 256
_refusing = 0
_RESP_REFUSALS = {
    "Too many clients": b"-ERR max number of clients reached\r\n",  # Redis's own text
    "Server is shutting down": b"-ERR Server is shutting down\r\n",
}


class Connection(FlowControlled):
    """Serves one client. Created by :class:`~yakvs.server.Server` for every accepted socket."""

    __slots__ = (
        "_backend",
        "_buffer",
        "_done",
        "_execute_encoded",
        "_execute_now",
        "_first",
        "_from_dict",
        "_get_line",
        "_head",
        "_held",
        "_max_line",
        "_refusal",
        "_run_encoded",
        "_server",
        "_set_line",
        "_turn_add",
        "peer",
    )

    def __init__(self, server: Server) -> None:
        self._server = server
        self._backend = server.backend
        # The optional synchronous fast path (LocalBackend without fsync=always).
        self._execute_now = getattr(server.backend, "try_execute_now", None)
        self._execute_encoded = getattr(server.backend, "try_execute_encoded", None)
        # A backend with that fast path also takes plain SET/GET decoded as tuples, not Requests.
        self._from_dict = request_from_dict if self._execute_encoded is None else fast_request
        # Writes wait for the end of the loop turn and share one log write (see yakvs._turn).
        turn = getattr(server.backend, "write_turn", None)
        self._turn_add = turn.add if turn is not None and self._execute_encoded else None
        self._run_encoded = getattr(server.backend, "run_encoded", None)
        self._get_line = getattr(server.backend, "get_line", None) if self._turn_add else None
        self._set_line = getattr(server.backend, "set_line", None)
        self._done = self._deferred_done
        self._buffer = LineBuffer(server.config.max_request_size)
        self._max_line = server.config.max_request_size
        self._queue: deque[_Batch] = deque()
        self._queue_limit = server.config.max_pending_batches
        self._task: asyncio.Future[list[Reply]] | object | None = None
        self._first = True
        self._head = b""
        self._held = 0  # bytes of an unfinished line counted in server.buffered_bytes
        self._closing = False
        self._paused_write = False
        self._paused_reading = False
        # Set while a refused connection waits for its first bytes: (reason, its timer).
        self._refusal: tuple[str, asyncio.TimerHandle] | None = None
        self.transport: asyncio.Transport | None = None
        self.peer = "?"

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport does not inherit asyncio.Transport but has its whole interface.
        self.transport = t = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = f"{peer[0]}:{peer[1]}"
        server = self._server
        if len(server.connections) >= server.config.max_clients or server.stopping:
            reason = "Server is shutting down" if server.stopping else "Too many clients"
            logger.warning("refusing %s: %s", self.peer, reason)
            self._closing = True
            global _refusing
            if _refusing >= _MAX_REFUSING:
                self._refuse(reason, b"")
                return
            _refusing += 1
            timer = asyncio.get_running_loop().call_later(_REFUSE_WAIT_S, self._refuse, reason, b"")
            self._refusal = (reason, timer)
            return
        server.connections.add(self)
        high = server.config.write_high_water
        t.set_write_buffer_limits(high=high, low=high // 4)

    def _refuse(self, reason: str, first: bytes) -> None:
        """Answer a refused connection in the protocol its first bytes speak, then close it."""
        if self._refusal is not None:
            global _refusing
            _refusing -= 1
            self._refusal[1].cancel()
            self._refusal = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        resp = first[:1] == b"*" or first[:1].isalpha()
        if resp and sniff(first) == "http":  # a whole HTTP request line: the JSON error, as ever
            resp = False
        transport.write(
            _RESP_REFUSALS[reason] if resp else encode_reply(error_reply(UnavailableError(reason)))
        )
        transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refusal is not None:
            self._refuse(self._refusal[0], b"")
        self._release()
        self._closing = True
        self._queue.clear()
        self._server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        execute = self._execute_encoded
        if (
            execute is not None
            and data[-1:] == b"\n"
            and self._task is None
            and not self._queue
            and not (self._first or self._closing or self._paused_write or self._buffer.pending)
            and len(data) <= self._max_line
        ):
            # The common case, kept lean: whole requests on an idle connection and a backend
            # that answers at once. Anything else takes the general path below.
            if data.find(b"\n") == len(data) - 1:
                # One request (an unpipelined client): no splitting, no lists. Any error is
                # left to the general path, which decodes the line again and answers it.
                try:
                    obj = _loads(data)
                    if type(obj) is dict:
                        if len(obj) == 2 and obj.get("op") == "GET" and self._get_line:
                            key = obj.get("key")
                            if type(key) is str and key:  # else the general path's error
                                self.transport.write(self._get_line(key))  # type: ignore[union-attr]
                                return
                        request = self._from_dict(obj, time.time_ns() // _NS_PER_MS)
                        if (
                            self._turn_add is not None
                            and type(request) is tuple
                            and request[0] is _SET
                        ):
                            self._task = _DEFERRED
                            self._turn_add(self._set_line, request, self._done)
                            return
                        out = execute((request,))
                        if out is None:  # the backend must wait (group commit)
                            self._submit(([request], None))
                        else:
                            self.transport.write(out)  # type: ignore[union-attr]
                        return
                except (orjson.JSONDecodeError, YakvsError):
                    pass
            lines = data.split(b"\n")
            lines.pop()
            if len(lines) <= MAX_BATCH:
                requests, errors = self._decode(lines)
                if errors is None and requests:
                    if self._turn_add is not None and not _all_gets(requests):
                        self._task = _DEFERRED
                        self._turn_add(self._run_encoded, requests, self._done)
                        return
                    out = execute(requests)
                    if out is not None:
                        self.transport.write(out)  # type: ignore[union-attr]
                        return
                self._submit((requests, errors))
                return
        if self._closing:
            if self._refusal is not None:
                self._refuse(self._refusal[0], data)
            return
        if self._first:
            data = self._head + data
            if len(data) < 8 and b"\n" not in data:
                self._head = data  # too few bytes yet to tell an HTTP request line from JSON
                return
            kind = sniff(data)
            if kind is None:
                self._head = data  # an HTTP method and no full request line yet
                return
            self._first, self._head = False, b""
            if kind == "http":
                logger.info("closing %s: it speaks HTTP", self.peer)
                self._close()
                return
            if kind == "resp":
                self._hand_over_to_resp(data)
                return
        buffer = self._buffer
        lines = buffer.feed(data)
        if lines:
            if len(lines) <= MAX_BATCH:
                self._submit(self._decode(lines))
            else:
                for i in range(0, len(lines), MAX_BATCH):
                    self._submit(self._decode(lines[i : i + MAX_BATCH]))
        pending = buffer.pending
        if pending != self._held:
            self._account(pending)
            if self._closing:
                return
        if buffer.overflowed:
            size = self._server.config.max_request_size
            logger.warning("closing %s: request line over %d bytes", self.peer, size)
            message = f"Request too large (limit {size} bytes)"
            self._closing = True
            self._submit(([], [(0, error_reply(TooLargeError(message)))]))
            self._submit(_CLOSE)

    def _hand_over_to_resp(self, data: bytes) -> None:
        # From now on the transport talks to a RespConnection; this object is done.
        self._closing = True
        transport = self.transport
        assert transport is not None
        conn = RespConnection(self._server, transport, self.peer)
        self._server.connections.discard(self)
        self._server.connections.add(conn)  # type: ignore[arg-type]
        transport.set_protocol(conn)
        conn.data_received(data)

    def _account(self, pending: int) -> None:
        # Partial lines of all clients share one budget: 10 000 clients each holding an almost
        # full 1 MiB line would otherwise hold 10 GB. The client that pushes past it is dropped.
        server = self._server
        server.buffered_bytes += pending - self._held
        self._held = pending
        if pending > 65536 and server.buffered_bytes > server.config.max_buffered_bytes:
            logger.warning("closing %s: request buffers of all clients are full", self.peer)
            reason = "Server is out of request buffer space, try again later"
            self._submit(([], [(0, error_reply(UnavailableError(reason)))]))
            self._closing = True
            self._submit(_CLOSE)
            self._release()

    def _release(self) -> None:
        self._server.buffered_bytes -= self._held
        self._held = 0

    def eof_received(self) -> bool | None:
        if self._refusal is not None:  # nothing was sent: the JSON-lines error, then close
            self._refuse(self._refusal[0], b"")
            return True
        # Half-close (``nc -q``, shutdown(SHUT_WR)): answer what was sent, then close.
        if self._task is None and not self._queue:
            return None
        self._closing = True
        self._submit(_CLOSE)
        return True

    # --- batches ---------------------------------------------------------------------------------

    def _decode(self, lines: list[bytes]) -> _Batch:
        requests: list[Request | FastRequest] = []
        errors: list[tuple[int, Reply]] | None = None
        now_ms = time.time_ns() // _NS_PER_MS
        loads, from_dict = orjson.loads, self._from_dict
        for line in lines:
            try:
                obj = loads(line)
                if type(obj) is not dict:
                    raise TypeError
                requests.append(from_dict(obj, now_ms))
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

    def _submit(self, batch: _Batch) -> None:
        if self._task is None and not self._queue and not self._paused_write:
            self._run(batch)  # the hot path: nothing ahead of this batch
        else:
            self._queue.append(batch)
            self._update_reading()

    def _pump(self) -> None:
        queue = self._queue
        while queue and self._task is None and not self._paused_write:
            self._run(queue.popleft())
        self._update_reading()

    def _run(self, batch: _Batch) -> None:
        if batch is _CLOSE:
            self._close()
            return
        requests, errors = batch
        if not requests:
            if errors:
                self._write([], errors)
            return
        if errors is None and self._execute_encoded is not None:
            data = self._execute_encoded(requests)
            if data is not None:
                transport = self.transport
                if transport is not None and not transport.is_closing():
                    transport.write(data)
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

    def _deferred_done(self, out: bytes) -> None:
        # The loop turn's shared log write is done (or failed and each request ran on its own).
        self._task = None
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(out)
        if self._queue or self._paused_reading:
            self._pump()

    def _batch_done(
        self, task: asyncio.Future[list[Reply]], errors: list[tuple[int, Reply]] | None
    ) -> None:
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
        self._pump()

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



def _all_gets(requests: list[Request | FastRequest]) -> bool:
    """Whether the batch is plain GETs only: such a batch answers at once, no turn to wait for."""
    for request in requests:
        if type(request) is not tuple or request[0] is not _GET:
            return False
    return True
