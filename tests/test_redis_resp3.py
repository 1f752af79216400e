"""RESP3 after ``HELLO 3``: raw reply bytes, redis-py (sync and asyncio, protocol=3) and
``redis-cli -3``, each compared with a real Redis 7 where redis-server is installed.

The scripts of every command under both protocols are in test_redis_commands; here are the replies
whose RESP3 form differs in shape: nulls, maps (HELLO, CONFIG GET, COMMAND DOCS), sets (COMMAND
INFO), verbatim text (INFO, CLIENT INFO/LIST), and switching back with ``HELLO 2``.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import time
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from yakvs.testing.redis import REDIS_CLI

# (command, the reply yakvs must send); None = no pinned reply, only the comparison with Redis.
SESSION: list[tuple[bytes, bytes | None]] = [
    (b"HELLO 3", None),
    (b"GET nope", b"_\r\n"),
    (b"SET k v", b"+OK\r\n"),
    (b"SET k v NX", b"_\r\n"),
    (b"SET k v2 GET", b"$1\r\nv\r\n"),
    (b"SET n v GET", b"_\r\n"),
    (b"MGET k n zz", b"*3\r\n$2\r\nv2\r\n$1\r\nv\r\n_\r\n"),
    (b"CLIENT GETNAME", b"_\r\n"),
    (b"CONFIG GET save", b"%1\r\n$4\r\nsave\r\n$0\r\n\r\n"),
    (b"CONFIG GET nothing", b"%0\r\n"),
    (b"COMMAND DOCS nope", b"%0\r\n"),
    (b"COMMAND INFO nope", b"*1\r\n_\r\n"),
    (b"SCAN 0 TYPE list", b"*2\r\n$1\r\n0\r\n*0\r\n"),
    (b"HELLO 4", b"-NOPROTO unsupported protocol version\r\n"),
    (b"HELLO 2 FOO", b"-ERR Syntax error in HELLO option 'FOO'\r\n"),
    (b"GET nope", b"_\r\n"),  # a failed HELLO 2 leaves RESP3 on
    (b"HELLO 3 SETNAME me", None),
    (b"CLIENT GETNAME", b"$2\r\nme\r\n"),
    (b"HELLO", None),
    (b"HELLO 2", None),
    (b"GET nope", b"$-1\r\n"),
    (b"MGET zz", b"*1\r\n$-1\r\n"),
    (b"CONFIG GET save", b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n"),
    (b"COMMAND INFO nope", b"*1\r\n$-1\r\n"),
]


def _mask(reply: bytes) -> bytes:
    """HELLO's version and client id differ between servers: blank them out."""
    reply = re.sub(rb"\$7\r\nversion\r\n\$\d+\r\n[0-9.]+\r\n", b"$7\r\nversion\r\n?", reply)
    return re.sub(rb"\$2\r\nid\r\n:\d+\r\n", b"$2\r\nid\r\n?", reply)


def _session(addr: tuple[str, int]) -> list[bytes]:
    """Send SESSION one command at a time (inline) and return each whole reply."""
    out = []
    with socket.create_connection(addr, timeout=5) as sock:
        for cmd, _pinned in SESSION:
            sock.sendall(cmd + b"\r\n")
            out.append(_read_reply(sock))
    return out


def _read_reply(sock: socket.socket) -> bytes:
    """One reply: wait until the bytes received parse as exactly one RESP3 value (bounded)."""
    data = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        data += sock.recv(65536)
        if _complete(data):
            return data
    raise AssertionError(f"incomplete reply {data!r}")


def _complete(data: bytes) -> bool:
    stack, pos = [1], 0
    while stack:
        nl = data.find(b"\r\n", pos)
        if nl < 0:
            return False
        kind, head, pos = data[pos : pos + 1], data[pos + 1 : nl], nl + 2
        stack[-1] -= 1
        if kind in b"$=" and head != b"-1":
            pos += int(head) + 2
            if pos > len(data):
                return False
        elif kind in b"*~%" and int(head) > 0:
            stack.append(int(head) * (2 if kind == b"%" else 1))
        while stack and stack[-1] == 0:
            stack.pop()
    return pos == len(data)


def test_raw_resp3_replies_as_redis(yakvs_addr: Any, redis_addr: Any) -> None:
    ours = _session(yakvs_addr)
    for (cmd, pinned), got in zip(SESSION, ours, strict=True):
        assert pinned is None or got == pinned, (cmd, got)
    assert ours[0].startswith(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n") and b":3\r\n" in ours[0]
    assert ours[-5].startswith(b"*14\r\n")  # HELLO 2 answers in RESP2 already
    if redis_addr is None:
        pytest.skip("redis-server not installed")
    with redis.Redis(*redis_addr) as r:
        r.flushall()
    theirs = _session(redis_addr)
    diffs = [(cmd, a, b) for (cmd, _p), a, b in zip(SESSION, ours, theirs, strict=True)
             if _mask(a) != _mask(b)]
    assert not diffs, diffs


def _admin(r: redis.Redis) -> dict[str, Any]:
    """Results of the admin commands whose RESP3 form is a map, set or verbatim string."""
    r.flushall()
    r.set("k", "v", ex=100)
    hello = r.execute_command("HELLO", "3")
    info = r.info()
    return {
        "hello": sorted(hello) if isinstance(hello, dict) else hello,
        "proto": hello[b"proto"] if isinstance(hello, dict) else None,
        "config": r.config_get("save"),
        "info_types": sorted((k, type(v).__name__) for k, v in info.items()
                             if k in ("redis_version", "tcp_port", "connected_clients", "role")),
        "db0": info.get("db0"),
        "client_info": sorted(k for k in r.client_info() if k in ("id", "addr", "name", "resp")),
        "client_info_resp": r.client_info()["resp"],
        "client_list": [sorted(k for k in c if k in ("id", "addr", "fd", "resp"))
                        for c in r.client_list()],
        "command_get": {k: v for k, v in r.command()["get"].items()
                        if k in ("name", "arity", "first_key_pos", "last_key_pos", "step_count")},
        "get_flags": "readonly" in r.command()["get"]["flags"],
        "getname": r.client_getname(),
        "mget": r.mget("k", "nope"),
        "set_get": r.set("k", "w", get=True),
        "nx": r.set("k", "w", nx=True),
    }


def test_redis_py_protocol_3_admin_commands_as_redis(yakvs_addr: Any, redis_addr: Any) -> None:
    with redis.Redis(*yakvs_addr, protocol=3, socket_timeout=10) as r:
        ours = _admin(r)
        assert r.connection_pool.get_connection().handshake_metadata[b"proto"] == 3
    assert ours["proto"] == 3 and ours["client_info_resp"] == "3"
    assert ours["config"] == {"save": ""} and ours["db0"]["keys"] == 1
    assert ours["mget"] == [b"v", None] and ours["set_get"] == b"v" and ours["nx"] is None
    if redis_addr is None:
        pytest.skip("redis-server not installed")
    with redis.Redis(*redis_addr, protocol=3, socket_timeout=10) as r:
        theirs = _admin(r)
    assert ours == theirs


async def _async_script(addr: tuple[str, int]) -> list[Any]:
    clients = [aioredis.Redis(host=addr[0], port=addr[1], protocol=3) for _ in range(4)]
    try:
        await clients[0].flushall()

        async def one(i: int, c: aioredis.Redis) -> list[Any]:
            return [
                await c.set(f"a{i}", b"\xff\x00" * i, ex=100),
                await c.get(f"a{i}"),
                await c.get(f"missing{i}"),
                await c.set(f"a{i}", "x", nx=True),
                await c.mget(f"a{i}", "zz"),
                await c.ttl(f"a{i}"),
                await c.exists(f"a{i}", "zz"),
                await c.delete(f"a{i}"),
                await c.config_get("save"),
                (await c.info("server"))["redis_version"] is not None,
            ]

        return await asyncio.wait_for(
            asyncio.gather(*(one(i, c) for i, c in enumerate(clients))), 30
        )
    finally:
        for c in clients:
            await c.aclose()


def test_asyncio_redis_py_protocol_3_as_redis(yakvs_addr: Any, redis_addr: Any) -> None:
    ours = asyncio.run(_async_script(yakvs_addr))
    assert ours[2][:5] == [True, b"\xff\x00\xff\x00", None, None, [b"\xff\x00\xff\x00", None]]
    if redis_addr is None:
        pytest.skip("redis-server not installed")
    assert ours == asyncio.run(_async_script(redis_addr))


def _cli(port: int, *args: str) -> bytes:
    assert REDIS_CLI is not None
    done = subprocess.run(
        [REDIS_CLI, "-3", "-h", "127.0.0.1", "-p", str(port), "--no-raw", *args],
        capture_output=True, timeout=30, check=False,
    )
    return done.stdout + done.stderr


@pytest.mark.skipif(REDIS_CLI is None, reason="redis-cli not installed")
def test_redis_cli_3_one_shot_as_redis(yakvs_addr: Any, redis_addr: Any) -> None:
    commands = [
        ("SET", "c", "v"), ("GET", "c"), ("GET", "nope"), ("MGET", "c", "nope"),
        ("CONFIG", "GET", "save"), ("SET", "c", "w", "NX"), ("CLIENT", "GETNAME"),
        ("HELLO", "4"),
    ]
    ours = [_cli(yakvs_addr[1], *cmd) for cmd in commands]
    assert ours[:3] == [b"OK\n", b'"v"\n', b"(nil)\n"]
    assert ours[4] == b'1# "save" => ""\n'
    assert _cli(yakvs_addr[1], "INFO", "server").startswith(b"# Server\r\nredis_version:")
    if redis_addr is None:
        pytest.skip("redis-server not installed")
    theirs = [_cli(redis_addr[1], *cmd) for cmd in commands]
    assert ours == theirs
