"""RESP and JSON lines on one port: detection, pipelining, asyncio clients, limits, binary values
through the command log, and what a JSON-lines GET shows for a value that is not UTF-8."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from yakvs.testing.server import Wire, run_server


def _drain(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read until the server closes the connection (bounded)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"server did not close: {data[-200:]!r}")


def test_json_and_resp_clients_share_one_port_and_one_keyspace(server) -> None:
    json_client = Wire(server.addr)
    r = redis.Redis(server.host, server.port, protocol=2, socket_timeout=5)
    try:
        assert json_client.call({"op": "SET", "key": "shared", "value": "from-json"})["status"] == (
            "success"
        )
        assert r.get("shared") == b"from-json"
        assert r.set("shared", "from-resp", ex=100)
        reply = json_client.call({"op": "GET", "key": "shared"})
        assert reply["value"] == "from-resp" and 0 < reply["ttl"] <= 100 * 10**9
        # a JSON-lines client cannot name the Redis ops
        assert json_client.call({"op": "MSET", "key": "x"})["code"] == "UNKNOWN_COMMAND"
        assert len(server.server.connections) == 2
    finally:
        r.close()
        json_client.close()


def test_inline_commands_and_http_still_closed(server) -> None:
    with socket.create_connection((server.host, server.port), 5) as sock:
        sock.sendall(b"SET greeting \"hello world\"\r\nGET greeting\r\nQUIT\r\n")
        assert _drain(sock) == b"+OK\r\n$11\r\nhello world\r\n+OK\r\n"
    with socket.create_connection((server.host, server.port), 5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _drain(sock) == b""


def test_pipeline_of_many_commands_answers_in_order(server) -> None:
    r = redis.Redis(server.host, server.port, protocol=2, socket_timeout=10)
    try:
        pipe = r.pipeline(transaction=False)
        for i in range(3000):
            pipe.set(f"p{i}", str(i))
            pipe.get(f"p{i}")
            if i % 500 == 0:
                pipe.echo(f"e{i}")
        results = pipe.execute()
        expected: list[object] = []
        for i in range(3000):
            expected += [True, str(i).encode()]
            if i % 500 == 0:
                expected.append(f"e{i}".encode())
        assert results == expected
        assert r.dbsize() == 3000
    finally:
        r.close()


def test_asyncio_clients_concurrently(server) -> None:
    async def main() -> None:
        clients = [aioredis.Redis(host=server.host, port=server.port, protocol=2)
                   for _ in range(10)]
        try:
            async def work(n: int, c: aioredis.Redis) -> None:
                for i in range(100):
                    assert await c.set(f"a{n}:{i}", f"{n}-{i}", nx=True)
                    assert await c.get(f"a{n}:{i}") == f"{n}-{i}".encode()
                assert await c.delete(*[f"a{n}:{i}" for i in range(50)]) == 50
                assert await c.exists(*[f"a{n}:{i}" for i in range(100)]) == 50

            await asyncio.wait_for(asyncio.gather(*(work(n, c) for n, c in enumerate(clients))),
                                   30)
            assert await clients[0].dbsize() == 500
            assert len(await clients[0].keys("a3:*")) == 50
        finally:
            for c in clients:
                await c.aclose()

    asyncio.run(main())


def test_group_commit_backend_serves_resp(tmp_path: Path) -> None:
    with run_server(tmp_path, fsync="always") as handle:
        r = redis.Redis(handle.host, handle.port, protocol=2, socket_timeout=5)
        assert r.mset({"a": "1", "b": "2"}) and r.set("a", "3", xx=True, get=True) == b"1"
        assert r.mget("a", "b") == [b"3", b"2"] and r.delete("a", "b", "c") == 2
        r.close()


def test_limits_protocol_errors_then_close(tmp_path: Path) -> None:
    with run_server(tmp_path, max_request_size=4096) as handle:
        addr = (handle.host, handle.port)
        bystander = redis.Redis(handle.host, handle.port, protocol=2, socket_timeout=5)
        bystander.set("victim", "intact")
        error = b"-ERR Protocol error: "
        cases = [
            (b"PING\r\nSET k " + b"x" * 70_000, b"+PONG\r\n" + error + b"too big inline request"),
            (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5000\r\n", error + b"invalid bulk length"),
            (b"*1\r\n$4\r\nPING\r\n*abc\r\n", b"+PONG\r\n" + error + b"invalid multibulk length"),
            (b"*1\r\nPING\r\n", error + b"expected '$', got 'P'"),
        ]
        for payload, expected in cases:
            with socket.create_connection(addr, 5) as sock:
                sock.sendall(payload)
                assert _drain(sock) == expected + b"\r\n"
        assert bystander.get("victim") == b"intact"
        # A 4000-byte value is under the 4096-byte bulk limit.
        assert bystander.set("big", "v" * 4000) and len(bystander.get("big")) == 4000
        bystander.close()
        deadline = time.monotonic() + 5
        while len(handle.server.connections) > 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(handle.server.connections) == 0


BINARY = [
    b"\xff\xfe\x00", b"\x80", b"\r\n", b"\xc3\x28", "h\u00e9 \u2603".encode(), bytes(range(256))
]


def test_binary_keys_and_values_survive_a_restart(tmp_path: Path) -> None:
    log = tmp_path / "bin.log"
    with run_server(log) as handle:
        r = redis.Redis(handle.host, handle.port, protocol=2, socket_timeout=5)
        for i, blob in enumerate(BINARY):
            assert r.set(blob + b"k%d" % i, blob)
        assert r.expire(BINARY[0] + b"k0", 1000) and r.set(b"\xffgone", b"x")
        assert r.delete(b"\xffgone") == 1
        r.close()
    with run_server(log) as handle:
        r = redis.Redis(handle.host, handle.port, protocol=2, socket_timeout=5)
        for i, blob in enumerate(BINARY):
            assert r.get(blob + b"k%d" % i) == blob
        assert 990 <= r.ttl(BINARY[0] + b"k0") <= 1000 and r.exists(b"\xffgone") == 0
        r.set("json-view", b"ok\xffok")
        r.close()
        # JSON lines cannot carry bytes that are not UTF-8: each such byte shows as U+FFFD.
        w = Wire(handle.addr)
        assert w.call({"op": "GET", "key": "json-view"})["value"] == "ok\ufffdok"
        keys = w.call({"op": "KEYS"})["keys"]
        assert "\ufffd\ufffd\x00k0" in keys
        w.close()


def test_resp_client_over_the_client_limit_is_refused_in_resp(tmp_path: Path) -> None:
    with run_server(tmp_path, max_clients=2) as handle:
        held = [redis.Redis(handle.host, handle.port, protocol=2) for _ in range(2)]
        for c in held:
            assert c.ping()
        # Redis's text, which redis-py turns into a ConnectionError (as with a full Redis).
        for protocol in (2, 3):
            extra = redis.Redis(
                handle.host, handle.port, protocol=protocol, socket_timeout=5, retry=None
            )
            with pytest.raises(redis.ConnectionError, match="max number of clients reached"):
                extra.ping()
            extra.close()
        addr = (handle.host, handle.port)
        for first in (b"PING\r\n", b"*1\r\n$4\r\nPING\r\n"):
            with socket.create_connection(addr, 5) as sock:
                sock.sendall(first)
                assert _drain(sock) == b"-ERR max number of clients reached\r\n"
        # JSON lines, HTTP, and a client that says nothing: the JSON-lines error, as before.
        for first in (b'{"op":"PING"}\n', b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b""):
            with socket.create_connection(addr, 5) as sock:
                sock.sendall(first)
                reply = _drain(sock)
                assert b'"code":"UNAVAILABLE"' in reply and b"Too many clients" in reply, first
        # A refused socket waiting for its first bytes holds no place of a client.
        with socket.create_connection(addr, 5) as waiting:
            assert len(handle.server.connections) == 2
            held[0].close()
            deadline = time.monotonic() + 5
            while len(handle.server.connections) > 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            with redis.Redis(handle.host, handle.port, protocol=3, socket_timeout=5) as again:
                assert again.ping()
            waiting.sendall(b"PING\r\n")
            assert _drain(waiting) == b"-ERR max number of clients reached\r\n"
        for c in held:
            c.close()


def test_partial_requests_share_the_server_buffer_budget(tmp_path: Path) -> None:
    # First holds 150 kB (300 kB at most later), second pushes the total past 400 kB.
    with run_server(tmp_path, max_buffered_bytes=400_000) as handle:
        addr = (handle.host, handle.port)
        head = b"*2\r\n$4\r\nECHO\r\n$300000\r\n"
        first = socket.create_connection(addr, 5)
        first.sendall(head + b"a" * 150_000)
        deadline = time.monotonic() + 5
        while handle.server.buffered_bytes < 150_000 and time.monotonic() < deadline:
            time.sleep(0.01)
        with socket.create_connection(addr, 5) as second:
            try:
                second.sendall(head + b"b" * 280_000)
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed while sending: the reply may be lost to the reset
            reply = _drain(second)
            assert reply in (b"-ERR server is out of request buffer space\r\n", b"")
        first.sendall(b"a" * 150_000 + b"\r\n")  # the first client is still served
        first.settimeout(5)
        want = b"$300000\r\n" + b"a" * 300_000 + b"\r\n"
        got = b""
        while len(got) < len(want):
            chunk = first.recv(65536)
            assert chunk
            got += chunk
        assert got == want
        first.close()
        deadline = time.monotonic() + 5
        while handle.server.buffered_bytes and time.monotonic() < deadline:
            time.sleep(0.01)
        assert handle.server.buffered_bytes == 0


def test_client_not_reading_a_big_pipeline_is_paused_then_served_in_order(server) -> None:
    r = redis.Redis(server.host, server.port, protocol=2, socket_timeout=10)
    value = b"v" * 10_000
    r.set("big", value)
    count = 3000  # 30 MB of replies, far over the 1 MiB write high-water mark
    payload = b"".join(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" for _ in range(count))
    with socket.create_connection((server.host, server.port), 10) as sock:
        sock.sendall(payload)
        time.sleep(0.3)  # not reading: the server must stop answering, not buffer 30 MB
        assert r.get("big") == value  # others are served meanwhile
        resp = [c for c in server.server.connections if getattr(c, "session", None)]
        assert any(c.busy for c in resp)  # replies still owed: queued, not all written
        want = (b"$10000\r\n" + value + b"\r\n") * count
        got = bytearray()
        sock.settimeout(10)
        while len(got) < len(want):
            chunk = sock.recv(1 << 20)
            assert chunk
            got += chunk
        assert got == want
    r.close()
