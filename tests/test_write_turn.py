"""Writes of one loop turn share one log write (yakvs._turn), on JSON lines and on RESP."""

from __future__ import annotations

import asyncio
import socket

import orjson

from yakvs.local import LocalBackend
from yakvs.protocol import Op
from yakvs.store import Store
from yakvs.testing.server import Wire, run_server

N_CLIENTS = 40


def _records(path) -> list[list[object]]:
    lines = path.read_bytes().split(b"\n")[1:-1]  # past the header, up to the last newline
    return [orjson.loads(line.split(b" ", 1)[1]) for line in lines]


def test_a_turn_applies_nothing_before_its_flush_then_answers_each(tmp_path):
    path = tmp_path / "kv.log"
    answers: list[bytes] = []

    async def main() -> tuple[object, object, int]:
        backend = LocalBackend(Store(path=path, fsync="everysec", background=False))
        await backend.start()
        turn = backend.write_turn
        assert turn is not None
        for i in range(3):
            turn.add(backend.set_line, (Op.SET, f"k{i}", f"v{i}", 0, None), answers.append)
        seen_before = backend.store.get("k0")  # the flush has not run: nothing applied yet
        await asyncio.sleep(0)  # one loop turn
        seen_after = backend.store.get("k2")
        flushes = turn.flushes
        await backend.close()
        return seen_before, seen_after, flushes

    before, after, flushes = asyncio.run(main())
    assert before is None
    assert after == ("v2", None)
    assert flushes == 1
    assert answers == [b'{"status":"success"}\n'] * 3
    assert _records(path) == [["S", f"k{i}", f"v{i}", 0] for i in range(3)]


def test_a_bad_write_in_a_turn_fails_alone(tmp_path):
    # A value JSON cannot carry (a lone surrogate) fails its own SET; the others of the turn land.
    path = tmp_path / "kv.log"
    answers: list[bytes] = []

    async def main() -> None:
        backend = LocalBackend(Store(path=path, fsync="everysec", background=False))
        await backend.start()
        turn = backend.write_turn
        assert turn is not None
        turn.add(backend.set_line, (Op.SET, "a", "1", 0, None), answers.append)
        turn.add(backend.set_line, (Op.SET, "b", "\ud800", 0, None), answers.append)
        turn.add(backend.set_line, (Op.SET, "c", "3", 0, None), answers.append)
        await asyncio.sleep(0)
        await backend.close()

    asyncio.run(main())
    replies = [orjson.loads(a) for a in answers]
    assert [r["status"] for r in replies] == ["success", "error", "success"]
    assert replies[1]["code"] == "BAD_REQUEST"
    assert _records(path) == [["S", "a", "1", 0], ["S", "c", "3", 0]]
    with Store(path=path, background=False) as store:
        assert sorted(k for k, _, _ in store.items()) == ["a", "c"]


def _send_all_then_read(addr: str, payloads: list[bytes], until: bytes) -> list[bytes]:
    host, _, port = addr.rpartition(":")
    socks = [socket.create_connection((host, int(port)), 5) for _ in payloads]
    try:
        for sock in socks:
            sock.settimeout(5)
        for sock, payload in zip(socks, payloads, strict=True):
            sock.sendall(payload)
        out = []
        for sock in socks:
            buf = b""
            while until not in buf:
                chunk = sock.recv(4096)
                assert chunk, "server closed the connection"
                buf += chunk
            out.append(buf)
        return out
    finally:
        for sock in socks:
            sock.close()


def test_unpipelined_writers_at_once_share_log_writes_and_all_survive(tmp_path):
    json_sets = [
        b'{"op":"SET","key":"j%d","value":"v%d","expires_in":3600000000000}\n' % (i, i)
        for i in range(N_CLIENTS)
    ]
    resp_sets = [
        b"*3\r\n$3\r\nSET\r\n$%d\r\nr%d\r\n$2\r\nv%d\r\n" % (len(b"r%d" % i), i, i % 10)
        for i in range(N_CLIENTS)
    ]
    with run_server(tmp_path) as srv:
        wire = Wire(srv.addr)
        before = wire.call({"op": "STATUS"})["info"]["write_turns"]
        replies = _send_all_then_read(srv.addr, json_sets, b"\n")
        assert all(orjson.loads(r)["status"] == "success" for r in replies)
        replies = _send_all_then_read(srv.addr, resp_sets, b"\r\n")
        assert replies == [b"+OK\r\n"] * N_CLIENTS
        turns = wire.call({"op": "STATUS"})["info"]["write_turns"] - before
        wire.close()
    # 80 writes from 80 connections; each loop turn wrote all it had read in one go.
    assert 2 <= turns < 2 * N_CLIENTS - 10, turns
    with Store(path=srv.log_path, background=False) as store:
        assert store.get("j7") is not None and store.get("j7")[0] == "v7"
        assert store.get("r13") == ("v3", None)
        assert len(store) == 2 * N_CLIENTS


def test_pipelined_write_then_read_on_one_connection_keeps_order(tmp_path):
    # A deferred batch holds the connection: what it sends next is answered after it, in order.
    with run_server(tmp_path) as srv:
        wire = Wire(srv.addr)
        wire.send(b'{"op":"SET","key":"k","value":"1"}\n')
        wire.send(b'{"op":"GET","key":"k"}\n{"op":"SET","key":"k","value":"2"}\n')
        wire.send(b'{"op":"GET","key":"k"}\n')
        got = [wire.reply() for _ in range(4)]
        wire.close()
    assert [g["status"] for g in got] == ["success"] * 4
    assert got[1]["value"] == "1" and got[3]["value"] == "2"
