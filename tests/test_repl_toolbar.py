"""The toolbar's STATUS poller and the reconnecting link, against a real server."""

from __future__ import annotations

import threading
import time

import pytest

from yakvs.cli.repl.connection import Connection
from yakvs.cli.repl.toolbar import StatusPoller
from yakvs.errors import ConnectionFailedError
from yakvs.protocol import Op, Request
from yakvs.testing.server import run_server, spawn_server


def _wait(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_poller_shows_mode_then_disconnected(tmp_path):
    changes = threading.Semaphore(0)
    poller = None
    try:
        with run_server(tmp_path) as server:
            conn = Connection([server.addr], timeout=1.0, retries=0)
            poller = StatusPoller(conn, interval=0.05, on_change=changes.release)
            poller.start()
            _wait(lambda: poller.info is not None and poller.connected, "first STATUS")
            assert poller.text().startswith(f" {server.addr} | standalone | ")
            assert changes.acquire(timeout=1)
        # Server gone: the next polls fail and the toolbar says so, without the thread dying.
        _wait(lambda: not poller.connected, "disconnected")
        assert "disconnected" in poller.text()
        assert poller._thread.is_alive()
    finally:
        if poller is not None:
            poller.stop()
    assert not poller._thread.is_alive()


def test_connection_reports_loss_then_reconnects(tmp_path):
    with spawn_server(tmp_path) as server:
        conn = Connection([server.addr], timeout=2.0, retries=0)
        assert conn.execute(Request(op=Op.PING)).value == "PONG"
        assert not conn.reconnected
        server.kill()
        with pytest.raises(ConnectionFailedError):
            conn.execute(Request(op=Op.PING))
        assert conn.lost
        server.start()  # same port
        assert conn.execute(Request(op=Op.PING)).value == "PONG"
        assert conn.reconnected and not conn.lost
        assert conn.execute(Request(op=Op.PING)).value == "PONG"
        assert not conn.reconnected
        conn.close()
