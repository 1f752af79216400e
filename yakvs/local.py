"""LocalBackend: the standalone server's backend, a :class:`~yakvs.store.Store` on this machine."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from yakvs import __version__
from yakvs._turn import WriteTurn
from yakvs.backend import Backend
from yakvs.errors import StorageError, UnavailableError, UnknownOutcomeError, YakvsError
from yakvs.protocol import (
    NOT_FOUND,
    NOT_FOUND_OR_EXPIRED,
    NS_PER_MS,
    OK,
    OK_LINE,
    PONG,
    REDIS_WRITE_OPS,
    FastRequest,
    Op,
    Reply,
    Request,
    encode_reply,
    encode_value_reply,
    error_reply,
    to_request,
)
from yakvs.rediscompat.local import handlers as redis_handlers

if TYPE_CHECKING:
    from yakvs._batch import Batch
    from yakvs.store import Store

    _Target = Store | Batch  # what a handler runs against: the store, or a batch holding its lock

logger = logging.getLogger(__name__)

DEFAULT_KEYS_LIMIT = 1000
_WRITES = frozenset({Op.SET, Op.DELETE}) | REDIS_WRITE_OPS
_INTERNAL = error_reply(UnavailableError("Internal error"))
_NOT_FOUND_LINE = encode_reply(NOT_FOUND_OR_EXPIRED)
# Module constants: looking a member up on the enum class costs ~70 ns each time.
_SET, _GET = Op.SET, Op.GET


class LocalBackend(Backend):
    """Runs requests against a local store.

    With ``fsync="always"`` writes are group-committed: a batch runs inside the store's
    ``deferred_sync()``, then waits for one ``store.sync()`` (in a worker thread, so the loop keeps
    reading) shared by every batch of the same loop turn. Replies of any batch -- reads included --
    wait for a sync that *began after* the batch ran, so nobody is told about data that could
    still be lost. Otherwise :meth:`try_execute_now` answers synchronously (the server's fast path)
    and the connections hand batches holding writes to :attr:`write_turn`, so that the writes of
    one loop turn share one log write (yakvs/_turn.py).
    """

    def __init__(
        self,
        store: Store,
        *,
        group_commit: bool | None = None,
        keys_limit: int = DEFAULT_KEYS_LIMIT,
        tick_interval: float = 0.1,
    ) -> None:
        self.store = store
        fsync = getattr(getattr(store, "config", None), "fsync", None)
        if group_commit is None:
            group_commit = fsync == "always"
        self.group_commit = group_commit
        self.syncs = 0  # group commits: store.sync() calls made from the worker thread
        self.keys_limit = keys_limit
        self._tick_interval = tick_interval
        self._tick_handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        # The sync that will start next (batches join it) and whether one is running now.
        self._next_sync: asyncio.Future[bool] | None = None
        self._running_sync: asyncio.Future[Any] | None = None
        self._closed = False
        # Set by start() unless group commit waits for fsync: see yakvs._turn.
        self.write_turn: WriteTurn | None = None
        self._handlers: dict[Op, Callable[[Request, _Target], Reply]] = {
            Op.SET: self._set,
            Op.GET: self._get,
            Op.DELETE: self._delete,
            Op.TTL: self._ttl,
            Op.EXISTS: self._exists,
            Op.KEYS: self._keys,
            Op.PING: self._ping,
            Op.STATUS: self._status,
        }
        self._handlers.update(redis_handlers(self))

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.group_commit:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="yakvs-fsync")
        else:
            self.write_turn = WriteTurn(self.store, self._loop)
        if self._tick_interval > 0:
            self._tick_handle = self._loop.call_later(self._tick_interval, self._tick)

    def try_execute_now(self, requests: Sequence[Request | FastRequest]) -> list[Reply] | None:
        """Replies at once when no durability wait is needed, else None (use :meth:`execute`)."""
        if self.group_commit:
            return None
        return self.run(requests)

    def try_execute_encoded(self, requests: Sequence[Request | FastRequest]) -> bytes | None:
        """Like :meth:`try_execute_now`, but returns the reply lines ready to write.

        The server's hottest path: SET and GET answer without building a Reply object at all,
        and the whole batch takes the store's lock once and writes the log once.
        """
        if self.group_commit:
            return None
        if len(requests) == 1:  # unpipelined: a batch of one would only add its own overhead
            return self.run_encoded(self.store, requests)
        try:
            with self.store.batch() as batch:
                return self.run_encoded(batch, requests)
        except StorageError:
            # The batch's log write failed and it was undone: its replies are void. One by one,
            # each command gets its own outcome (some may fit on the disk, others not).
            return self.run_encoded(self.store, requests)

    def get_line(self, key: str) -> bytes:
        """The reply line of a plain GET of ``key`` (a non-empty str): an unpipelined GET's path.

        Only for a backend without group commit (see :attr:`write_turn`), as try_execute_encoded.
        """
        try:
            found = self.store.get(key)
        except YakvsError as exc:
            return encode_reply(error_reply(exc))
        except Exception:
            logger.exception("request GET failed")
            return encode_reply(_INTERNAL)
        if found is None:
            return _NOT_FOUND_LINE
        ms = found[1]
        return encode_value_reply(found[0], -1 if ms is None else ms * NS_PER_MS)

    def set_line(self, target: _Target, request: FastRequest) -> bytes:
        """The reply line of one plain SET (a FastRequest) run against ``target``."""
        try:
            target.put(request[1], request[2], request[4])
        except YakvsError as exc:
            return encode_reply(error_reply(exc))
        except Exception:
            logger.exception("request SET failed")
            return encode_reply(_INTERNAL)
        return OK_LINE

    def run_encoded(self, target: _Target, requests: Sequence[Request | FastRequest]) -> bytes:
        """The reply lines of ``requests`` run in order against ``target`` (store or batch)."""
        out: list[bytes] = []
        append = out.append
        handlers = self._handlers
        for request in requests:
            if type(request) is tuple:  # a plain SET or GET, its expiry already pinned
                op, key, value, _, at = request
                try:
                    if op is _SET:
                        target.put(key, value, at)
                        append(OK_LINE)
                        continue
                    found = target.get(key)
                except YakvsError as exc:
                    append(encode_reply(error_reply(exc)))
                    continue
                except Exception:
                    logger.exception("request %s failed", op)
                    append(encode_reply(_INTERNAL))
                    continue
                if found is None:
                    append(_NOT_FOUND_LINE)
                else:
                    ms = found[1]
                    append(encode_value_reply(found[0], -1 if ms is None else ms * NS_PER_MS))
                continue
            req: Request = request  # type: ignore[assignment]  # not a tuple: a Request
            op = req.op
            try:
                if op is _SET:
                    if req.expires_at is None and req.expires_in:
                        self._set(req, target)  # not decoded by the server: pin it now
                    else:
                        target.set(req.key, req.value, expires_at=req.expires_at)
                    append(OK_LINE)
                elif op is _GET:
                    found = target.get(req.key)
                    if found is None:
                        append(_NOT_FOUND_LINE)
                    else:
                        ms = found[1]
                        append(encode_value_reply(found[0], -1 if ms is None else ms * NS_PER_MS))
                else:
                    append(encode_reply(handlers[op](req, target)))
            except YakvsError as exc:
                append(encode_reply(error_reply(exc)))
            except Exception:
                logger.exception("request %s failed", op)
                append(encode_reply(_INTERNAL))
        return b"".join(out)

    async def execute(self, requests: Sequence[Request | FastRequest]) -> list[Reply]:
        full = [to_request(r) for r in requests]
        if not self.group_commit:
            return self.run(full)
        with self.store.deferred_sync():
            replies = self.run(full)
        if not await self._durable():
            # The writes are applied in memory and readers may already see them; the store's
            # recovery rewrite makes them durable unless the process dies first. So they did not
            # fail cleanly: telling the client IO_ERROR ("not applied") would be a lie.
            failed = error_reply(
                UnknownOutcomeError(
                    "fsync of the command log failed: the write is applied in memory but may not "
                    "survive a crash"
                )
            )
            replies = [
                failed if r.ok and q.op in _WRITES else r
                for q, r in zip(full, replies, strict=True)
            ]
        return replies

    def run(self, requests: Sequence[Request | FastRequest]) -> list[Reply]:
        """Execute ``requests`` in order, synchronously, as one store batch; errors are replies."""
        full = [to_request(r) for r in requests]
        try:
            with self.store.batch() as batch:
                return self._run(batch, full)
        except StorageError:
            return self._run(self.store, full)  # see try_execute_encoded

    def _run(self, target: _Target, requests: Sequence[Request]) -> list[Reply]:
        handlers = self._handlers
        replies: list[Reply] = []
        append = replies.append
        for request in requests:
            try:
                append(handlers[request.op](request, target))
            except YakvsError as exc:
                append(error_reply(exc))
            except Exception:
                logger.exception("request %s failed", request.op)
                append(_INTERNAL)
        return replies

    # --- handlers: one per op, against the store or a batch of it --------------------------------

    def _set(self, request: Request, target: _Target) -> Reply:
        expires_at = request.expires_at
        if expires_at is None and request.expires_in > 0:
            expires_at = time.time_ns() // NS_PER_MS + max(1, request.expires_in // NS_PER_MS)
        target.set(request.key, request.value, expires_at=expires_at)
        return OK

    def _get(self, request: Request, target: _Target) -> Reply:
        found = target.get(request.key)
        if found is None:
            return NOT_FOUND_OR_EXPIRED
        value, remaining_ms = found
        return Reply(value=value, ttl=-1 if remaining_ms is None else remaining_ms * NS_PER_MS)

    def _delete(self, request: Request, target: _Target) -> Reply:
        return OK if target.delete(request.key) else NOT_FOUND

    def _ttl(self, request: Request, target: _Target) -> Reply:
        ms = target.ttl(request.key)
        if ms == -2:
            return NOT_FOUND
        return Reply(ttl=-1 if ms == -1 else ms * NS_PER_MS)

    def _exists(self, request: Request, target: _Target) -> Reply:
        return Reply(exists=bool(target.exists(request.key)))

    def _keys(self, request: Request, target: _Target) -> Reply:
        limit = request.limit or self.keys_limit
        return Reply(keys=tuple(target.keys(request.prefix, limit)))

    def _ping(self, request: Request, target: _Target) -> Reply:
        return PONG

    def _status(self, request: Request, target: _Target) -> Reply:
        # Reads no lock (stats and len are racy snapshots), so it is safe inside a batch.
        stats = getattr(self.store, "stats", None)
        info: dict[str, Any] = {
            "mode": "standalone",
            "version": __version__,
            "role": "standalone",
            "keys": len(self.store),
            "group_commit": self.group_commit,
            "syncs": self.syncs,
            # Loop turns whose writes shared one log write (see yakvs._turn).
            "write_turns": self.write_turn.flushes if self.write_turn is not None else 0,
        }
        if isinstance(stats, dict):
            info["store"] = stats
        return Reply(info=info)

    # --- group commit ----------------------------------------------------------------------------

    def _durable(self) -> asyncio.Future[bool]:
        """A future set once a sync that starts after this call has finished (True = ok)."""
        fut = self._next_sync
        if fut is None:
            assert self._loop is not None, "start() was not awaited"
            fut = self._next_sync = self._loop.create_future()
            if self._running_sync is None:
                # call_soon: every batch that arrives in this loop turn joins the same fsync.
                self._loop.call_soon(self._start_sync)
        return fut

    def _start_sync(self) -> None:
        fut, self._next_sync = self._next_sync, None
        if fut is None or self._running_sync is not None:
            self._next_sync = fut
            return
        assert self._loop is not None
        running = self._loop.run_in_executor(self._executor, self.store.sync)
        self._running_sync = running
        self.syncs += 1
        running.add_done_callback(lambda done: self._sync_done(done, fut))

    def _sync_done(self, done: asyncio.Future[Any], fut: asyncio.Future[bool] | None) -> None:
        self._running_sync = None
        ok = not done.cancelled() and done.exception() is None
        if not ok:
            logger.error("fsync of the command log failed: %s", done.exception())
        if fut is not None and not fut.done():
            fut.set_result(ok)
        if self._next_sync is not None:
            self._start_sync()

    def _tick(self) -> None:
        try:
            # Never waits for the disk: the store fsyncs everysec logs in its own helper thread.
            self.store.tick()
        except Exception:
            logger.exception("store tick failed")
        if not self._closed and self._loop is not None:
            self._tick_handle = self._loop.call_later(self._tick_interval, self._tick)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if self.write_turn is not None:
            self.write_turn.flush()  # normally done already: the loop ran it at the end of a turn
        while self._running_sync is not None or self._next_sync is not None:
            if self._running_sync is not None:
                await asyncio.wait([self._running_sync])
            elif self._next_sync is not None:
                self._start_sync()
            await asyncio.sleep(0)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        # Flushes and fsyncs whatever the last batches wrote, whatever the fsync policy.
        self.store.close()
        logger.info("store closed")


def open_local_backend(
    path: str, fsync: str = "everysec", *, repair: bool = False, **kwargs: Any
) -> LocalBackend:
    """Open the store at ``path`` and wrap it; raises what the store raises on a bad log."""
    from yakvs.store import Store, StoreConfig

    options: dict[str, Any] = {"path": path, "fsync": fsync, "background": False}
    if repair:
        options["repair"] = True
    store = Store(StoreConfig(**options))
    return LocalBackend(store, group_commit=fsync == "always", **kwargs)
