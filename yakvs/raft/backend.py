"""RaftBackend: the one Server's Backend over a cluster node.

Writes (SET, DELETE) of every connection go through the node's write batcher: one replicated log
entry carries all that arrive together. Reads are linearizable by default: they wait for a shared
no-op barrier that entered the log after they arrived, then read the local replica; ``stale`` reads
skip the barrier. Expiry is hidden with the local clock; only the leader proposes removals.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

from yakvs import __version__
from yakvs.backend import Backend
from yakvs.errors import (
    BadRequestError,
    KeyNotFoundError,
    UnavailableError,
    UnknownCommandError,
    YakvsError,
)
from yakvs.protocol import REDIS_WRITE_OPS, Consistency, Op, Reply, Request
from yakvs.raft.node import RaftNode, now_ms
from yakvs.rediscompat import raft as redis_ops

logger = logging.getLogger(__name__)

_WRITES = (Op.SET, Op.DELETE, *REDIS_WRITE_OPS)
_LOCAL = (Op.PING, Op.STATUS)
DEFAULT_KEYS_LIMIT = 1000
NS_PER_MS = 1_000_000


def _error(exc: YakvsError) -> Reply:
    return Reply(ok=False, code=exc.code, message=exc.message,
                 leader=getattr(exc, "leader", None))


# Replies are frozen: the common ones are built once.
_OK = Reply(ok=True)
_NOT_FOUND = _error(KeyNotFoundError())


def _set_reply(result: Any, exc: YakvsError | None) -> list[Reply]:
    return [_OK] if exc is None else [_error(exc)]


def _delete_reply(result: Any, exc: YakvsError | None) -> list[Reply]:
    if exc is not None:
        return [_error(exc)]
    return [_OK] if result else [_NOT_FOUND]


def _redis_reply(result: Any, exc: YakvsError | None) -> list[Reply]:
    return [_error(exc)] if exc is not None else [redis_ops.result_reply(result)]


def _resolved(replies: list[Reply]) -> asyncio.Future[list[Reply]]:
    fut: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
    fut.set_result(replies)
    return fut


class RaftBackend(Backend):
    """Serves requests from a started :class:`RaftNode` (see ``yakvs.cli.raft``)."""

    def __init__(self, node: RaftNode) -> None:
        self.node = node

    def execute(  # type: ignore[override]
        self, requests: Sequence[Request]
    ) -> asyncio.Future[list[Reply]]:
        # A plain function returning a future, not a coroutine: the server wraps what it gets
        # in ensure_future, which passes a future through but builds a Task around a
        # coroutine; unpipelined requests (the common case) are then answered straight from
        # the batch's or the barrier's completion, with no task, no shield and no await.
        if len(requests) == 1:
            req = requests[0]
            kind = self._kind(req)
            if kind == "write":
                return self._write_one(req)
            if kind == "read":
                return self._read_one(req)
            return _resolved(self._reads_now(requests))
        return asyncio.ensure_future(self._execute_run(requests))

    async def _execute_run(self, requests: Sequence[Request]) -> list[Reply]:
        replies: list[Reply] = []
        i = 0
        # Runs of writes go out together, runs of reads share one barrier; order is kept
        # because each run finishes before the next one starts.
        while i < len(requests):
            j = i + 1
            kind = self._kind(requests[i])
            while j < len(requests) and self._kind(requests[j]) == kind:
                j += 1
            run = requests[i:j]
            if kind == "write":
                replies.extend(await self._writes(run))
            elif kind == "read":
                replies.extend(await self._reads(run, barrier=True))
            else:
                replies.extend(await self._reads(run, barrier=False))
            i = j
        return replies

    def _kind(self, req: Request) -> str:
        if req.op in _WRITES:
            return "write"
        if req.op in _LOCAL:
            return "local"
        consistency = req.consistency or self.node.config.read_consistency
        return "read" if consistency == Consistency.LINEARIZABLE else "local"

    async def close(self) -> None:
        # The node belongs to whoever started it (the CLI closes it after the server).
        return None

    # -- writes ------------------------------------------------------------------------------

    def _command(self, req: Request) -> tuple[Any, ...]:
        if req.op in REDIS_WRITE_OPS:
            return redis_ops.command(req, now_ms())
        if not req.key:
            raise BadRequestError("Key is required")
        if req.op == Op.SET:
            if req.expires_in < 0:
                raise BadRequestError("expires_in must not be negative")
            # The receiving node fixes the absolute expiry (the server pins it when the line
            # arrives, rounding sub-millisecond TTLs up); replicas never read their clocks.
            expiry = req.expires_at
            if expiry is None and req.expires_in > 0:
                expiry = now_ms() + max(1, req.expires_in // NS_PER_MS)
            return ("set", req.key, req.value, expiry)
        return ("del", req.key, now_ms())

    def _write_one(self, req: Request) -> asyncio.Future[list[Reply]]:
        try:
            cmd = self._command(req)
        except YakvsError as exc:
            return _resolved([_error(exc)])
        if self.node.left:
            return _resolved([_error(UnavailableError("this node left the cluster"))])
        if req.op in REDIS_WRITE_OPS:
            return self.node.writes.submit(cmd, _redis_reply)
        return self.node.writes.submit(cmd, _delete_reply if req.op == Op.DELETE else _set_reply)

    async def _writes(self, run: Sequence[Request]) -> list[Reply]:
        # All submitted before the first await: they join one batch.
        slots = [self._write_one(req) for req in run]
        replies: list[Reply] = []
        for slot in slots:
            # Not shielded: a future of our own; the batcher skips it if cancelled.
            replies.extend(await slot)
        return replies

    # -- reads -------------------------------------------------------------------------------

    def _read_one(self, req: Request) -> asyncio.Future[list[Reply]]:
        out: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
        # The barrier's future is shared by every waiting read: only this read's own future
        # may ever be cancelled, so no shield is needed.
        self.node.barrier.wait().add_done_callback(partial(self._after_barrier, req, out))
        return out

    def _after_barrier(self, req: Request, out: asyncio.Future[list[Reply]],
                       barrier: asyncio.Future[None]) -> None:
        if out.done():
            return
        if barrier.cancelled():
            out.cancel()
            return
        exc = barrier.exception()
        if exc is None:
            out.set_result(self._reads_now((req,)))
        elif isinstance(exc, YakvsError):
            out.set_result([_error(exc)])
        else:
            out.set_exception(exc)

    async def _reads(self, run: Sequence[Request], barrier: bool) -> list[Reply]:
        if barrier:
            try:
                await asyncio.shield(self.node.barrier.wait())
            except YakvsError as exc:
                return [_error(exc) for _ in run]
        return self._reads_now(run)

    def _reads_now(self, run: Sequence[Request]) -> list[Reply]:
        now = now_ms()
        replies = []
        for req in run:
            try:
                replies.append(self._read(req, now))
            except YakvsError as exc:
                replies.append(_error(exc))
        return replies

    def _read(self, req: Request, now: int) -> Reply:
        state = self.node.state
        if req.op == Op.PING:
            return Reply(ok=True, value="PONG")
        if req.op == Op.STATUS:
            info = self.node.status()
            info["version"] = __version__
            return Reply(ok=True, info=info)
        if req.op in redis_ops.READ_OPS:
            return redis_ops.read(state, req, now)
        if req.op == Op.KEYS:
            limit = req.limit if req.limit > 0 else DEFAULT_KEYS_LIMIT
            return Reply(ok=True, keys=tuple(state.keys(req.prefix, limit, now)))
        if not req.key:
            raise BadRequestError("Key is required")
        found = state.get(req.key, now)
        if req.op == Op.EXISTS:
            return Reply(ok=True, exists=found is not None)
        if req.op not in (Op.GET, Op.TTL):
            raise UnknownCommandError()
        if found is None:
            raise KeyNotFoundError("Key not found or expired" if req.op == Op.TTL else None)
        value, expiry = found
        ttl = -1 if expiry is None else (expiry - now) * NS_PER_MS
        return Reply(ok=True, value=value if req.op == Op.GET else None, ttl=ttl)
