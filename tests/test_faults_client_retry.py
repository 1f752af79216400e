"""Fault suite, client side: a SET whose reply is lost must not be applied twice.

A proxy between ``yakvs.Client`` and a real server forwards the first SET, lets another client
read that value and overwrite it, then drops the connection instead of forwarding the reply.
If the client re-sent the SET (it did, until this test caught it), its value would come back over
the newer write: an acknowledged write lost and a value reappearing, which the checker rejects.
The client must report an unknown outcome instead.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

from yakvs.client import Client
from yakvs.client._retry import NoBackoff
from yakvs.errors import YakvsError
from yakvs.testing.history import History, Kind, Outcome, WireSession, execute_recorded
from yakvs.testing.linearizability import check
from yakvs.testing.server import run_server


class _ReplyDroppingProxy:
    """Forwards one connection at a time; on the first reply it runs ``meddle`` and then closes
    the client's side instead of passing the reply on. Later connections are passed through."""

    def __init__(self, upstream: str, meddle: Callable[[], None]) -> None:
        host, _, port = upstream.rpartition(":")
        self._upstream = (host, int(port))
        self._meddle: Callable[[], None] | None = meddle
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.addr = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            with client, socket.create_connection(self._upstream, timeout=5) as server:
                client.settimeout(5)
                with contextlib.suppress(OSError):
                    self._relay(client, server)

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        while True:
            request = client.recv(65536)
            if not request:
                return
            server.sendall(request)
            reply = server.recv(65536)
            if self._meddle is not None:
                meddle, self._meddle = self._meddle, None
                meddle()
                return  # the reply is lost with the connection
            client.sendall(reply)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()


@contextlib.contextmanager
def _session(addr: str) -> Iterator[WireSession]:
    session = WireSession(addr, timeout=5.0)
    session.connect()
    try:
        yield session
    finally:
        session.close()


def test_lost_set_reply_is_not_applied_twice(tmp_path):
    history = History()
    with run_server(tmp_path) as server, _session(server.addr) as other:

        def meddle() -> None:
            # Client 1 sees client 0's value, then replaces it -- all while client 0 waits.
            execute_recorded(history, other, 1, Kind.GET, "k")
            execute_recorded(history, other, 1, Kind.SET, "k", "newer")

        proxy = _ReplyDroppingProxy(server.addr, meddle)
        try:
            with Client(proxy.addr, retries=2, backoff=NoBackoff()) as client:
                handle = history.invoke(0, Kind.SET, "k", "first")
                try:
                    client.set("k", "first")
                except YakvsError as exc:
                    history.error(handle, exc)
                else:
                    history.ok(handle)
        finally:
            proxy.close()
        execute_recorded(history, other, 1, Kind.GET, "k")
    ops = history.operations()
    assert next(op.value for op in ops if op.client == 1 and op.kind is Kind.GET) == "first"
    # The client must own up: the SET's fate is unknown to it (it was in fact applied once).
    assert next(op.outcome for op in ops if op.client == 0) is Outcome.UNKNOWN
    result = check(ops)
    assert result.ok, result.describe()
