"""The server as a real process: kill -9 durability, graceful SIGTERM, 10 000 connections,
and the Go original client's exact bytes."""

from __future__ import annotations

import resource
import signal
import socket
import threading
import time

import orjson
import pytest

from yakvs.testing.server import Wire, spawn_server


def test_kill9_keeps_every_acknowledged_write_with_fsync_always(tmp_path):
    acked: dict[str, str] = {}
    lock = threading.Lock()
    stop = threading.Event()

    with spawn_server(tmp_path, fsync="always") as srv:

        def writer(n: int) -> None:
            try:
                w = Wire(srv.addr, timeout=5)
                for i in range(100_000):
                    if stop.is_set():
                        break
                    key, value = f"w{n}-{i}", f"value {i} \n ☃"
                    if w.call({"op": "SET", "key": key, "value": value})["status"] == "success":
                        with lock:
                            acked[key] = value
                w.close()
            except (OSError, ValueError):
                pass  # the kill cuts us off mid-request: that write was never acknowledged

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(acked) < 400 and time.monotonic() < deadline:
            time.sleep(0.01)
        srv.kill()  # SIGKILL while writes are in flight
        stop.set()
        for t in threads:
            t.join(10)
        assert len(acked) >= 400
        srv.restart()
        w = Wire(srv.addr)
        keys = sorted(acked)
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            w.send(b"".join(orjson.dumps({"op": "GET", "key": k}) + b"\n" for k in chunk))
            for key in chunk:
                assert w.reply().get("value") == acked[key], key
        w.close()


def test_sigterm_drains_and_exits_zero(tmp_path):
    with spawn_server(tmp_path, fsync="no") as srv:
        w = Wire(srv.addr)
        w.send(b"".join(b'{"op":"SET","key":"t%d","value":"v"}\n' % i for i in range(2000)))
        for _ in range(2000):
            assert w.reply()["status"] == "success"
        assert srv.terminate() == 0
        err = srv.stderr()
        assert "draining" in err and "stopped" in err and "Traceback" not in err
        w.close()
        srv.start()  # fsync=no, yet a clean stop flushed everything
        w = Wire(srv.addr)
        assert w.call({"op": "GET", "key": "t1999"})["value"] == "v"
        assert w.call({"op": "STATUS"})["info"]["keys"] == 2000
        w.close()


def test_sigint_exits_zero_and_keeps_writes(tmp_path):
    with spawn_server(tmp_path, fsync="everysec") as srv:
        w = Wire(srv.addr)
        assert w.call({"op": "SET", "key": "a", "value": "1"})["status"] == "success"
        srv.proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert srv.proc.wait(15) == 0
        assert "SIGINT received" in srv.stderr()
        w.close()
        srv.start()
        w = Wire(srv.addr)
        assert w.call({"op": "GET", "key": "a"})["value"] == "1"
        w.close()


def test_second_signal_skips_the_drain(tmp_path):
    with spawn_server(tmp_path, fsync="no") as srv:
        w = Wire(srv.addr)
        assert w.call({"op": "SET", "key": "big", "value": "b" * 100_000})["status"] == "success"
        hog = socket.create_connection((srv.host, srv.port), 5)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.setblocking(False)
        try:  # replies pile up unread: the drain would wait for this client its whole timeout
            for _ in range(200):
                hog.send(b'{"op":"GET","key":"big"}\n' * 100)
                time.sleep(0.005)
        except BlockingIOError:
            pass
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert srv.proc.poll() is None  # still draining
        start = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(5) == 0
        assert time.monotonic() - start < 3
        assert "exiting without draining" in srv.stderr()
        hog.close()
        w.close()


def test_ten_thousand_connections(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 10_200
    if hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 20_000)), hard))
    socks: list[socket.socket] = []
    try:
        with spawn_server(tmp_path) as srv:  # inherits the raised limit
            deadline = time.monotonic() + 60
            while len(socks) < 10_000 and time.monotonic() < deadline:
                socks.append(socket.create_connection((srv.host, srv.port), 10))
            assert len(socks) == 10_000
            # every one of them is served (one pipelined round per socket would take long:
            # sample a spread of them), and the 10 001st gets a clear error and a close
            for s in socks[::500] + socks[-3:]:
                s.settimeout(10)
                s.sendall(b'{"op":"PING"}\n')
                assert b"PONG" in s.recv(100)
            extra = Wire(srv.addr, timeout=10)
            reply = extra.reply()
            assert reply["code"] == "UNAVAILABLE" and "Too many clients" in reply["message"]
            assert extra.closed(10)
            extra.close()
            for s in socks[:100]:
                s.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    w = Wire(srv.addr, timeout=5)
                    if w.call({"op": "PING"}).get("value") == "PONG":
                        w.close()
                        break
                    w.close()
                except (OSError, ValueError):
                    pass
                time.sleep(0.05)
            else:
                pytest.fail("no room for a new client after others left")
    finally:
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


GO_SET = b'{"op":"SET","key":"k","value":"v","expires_in":300000000000}\n'
GO_GET = b'{"op":"GET","key":"k","value":"","expires_in":0}\n'
GO_TTL = b'{"op":"TTL","key":"k","value":"","expires_in":0}\n'
GO_DEL = b'{"op":"DELETE","key":"k","value":"","expires_in":0}\n'


def _go_decode(line: bytes) -> dict:
    """What Go's json.Unmarshal into struct{Status, Message, Value string; TTL time.Duration}
    accepts: each known field (names match case-insensitively) of the right JSON type."""
    obj = orjson.loads(line)
    fields = {"status": str, "message": str, "value": str, "ttl": int}
    out = {"status": "", "message": "", "value": "", "ttl": 0}
    for name, raw in obj.items():
        kind = fields.get(name.lower())
        if kind is None:
            continue  # Go ignores unknown fields such as our "code"
        assert type(raw) is kind, f"{name}={raw!r} would not decode into {kind.__name__}"
        if kind is int:
            assert -(2**63) <= raw < 2**63
        out[name.lower()] = raw
    return out


def test_go_original_client_bytes(tmp_path):
    with spawn_server(tmp_path) as srv:
        sock = socket.create_connection((srv.host, srv.port), 5)
        sock.settimeout(5)
        reader = sock.makefile("rb")
        for line, check in [
            (GO_SET, lambda r: r["status"] == "success"),
            (GO_GET, lambda r: r["value"] == "v" and 290_000_000_000 < r["ttl"] <= 300_000_000_000),
            (GO_TTL, lambda r: 290_000_000_000 < r["ttl"] <= 300_000_000_000),
            (GO_DEL, lambda r: r["status"] == "success"),
            (
                GO_GET,
                lambda r: r["status"] == "error" and r["message"] == "Key not found or expired",
            ),
            (GO_DEL, lambda r: r["status"] == "error" and r["message"] == "Key not found"),
        ]:
            sock.sendall(line)  # the Go client writes one request, then reads one line
            reply = _go_decode(reader.readline())
            assert check(reply), (line, reply)
        sock.close()
