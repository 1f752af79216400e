"""The asyncio client: the same surface and rules as :class:`yakvs.client.Client`, awaited."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from yakvs.client import _base
from yakvs.client._retry import Backoff, Retry
from yakvs.errors import ClientTimeoutError, ConnectionFailedError, UnknownOutcomeError
from yakvs.protocol import Op, Reply, Request, decode_reply, encode_request

logger = logging.getLogger(__name__)

# Replies carry values up to the server's request limit (1 MiB by default) plus JSON escaping.
_READ_LIMIT = 64 << 20


class AsyncClient:
    """Asyncio twin of :class:`~yakvs.client.Client`: same retry, redirect and error rules.

    One connection, so concurrent calls on one AsyncClient are serialised by a lock; open several
    clients (or use :meth:`pipeline`) for parallelism.
    """

    def __init__(
        self,
        addrs: str | Sequence[str] = "127.0.0.1:8080",
        *,
        connect_timeout: float = 2.0,
        request_timeout: float = 5.0,
        retries: int = 3,
        backoff: Backoff | None = None,
    ) -> None:
        self._addrs = _base.parse_addrs(addrs)
        self.address: str = self._addrs[0]
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.retry = Retry(retries, backoff)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        """Connect now (otherwise the first request does); tries each address in turn."""
        if self._reader is not None and not self._dead():
            return
        await self._drop()
        start = self._addrs.index(self.address) if self.address in self._addrs else 0
        order = [self.address, *self._addrs[start:], *self._addrs[:start]]
        last: BaseException | None = None
        for addr in dict.fromkeys(order):
            host, port = _base.split_addr(addr)
            try:
                self._reader, self._writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port, limit=_READ_LIMIT), self.connect_timeout
                )
            except (OSError, TimeoutError) as exc:
                last = exc
                logger.debug("cannot connect to %s: %s", addr, exc)
                continue
            self.address = addr
            return
        raise ConnectionFailedError(f"Cannot connect to {', '.join(self._addrs)}: {last}")

    def _dead(self) -> bool:
        # See Client._dead: the loop has already noticed a close that happened while we idled.
        assert self._reader is not None and self._writer is not None
        return (
            self._reader.at_eof()
            or self._reader.exception() is not None
            or self._writer.is_closing()
        )

    async def _drop(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def close(self) -> None:
        await self._drop()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def execute(self, request: Request) -> Reply:
        """Send one request and return its reply; error replies are returned, not raised."""
        return (await self.execute_many([request], follow=True))[0]

    async def execute_many(
        self, requests: Sequence[Request], *, follow: bool = False
    ) -> list[Reply]:
        """Send ``requests`` in one write and read one reply each (a pipeline)."""
        if not requests:
            return []
        async with self._lock:
            return await self._execute_locked(requests, follow)

    async def _execute_locked(self, requests: Sequence[Request], follow: bool) -> list[Reply]:
        payload = b"".join([encode_request(r) for r in requests])
        safe = _base.retry_safe(requests)
        failures = redirects = 0
        while True:
            try:
                await self.connect()
            except ConnectionFailedError:
                failures += 1
                delay = self.retry.delay(failures)
                if delay is None:
                    raise
                await asyncio.sleep(delay)
                continue
            try:
                replies = await asyncio.wait_for(
                    self._roundtrip(payload, len(requests)), self.request_timeout
                )
            except TimeoutError:
                await self._drop()
                raise ClientTimeoutError(
                    f"No reply from {self.address} within {self.request_timeout}s"
                ) from None
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                await self._drop()
                if not safe:
                    raise UnknownOutcomeError(
                        f"Connection to {self.address} lost after sending: {exc}"
                    ) from exc
                failures += 1
                delay = self.retry.delay(failures)
                if delay is None:
                    raise ConnectionFailedError(
                        f"Connection to {self.address} lost: {exc}"
                    ) from exc
                await asyncio.sleep(delay)
                continue
            if follow:
                leader = _base.redirect_target(replies[0])
                if leader is not None and redirects < _base.MAX_REDIRECTS:
                    redirects += 1
                    await self._drop()
                    self.address = leader
                    continue
                if _base.is_no_leader(replies[0]):
                    failures += 1
                    delay = self.retry.delay(failures)
                    if delay is not None:
                        await asyncio.sleep(delay)
                        continue
            return replies

    async def _roundtrip(self, payload: bytes, count: int) -> list[Reply]:
        reader, writer = self._reader, self._writer
        assert reader is not None and writer is not None
        writer.write(payload)
        await writer.drain()
        replies = []
        for _ in range(count):
            line = await reader.readuntil(b"\n")
            replies.append(decode_reply(line))
        return replies

    async def _call(self, request: Request) -> Any:
        return _base.RESULT[request.op](await self.execute(request))

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``; ``ttl`` in seconds, None = no expiry."""
        await self._call(_base.set_request(key, value, ttl))

    async def get(self, key: str) -> str:
        """The value of ``key``; raises KeyNotFoundError."""
        return await self._call(Request(Op.GET, key))  # type: ignore[no-any-return]

    async def get_with_ttl(self, key: str) -> tuple[str, float | None]:
        return _base.get_with_ttl(await self.execute(Request(Op.GET, key)))

    async def delete(self, key: str) -> bool:
        """True if ``key`` existed and is now gone."""
        return await self._call(Request(Op.DELETE, key))  # type: ignore[no-any-return]

    async def ttl(self, key: str) -> float | None:
        """Seconds left (None = no expiry); raises KeyNotFoundError."""
        return await self._call(Request(Op.TTL, key))  # type: ignore[no-any-return]

    async def exists(self, key: str) -> bool:
        return await self._call(Request(Op.EXISTS, key))  # type: ignore[no-any-return]

    async def keys(self, prefix: str = "", limit: int = 0) -> list[str]:
        return await self._call(_base.keys_request(prefix, limit))  # type: ignore[no-any-return]

    async def ping(self) -> str:
        return await self._call(Request(Op.PING))  # type: ignore[no-any-return]

    async def status(self) -> dict[str, Any]:
        return await self._call(Request(Op.STATUS))  # type: ignore[no-any-return]

    def pipeline(self) -> AsyncPipeline:
        return AsyncPipeline(self)


class AsyncPipeline(_base.PipelineCommands):
    """Queue commands with the client's method names, then ``await execute()``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        super().__init__()

    async def __aenter__(self) -> AsyncPipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._requests.clear()

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Send everything queued; see :meth:`yakvs.client.Pipeline.execute`."""
        requests, self._requests = self._requests, []
        replies = await self._client.execute_many(requests)
        return _base.pipeline_results(requests, replies, raise_on_error)
