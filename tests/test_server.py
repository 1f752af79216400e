"""The server over real TCP on 127.0.0.1 (in-process, port 0): ops, pipelining, bad input."""

from __future__ import annotations

import socket
import threading
import time

import orjson
import pytest

from yakvs.testing.server import Wire, run_server

VALUE = "x" * 100


def _set(key: str, value: str, **extra) -> dict:
    return {"op": "SET", "key": key, "value": value, **extra}


def test_every_op(wire):
    assert wire.call({"op": "PING"}) == {"status": "success", "value": "PONG"}
    assert wire.call(_set("a", "1")) == {"status": "success"}
    assert wire.call(_set("b", "2", expires_in=60_000_000_000)) == {"status": "success"}
    assert wire.call({"op": "GET", "key": "a"}) == {"status": "success", "value": "1", "ttl": -1}
    got = wire.call({"op": "get", "key": "b"})
    assert got["value"] == "2" and 50_000_000_000 < got["ttl"] <= 60_000_000_000
    assert type(got["ttl"]) is int
    assert wire.call({"op": "TTL", "key": "a"}) == {"status": "success", "ttl": -1}
    assert 50_000_000_000 < wire.call({"op": "TTL", "key": "b"})["ttl"] <= 60_000_000_000
    assert wire.call({"op": "EXISTS", "key": "a"}) == {"status": "success", "exists": True}
    assert wire.call({"op": "EXISTS", "key": "zz"}) == {"status": "success", "exists": False}
    assert wire.call({"op": "KEYS"}) == {"status": "success", "keys": ["a", "b"]}
    assert wire.call({"op": "KEYS", "prefix": "b"})["keys"] == ["b"]
    assert wire.call({"op": "KEYS", "limit": 1})["keys"] == ["a"]
    info = wire.call({"op": "STATUS"})["info"]
    assert info["mode"] == "standalone" and info["role"] == "standalone" and info["keys"] == 2
    assert wire.call({"op": "DELETE", "key": "a"}) == {"status": "success"}
    assert wire.call({"op": "DELETE", "key": "a"}) == {
        "status": "error",
        "code": "NOT_FOUND",
        "message": "Key not found",
    }
    assert wire.call({"op": "GET", "key": "a"}) == {
        "status": "error",
        "code": "NOT_FOUND",
        "message": "Key not found or expired",
    }
    assert wire.call({"op": "TTL", "key": "a"})["code"] == "NOT_FOUND"


def test_ttl_expires_and_no_ttl_does_not(wire):
    wire.call(_set("short", "v", expires_in=50_000_000))
    wire.call(_set("forever", "v", expires_in=0))
    wire.call(_set("absent", "v"))
    time.sleep(0.15)
    assert wire.call({"op": "GET", "key": "short"})["code"] == "NOT_FOUND"
    assert wire.call({"op": "GET", "key": "forever"})["ttl"] == -1
    assert wire.call({"op": "GET", "key": "absent"})["value"] == "v"


def test_unicode_round_trips(wire):
    key, value = "ключ with spaces\nand\x00nul", '☃\n\t"quoted"\x00 end'
    assert wire.call(_set(key, value))["status"] == "success"
    assert wire.call({"op": "GET", "key": key})["value"] == value


def test_pipelining_10000_requests_in_one_write(wire):
    n = 5000
    payload = b"".join(
        orjson.dumps(_set(f"k{i}", f"v{i}")) + b"\n" + b'{"op":"GET","key":"k%d"}\n' % i
        for i in range(n)
    )
    wire.send(payload)
    for i in range(n):
        assert wire.reply() == {"status": "success"}
        assert wire.reply()["value"] == f"v{i}", i


def test_replies_stay_in_order_with_async_backend(tmp_path):
    # fsync=always makes every batch wait for a group fsync: batches overlap, order must hold.
    with run_server(tmp_path, fsync="always") as srv:
        w = Wire(srv.addr)
        for i in range(300):
            w.send(orjson.dumps(_set("k", str(i))) + b'\n{"op":"GET","key":"k"}\n')
        for i in range(300):
            assert w.reply() == {"status": "success"}
            assert w.reply()["value"] == str(i)
        w.close()


def test_half_close_gets_all_replies(server):
    sock = socket.create_connection((server.host, server.port), 5)
    sock.sendall(b'{"op":"SET","key":"h","value":"1"}\n{"op":"GET","key":"h"}\n{"op":"PING"}\n')
    sock.shutdown(socket.SHUT_WR)
    data = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    sock.close()
    assert [orjson.loads(x)["status"] for x in data.splitlines()] == ["success"] * 3


BAD_INPUTS = [
    # (a first line starting with a letter is a Redis inline command: see test_redis_*.py)
    (b"{this is not json\n", "BAD_REQUEST", "Invalid command format"),
    (b"[1, 2, 3]\n", "BAD_REQUEST", "expected a JSON object"),
    (b"12345\n", "BAD_REQUEST", "expected a JSON object"),
    (b'"a string"\n', "BAD_REQUEST", "expected a JSON object"),
    (b'{"op":"GET"}\n', "BAD_REQUEST", "Key is required"),
    (b'{"op":"SET","key":"","value":"v"}\n', "BAD_REQUEST", "Key is required"),
    (b'{"op":"SET","key":"victim","value":7}\n', "BAD_REQUEST", "value must be a string"),
    (b'{"op":"SET","key":"victim","value":"x","expires_in":-5}\n', "BAD_REQUEST", "expires_in"),
    (b'{"op":"SET","key":"victim","value":"x","expires_in":2.5}\n', "BAD_REQUEST", "expires_in"),
    (b'{"op":"SET","key":"victim","value":"x","expires_in":"1h"}\n', "BAD_REQUEST", "expires_in"),
    (
        b'{"op":"SET","key":"victim","value":"x","expires_in":99999999999999999999}\n',
        "BAD_REQUEST",
        "",
    ),
    (b'{"op":"EXPLODE","key":"victim"}\n', "UNKNOWN_COMMAND", "Unknown command"),
    (b'{"op":"GET","key":"\xff\xfe"}\n', "BAD_REQUEST", "Invalid command format"),
    (b"\xc3\x28\xa0\xa1\n", "BAD_REQUEST", "Invalid command format"),
    (b"[" * 5000 + b"]" * 5000 + b"\n", "BAD_REQUEST", "Invalid command format"),
    (b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"\n", "BAD_REQUEST", "Invalid command format"),
]


@pytest.mark.parametrize(("line", "code", "message"), BAD_INPUTS)
def test_bad_input_gets_error_and_connection_stays_usable(wire_factory, line, code, message):
    bystander = wire_factory()
    assert bystander.call(_set("victim", "intact"))["status"] == "success"
    bad = wire_factory()
    bad.send(line)
    reply = bad.reply()
    assert reply["status"] == "error" and reply["code"] == code
    assert message in reply["message"]
    assert bad.call({"op": "PING"})["value"] == "PONG"  # same connection still works
    assert bystander.call({"op": "GET", "key": "victim"})["value"] == "intact"


def test_oversized_line_gets_too_large_and_close(wire_factory):
    bystander = wire_factory()
    bystander.call(_set("victim", "intact"))
    big = wire_factory()
    big.send(b'{"op":"SET","key":"k","value":"' + b"y" * (1 << 20))  # just over 1 MiB, no newline
    reply = big.reply()
    assert reply["code"] == "TOO_LARGE" and "1048576" in reply["message"]
    assert big.closed()
    assert bystander.call({"op": "GET", "key": "victim"})["value"] == "intact"


def test_10mb_line_and_endless_line_close_without_hurting_others(server, wire_factory):
    bystander = wire_factory()
    bystander.call(_set("victim", "intact"))
    # Lines start with "{": a first line starting with a letter is RESP (its own limits, tested
    # in test_redis_server.py).
    for payload in (b"{" + b"z" * (10 << 20) + b"\n", None):
        sock = socket.create_connection((server.host, server.port), 5)
        sock.settimeout(5)
        sent = 0
        try:
            if payload is not None:
                sock.sendall(payload)
            else:  # a line that never ends: keep sending until the server hangs up
                sock.sendall(b"{")
                while sent < (8 << 20):
                    sock.sendall(b"w" * 65536)
                    sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            data = sock.recv(4096)
            while data and b"\n" not in data:
                data += sock.recv(4096)
            assert not data or b"TOO_LARGE" in data
        except ConnectionResetError:
            pass  # the reply can be lost to the RST of unread input; the close is what counts
        sock.close()
        assert bystander.call({"op": "GET", "key": "victim"})["value"] == "intact"
    # nothing of those lines is held: connections gone, buffers freed
    deadline = time.monotonic() + 5
    while len(server.server.connections) > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(server.server.connections) == 1


@pytest.mark.parametrize(
    "request_line", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"POST /join HTTP/1.1\r\n\r\n"]
)
def test_http_is_closed(wire_factory, request_line):
    w = wire_factory()
    w.send(request_line[:2])  # even when the request line trickles in
    time.sleep(0.05)
    w.send(request_line[2:])
    assert w.closed()
    assert w.buf == b""  # no reply: it is not our protocol
    assert wire_factory().call({"op": "PING"})["value"] == "PONG"


def test_short_first_read_is_not_mistaken(wire):
    wire.send(b"{")
    time.sleep(0.05)
    wire.send(b'"op":"PING"}\n')
    assert wire.reply()["value"] == "PONG"
    wire.send(b"\n")  # a lone newline first is fine too: blank lines are skipped
    assert wire.call({"op": "PING"})["value"] == "PONG"


def test_max_clients_error_then_close(tmp_path):
    with run_server(tmp_path, max_clients=3) as srv:
        held = [Wire(srv.addr) for _ in range(3)]
        for w in held:
            assert w.call({"op": "PING"})["value"] == "PONG"
        extra = Wire(srv.addr)
        reply = extra.reply()
        assert reply["code"] == "UNAVAILABLE" and "Too many clients" in reply["message"]
        assert extra.closed()
        held.pop().close()
        deadline = time.monotonic() + 5
        while len(srv.server.connections) > 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        again = Wire(srv.addr)
        assert again.call({"op": "PING"})["value"] == "PONG"
        for w in [*held, extra, again]:
            w.close()


def test_client_that_never_reads_is_paused_and_bounded(server, wire_factory):
    setter = wire_factory()
    big = "b" * 20_000
    assert setter.call(_set("big", big))["status"] == "success"
    hog = socket.create_connection((server.host, server.port), 5)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.setblocking(False)
    # Padded requests: should the server fail to stop reading, 12 MB of them ask for ~240 MB of
    # replies, enough to see, not enough to hurt the machine.
    request = b'{"op":"GET","key":"big","pad":"' + b"p" * 1000 + b'"}\n'
    pushed = 0
    stalled_since = None
    deadline = time.monotonic() + 20
    while pushed < 12 << 20 and time.monotonic() < deadline:
        try:
            pushed += hog.send(request * 64)
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 0.5:
                break
            time.sleep(0.01)
    conns = [c for c in server.server.connections if c.transport is not None]
    hogged = max(conns, key=lambda c: c.transport.get_write_buffer_size())
    assert hogged._paused_reading, "the server kept reading a client that never reads"
    limit = server.server.config.write_high_water + 64 * (len(big) + 100)
    assert hogged.transport.get_write_buffer_size() <= limit
    # everyone else is served meanwhile
    for i in range(20):
        assert setter.call(_set(f"o{i}", "v"))["status"] == "success"
        assert setter.call({"op": "GET", "key": "big"})["value"] == big
    hog.close()


def test_many_clients_at_once(server):
    results: list[bool] = []

    def worker(n: int) -> None:
        w = Wire(server.addr)
        ok = True
        for i in range(50):
            ok &= w.call(_set(f"c{n}-{i}", str(i)))["status"] == "success"
            ok &= w.call({"op": "GET", "key": f"c{n}-{i}"})["value"] == str(i)
        w.close()
        results.append(ok)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [True] * 20


def test_everysec_fsyncs_within_about_a_second(tmp_path):
    with run_server(tmp_path, fsync="everysec") as srv:
        w = Wire(srv.addr)
        assert w.call(_set("k", "v"))["status"] == "success"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            info = w.call({"op": "STATUS"})["info"]
            if info["store"]["log_synced_bytes"] == info["store"]["log_bytes"] > 0:
                break
            time.sleep(0.05)
        assert info["store"]["log_synced_bytes"] == info["store"]["log_bytes"]
        w.close()


def test_group_commit_shares_fsyncs(tmp_path):
    with run_server(tmp_path, fsync="always") as srv:
        wires = [Wire(srv.addr) for _ in range(8)]
        for n, w in enumerate(wires):  # 8 connections x 64 writes, sent before reading anything
            w.send(b"".join(orjson.dumps(_set(f"g{n}-{i}", "v")) + b"\n" for i in range(64)))
        for w in wires:
            for _ in range(64):
                assert w.reply() == {"status": "success"}
        info = wires[0].call({"op": "STATUS"})["info"]
        assert info["group_commit"] is True
        # at most one fsync per batch (a send may arrive in two reads), never one per write
        assert 1 <= info["syncs"] <= 16
        assert info["store"]["log_synced_bytes"] == info["store"]["log_bytes"]
        for w in wires:
            w.close()


def test_local_backend_pins_relative_ttl_of_bare_requests(tmp_path):
    # Requests built in Python (not decoded by the server) carry only expires_in.
    from yakvs.local import open_local_backend
    from yakvs.protocol import Op, Request

    backend = open_local_backend(str(tmp_path / "kvs.log"), "no")
    try:
        ttl = 30_000_000_000
        out = backend.try_execute_encoded([Request(Op.SET, "a", "1", ttl), Request(Op.GET, "a")])
        lines = [orjson.loads(x) for x in out.splitlines()]
        assert lines[0] == {"status": "success"}
        assert 20_000_000_000 < lines[1]["ttl"] <= ttl
        replies = backend.run([Request(Op.SET, "b", "2", ttl), Request(Op.TTL, "b")])
        assert 20_000_000_000 < replies[1].ttl <= ttl
    finally:
        backend.store.close()


def test_shutdown_drains_in_flight_batches(tmp_path):
    n = 3000
    with run_server(tmp_path, fsync="always") as srv:
        w = Wire(srv.addr)
        w.send(b"".join(orjson.dumps(_set(f"d{i}", "v")) + b"\n" for i in range(n)))
        assert w.reply() == {"status": "success"}  # batches are in flight now
        srv.server.request_exit()
        answered = 1
        try:
            while answered < n:
                assert w.reply() == {"status": "success"}  # never "store is closed"
                answered += 1
        except ConnectionError:
            pass  # what was not read before the shutdown began is not answered
        w.close()
    with run_server(tmp_path) as srv:
        w = Wire(srv.addr)
        assert w.call({"op": "STATUS"})["info"]["keys"] >= answered
        assert w.call({"op": "GET", "key": f"d{answered - 1}"})["value"] == "v"
        w.close()


def test_unfinished_lines_share_one_memory_budget(tmp_path):
    # Four clients may each hold an almost full 1 MiB line; the fifth would pass the 4 MiB budget.
    with run_server(tmp_path, max_buffered_bytes=4 << 20) as srv:
        holders = [Wire(srv.addr) for _ in range(5)]
        chunk = b'{"op":"SET","key":"k","value":"' + b"a" * ((1 << 20) - 100)
        for w in holders[:4]:
            w.send(chunk)
        deadline = time.monotonic() + 5
        while srv.server.buffered_bytes < 4 * len(chunk) and time.monotonic() < deadline:
            time.sleep(0.01)
        holders[4].send(chunk)
        reply = holders[4].reply()
        assert reply["code"] == "UNAVAILABLE" and "buffer space" in reply["message"]
        assert holders[4].closed()
        for w in holders[:4]:  # the others finish their lines and are served
            w.send(b'"}\n')
            assert w.reply() == {"status": "success"}
        assert srv.server.buffered_bytes == 0
        for w in holders:
            w.close()
