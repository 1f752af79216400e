"""One RESP2 client connection: the asyncio Protocol a JSON-lines Connection hands over to.

The server's :class:`~yakvs._conn.Connection` looks at the first bytes of every connection; when
they are RESP (``*`` or an inline command) it swaps this protocol in with
``transport.set_protocol`` and feeds it those bytes. From then on: parse with
:class:`~yakvs.resp.RespParser`, plan each command (:mod:`yakvs.rediscompat.commands`), run the
backend part of up to ``MAX_BATCH`` of them in one backend call, answer with one write. Replies
stay in order; reading pauses while a batch runs or the client does not read its replies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, cast

from yakvs._flow import DEFERRED as _DEFERRED
from yakvs._flow import FlowControlled
from yakvs.protocol import Reply, Request
from yakvs.rediscompat import fast
from yakvs.rediscompat.admin import Session
from yakvs.rediscompat.commands import QUIT, Call, Planned, dispatch
from yakvs.rediscompat.replies import OK, error
from yakvs.resp import RespParser, RespProtocolError

if TYPE_CHECKING:
    from yakvs.server import Server

logger = logging.getLogger(__name__)

MAX_BATCH = 64
# Parsed commands held per connection before reading pauses (the rest waits in the socket).
MAX_PENDING = 1024


class RespConnection(FlowControlled):
    """Serves one RESP client; created by the JSON-lines Connection that detected RESP."""

    def __init__(self, server: Server, transport: asyncio.Transport, peer: str) -> None:
        self._server = server
        self._backend = server.backend
        self._execute_now = getattr(server.backend, "try_execute_now", None)
        self._store = fast.store_for(server.backend)
        # Writes wait for the end of the loop turn and share one log write (see yakvs._turn).
        turn = getattr(server.backend, "write_turn", None)
        self._turn_add = turn.add if turn is not None and self._store is not None else None
        self._done = self._deferred_done
        self._parked = False  # commands wait in the parser behind a deferred batch
        self._parser = RespParser(server.config.max_request_size)
        self._queue: deque[list[bytes] | RespProtocolError] = deque()
        self._queue_limit = MAX_PENDING
        self._task: asyncio.Future[list[Reply]] | object | None = None
        self._closing = False
        self._held = 0  # parser bytes counted in server.buffered_bytes
        self._paused_write = False
        self._paused_reading = False
        self.transport: asyncio.Transport | None = transport
        self.peer = peer
        sock = transport.get_extra_info("socket")
        local = transport.get_extra_info("sockname")
        self.session = Session(
            server,
            addr=peer,
            laddr=f"{local[0]}:{local[1]}" if local else "?",
            fd=sock.fileno() if sock is not None else -1,
        )

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        self._closing = True
        self._queue.clear()
        self._server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        parser = self._parser
        store = self._store
        hot = store is not None and self._task is None and not self._queue and not (
            self._paused_write
        )
        if hot and data[:1] == b"*" and parser.idle and len(data) <= parser.max_command_size:
            # Whole arrays in this read (the usual case): split them without the parser.
            split = fast.split_one(data, parser.max_bulk_len)
            if split is not None:  # one plain GET or SET: an unpipelined client
                self.session.last_active = time.monotonic()
                if len(split[0]) == 2 or self._turn_add is None:
                    self.transport.write(  # type: ignore[union-attr]
                        fast.run_on(store, split, self.session.nil)
                    )
                else:
                    self._task = _DEFERRED
                    self._turn_add(fast.set_one, split[0], self._done)
                return
            split = fast.split_arrays(data, parser.max_bulk_len, parser.max_multibulk_len)
            if split is not None and fast.plain(split):
                self.session.last_active = time.monotonic()
                if (
                    self._turn_add is not None
                    and len(split) <= MAX_BATCH
                    and not fast.all_gets(split)
                ):
                    self._task = _DEFERRED
                    self._turn_add(fast.runner(self.session.nil), split, self._done)
                    return
                write = self.transport.write  # type: ignore[union-attr]
                # In slices, so a client that stops reading its replies stops us between them.
                done, nil = 0, self.session.nil
                while done < len(split) and not self._paused_write:
                    write(fast.run(store, split[done : done + MAX_BATCH], nil))  # type: ignore[arg-type]
                    done += MAX_BATCH
                if done < len(split):
                    self._queue.extend(split[done:])
                    self._update_reading()
                return
        parser.feed(data)
        if hot:
            # The hot path: plain GET/SET straight to the store (see rediscompat.fast).
            assert store is not None
            commands: list[list[bytes]] = []
            try:
                while len(commands) < MAX_BATCH:
                    argv = parser.next_command()
                    if argv is None:
                        break
                    commands.append(argv)
            except RespProtocolError:
                self._queue.extend(commands)
                self._pull()  # queues the error after the commands
                self._pump()
                return
            if commands and fast.plain(commands):
                self.session.last_active = time.monotonic()
                if self._turn_add is not None and not fast.all_gets(commands):
                    # The rest of this read waits in the parser until the turn's write is done.
                    self._task = _DEFERRED
                    self._parked = True
                    self._turn_add(fast.runner(self.session.nil), commands, self._done)
                    self._account()
                    return
                self.transport.write(  # type: ignore[union-attr]
                    fast.run(store, commands, self.session.nil)
                )
                if len(commands) < MAX_BATCH:
                    if self._held or parser.buffered:
                        self._account()
                    return
            else:
                self._queue.extend(commands)
        self._pull()
        self._pump()
        self._account()

    def _account(self) -> None:
        # Unparsed request bytes of all clients share the server's budget with JSON lines: a
        # client that pushes past it (after 64 KiB of its own) is told so and closed.
        held = self._parser.buffered
        server = self._server
        server.buffered_bytes += held - self._held
        self._held = held
        if held > 65536 and server.buffered_bytes > server.config.max_buffered_bytes:
            logger.warning("closing %s: request buffers of all clients are full", self.peer)
            self._release()
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(error("ERR server is out of request buffer space"))
            self._close()

    def _release(self) -> None:
        self._server.buffered_bytes -= self._held
        self._held = 0

    def eof_received(self) -> bool | None:
        if self._task is None and not self._queue:
            return None
        self._closing = True  # answer what was sent, then close (see _pump)
        return True

    # --- batches -------------------------------------------------------------------------------

    def _pull(self) -> None:
        """Move complete commands from the parser to the queue, up to MAX_PENDING."""
        pending, parser = self._queue, self._parser
        try:
            while len(pending) < MAX_PENDING:
                argv = parser.next_command()
                if argv is None:
                    return
                pending.append(argv)
        except RespProtocolError as exc:
            logger.info("closing %s: %s", self.peer, exc)
            pending.append(exc)

    def _pump(self) -> None:
        pending = self._queue
        while pending and self._task is None and not self._paused_write:
            plan: list[Planned] = []
            close = False
            while pending and len(plan) < MAX_BATCH:
                item = pending.popleft()
                if isinstance(item, RespProtocolError):
                    plan.append(item.reply)
                    close = True
                    break
                step = dispatch(item, self.session)
                plan.append(step)
                if step is QUIT:
                    close = True
                    break
            if close:
                pending.clear()
            self._run(plan, close)
            if not pending and not close:
                # Commands left in the parser (or parsed ahead by hiredis) while the queue was full.
                self._pull()
        if self._closing and self._task is None and not pending:
            self._close()
            return
        self._update_reading()

    def _run(self, plan: list[Planned], close: bool) -> None:
        requests: list[Request] = [p.request for p in plan if isinstance(p, Call)]
        self.session.last_active = time.monotonic()
        if not requests:
            self._write(plan, [], close)
            return
        if self._execute_now is not None:
            replies = self._execute_now(requests)
            if replies is not None:
                self._write(plan, replies, close)
                return
        task = asyncio.ensure_future(self._backend.execute(requests))
        self._task = task
        self._server.inflight.add(task)
        task.add_done_callback(lambda t: self._batch_done(t, plan, close))

    def _deferred_done(self, out: bytes) -> None:
        # The loop turn's shared log write is done (or failed and each command ran on its own).
        self._task = None
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(out)
        if self._queue or self._closing or self._paused_reading or self._parked:
            self._parked = False
            self._pull()
            self._pump()

    def _batch_done(
        self, task: asyncio.Future[list[Reply]], plan: list[Planned], close: bool
    ) -> None:
        self._task = None
        self._server.inflight.discard(task)
        if task.cancelled() or task.exception() is not None:
            if not task.cancelled():
                logger.error("backend failed on a batch from %s: %r", self.peer, task.exception())
            self._close()
            return
        self._write(plan, task.result(), close)
        self._pump()

    def _write(self, plan: list[Planned], replies: list[Reply], close: bool) -> None:
        out: list[bytes] = []
        it = iter(replies)
        for step in plan:
            if type(step) is bytes:
                out.append(step)
            elif isinstance(step, Call):
                try:
                    out.append(step.format(next(it)))
                except Exception:
                    logger.exception("formatting a reply for %s failed", self.peer)
                    out.append(error("ERR internal error"))
            else:  # QUIT
                out.append(OK)
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(b"".join(out) if len(out) != 1 else out[0])
        if close:
            self._close()
