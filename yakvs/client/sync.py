"""The blocking client: one TCP connection, JSON lines, typed errors, retries with backoff."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from yakvs.client import _base
from yakvs.client._retry import Backoff, Retry
from yakvs.errors import ClientTimeoutError, ConnectionFailedError, UnknownOutcomeError
from yakvs.protocol import Op, Reply, Request, decode_reply, encode_request

logger = logging.getLogger(__name__)


class Client:
    """A yakvs client for one server or a list of cluster seeds.

    Connection errors (refused, reset, dropped) are retried ``retries`` times with ``backoff``
    (exponential with jitter by default), trying each address in turn; NOT_LEADER replies are
    followed to the leader they name and NO_LEADER is retried with backoff. A request whose
    connection dropped *after* it was sent is re-sent only if it is a read; a write (SET, DELETE)
    raises :class:`~yakvs.errors.UnknownOutcomeError` instead, because it may have been applied
    and a repeat could undo another client's newer write. A request with no reply within
    ``request_timeout`` raises :class:`~yakvs.errors.ClientTimeoutError` (a write may or may not
    have been applied). Error replies raise their typed error (``KeyNotFoundError``...), except
    through :meth:`execute`, which returns them.
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
        self._sock: socket.socket | None = None
        self._buf = b""
        self._pos = 0

    # --- connection ------------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect now (otherwise the first request does); tries each address in turn."""
        if self._sock is not None and not self._dead():
            return
        self._drop()
        start = self._addrs.index(self.address) if self.address in self._addrs else 0
        order = [self.address, *self._addrs[start:], *self._addrs[:start]]
        last: OSError | None = None
        for addr in dict.fromkeys(order):
            try:
                sock = socket.create_connection(_base.split_addr(addr), self.connect_timeout)
            except OSError as exc:
                last = exc
                logger.debug("cannot connect to %s: %s", addr, exc)
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock, self.address = sock, addr
            return
        raise ConnectionFailedError(f"Cannot connect to {', '.join(self._addrs)}: {last}")

    def _dead(self) -> bool:
        # A server that restarted since our last request left us a closed socket; find out before
        # sending, so even a DELETE can go out on a fresh connection instead of failing as unknown.
        sock = self._sock
        assert sock is not None
        try:
            sock.setblocking(False)
            return sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            sock.settimeout(self.request_timeout)

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock, self._buf, self._pos = None, b"", 0

    def close(self) -> None:
        self._drop()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- requests --------------------------------------------------------------------------------

    def execute(self, request: Request) -> Reply:
        """Send one request and return its reply; error replies are returned, not raised."""
        return self.execute_many([request], follow=True)[0]

    def execute_many(self, requests: Sequence[Request], *, follow: bool = False) -> list[Reply]:
        """Send ``requests`` in one write and read one reply each (a pipeline)."""
        if not requests:
            return []
        payload = b"".join([encode_request(r) for r in requests])
        safe = _base.retry_safe(requests)
        failures = redirects = 0
        while True:
            try:
                self.connect()
            except ConnectionFailedError:
                failures += 1
                delay = self.retry.delay(failures)
                if delay is None:
                    raise
                time.sleep(delay)
                continue
            try:
                replies = self._roundtrip(payload, len(requests))
            except TimeoutError:
                self._drop()
                raise ClientTimeoutError(
                    f"No reply from {self.address} within {self.request_timeout}s"
                ) from None
            except OSError as exc:
                self._drop()
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
                time.sleep(delay)
                continue
            if follow:
                leader = _base.redirect_target(replies[0])
                if leader is not None and redirects < _base.MAX_REDIRECTS:
                    redirects += 1
                    self._drop()
                    self.address = leader
                    continue
                if _base.is_no_leader(replies[0]):
                    failures += 1
                    delay = self.retry.delay(failures)
                    if delay is not None:
                        time.sleep(delay)
                        continue
            return replies

    def _roundtrip(self, payload: bytes, count: int) -> list[Reply]:
        sock = self._sock
        assert sock is not None
        deadline = time.monotonic() + self.request_timeout
        sock.settimeout(self.request_timeout)
        sock.sendall(payload)
        return [decode_reply(self._read_line(sock, deadline)) for _ in range(count)]

    def _read_line(self, sock: socket.socket, deadline: float) -> bytes:
        while True:
            end = self._buf.find(b"\n", self._pos)
            if end >= 0:
                line = self._buf[self._pos : end]
                self._pos = end + 1
                return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            chunk = sock.recv(1 << 18)
            if not chunk:
                raise ConnectionResetError("connection closed by the server")
            self._buf = self._buf[self._pos :] + chunk
            self._pos = 0

    def _call(self, request: Request) -> Any:
        return _base.RESULT[request.op](self.execute(request))

    # --- the commands ----------------------------------------------------------------------------

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``; ``ttl`` in seconds, None = no expiry."""
        self._call(_base.set_request(key, value, ttl))

    def get(self, key: str) -> str:
        """The value of ``key``; raises KeyNotFoundError."""
        return self._call(Request(Op.GET, key))  # type: ignore[no-any-return]

    def get_with_ttl(self, key: str) -> tuple[str, float | None]:
        """The value and the seconds it has left (None = no expiry); raises KeyNotFoundError."""
        return _base.get_with_ttl(self.execute(Request(Op.GET, key)))

    def delete(self, key: str) -> bool:
        """True if ``key`` existed and is now gone."""
        return self._call(Request(Op.DELETE, key))  # type: ignore[no-any-return]

    def ttl(self, key: str) -> float | None:
        """Seconds left (None = no expiry); raises KeyNotFoundError."""
        return self._call(Request(Op.TTL, key))  # type: ignore[no-any-return]

    def exists(self, key: str) -> bool:
        return self._call(Request(Op.EXISTS, key))  # type: ignore[no-any-return]

    def keys(self, prefix: str = "", limit: int = 0) -> list[str]:
        """Keys starting with ``prefix``; ``limit`` 0 = the server's default cap."""
        return self._call(_base.keys_request(prefix, limit))  # type: ignore[no-any-return]

    def ping(self) -> str:
        return self._call(Request(Op.PING))  # type: ignore[no-any-return]

    def status(self) -> dict[str, Any]:
        return self._call(Request(Op.STATUS))  # type: ignore[no-any-return]

    def pipeline(self) -> Pipeline:
        """Queue commands, send them in one write, read all replies: for bulk work."""
        return Pipeline(self)


class Pipeline(_base.PipelineCommands):
    """Commands queued by the same methods as :class:`Client`, sent by :meth:`execute`.

    No redirects are followed inside a pipeline; retries follow the client's rules (a pipeline
    holding a write is not re-sent after a lost connection).
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        super().__init__()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self._requests.clear()

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Send everything queued; results in order, as the single-call methods return them.

        An error reply raises (the first one, after all replies were read) unless
        ``raise_on_error`` is False, in which case the exception object takes its place.
        """
        requests, self._requests = self._requests, []
        replies = self._client.execute_many(requests)
        return _base.pipeline_results(requests, replies, raise_on_error)
