"""redis-py against a live yakvs server: every supported command, compared with a real Redis 7.

Each case is a script of commands run on a freshly flushed keyspace against yakvs and, when
redis-server is installed, against Redis; results (or error type and text) must be equal. TTLs
are compared within a window. Without redis-server the scripts still run against yakvs and the
expected values written here are checked, only the side-by-side comparison is skipped.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from yakvs.testing.redis import REDIS_SERVER, run_redis
from yakvs.testing.server import run_server

FUTURE = int(time.time()) + 3600
APPROX = "~"  # prefix of a command whose integer result is compared within 2 units


def _run(client: redis.Redis, script: list[tuple[Any, ...]]) -> list[Any]:
    client.execute_command("FLUSHALL")
    out: list[Any] = []
    for cmd in script:
        approx = cmd[0] == APPROX
        args = cmd[1:] if approx else cmd
        try:
            result = client.execute_command(*args)
        except redis.ResponseError as exc:
            result = ("error", type(exc).__name__, str(exc))
        if approx and isinstance(result, int) and result > 0:
            result = ("approx", result)
        if isinstance(result, list) and args[0] in ("KEYS", "keys"):
            result = sorted(result)
        out.append(result)
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and a and a[0] == "approx":
        return isinstance(b, tuple) and b[0] == "approx" and abs(a[1] - b[1]) <= 2
    return a == b


CASES: dict[str, list[tuple[Any, ...]]] = {
    "ping_echo": [
        ("PING",), ("PING", "hello"), ("PING", "a", "b"), ("ECHO", "x\r\ny"), ("ECHO",),
        ("ping",), ("EcHo", ""),
    ],
    "set_get_options": [
        ("SET", "k", "v"), ("GET", "k"), ("GET", "missing"), ("SET", "k", "v2", "NX"),
        ("SET", "k", "v3", "XX"), ("GET", "k"), ("SET", "n1", "v", "XX"), ("GET", "n1"),
        ("SET", "k", "v4", "GET"), ("SET", "n2", "v", "GET"), ("GET", "n2"),
        ("SET", "k", "v", "NX", "XX"), ("SET", "k", "v", "nx", "GET"),
        ("SET", "new", "v", "NX", "GET"),
        ("SET", "k", "v", "FOO"), ("SET", "k", "v", "EX"), ("SET", "k"), ("GET", "k", "x"),
    ],
    "set_expiry_errors": [
        ("SET", "k", "v", "EX", "0"), ("SET", "k", "v", "PX", "-5"), ("SET", "k", "v", "EX", "abc"),
        ("SET", "k", "v", "EX", "1.5"), ("SET", "k", "v", "EX", "10", "PX", "100"),
        ("SET", "k", "v", "KEEPTTL", "EX", "10"), ("SET", "k", "v", "EX", "10", "KEEPTTL"),
        ("SET", "k", "v", "EXAT", "0"), ("SET", "k", "v", "EX", "99999999999999999999"),
        ("SET", "k", "v", "EX", "9223372036854775807"), ("GET", "k"),
    ],
    "expiry": [
        ("SET", "k", "v", "EX", "100"), ("~", "TTL", "k"), ("~", "PTTL", "k"),
        ("SET", "k", "v2", "KEEPTTL"), ("~", "TTL", "k"), ("SET", "k", "v3"), ("TTL", "k"),
        ("EXPIRE", "k", "50"), ("~", "TTL", "k"), ("PERSIST", "k"), ("PERSIST", "k"),
        ("TTL", "k"), ("TTL", "missing"), ("PTTL", "missing"), ("EXPIRE", "missing", "10"),
        ("PEXPIRE", "k", "100000"), ("~", "PTTL", "k"), ("EXPIRE", "k", "abc"),
        ("EXPIRE", "k", "-1"), ("EXISTS", "k"), ("GET", "k"), ("PERSIST", "missing"),
        ("SET", "k", "v", "PXAT", "1"), ("GET", "k"), ("SET", "k", "v", "EXAT", str(FUTURE)),
        ("~", "TTL", "k"), ("SET", "p", "v", "PX", "100000"), ("~", "PTTL", "p"),
        ("EXPIRE", "k", "9223372036854775807"), ("EXPIRE",), ("TTL", "a", "b"),
    ],
    "expire_options": [
        ("SET", "k", "v"), ("EXPIRE", "k", "100", "XX"), ("EXPIRE", "k", "100", "GT"),
        ("EXPIRE", "k", "100", "xx", "lt"), ("EXPIRE", "k", "100", "LT"), ("~", "TTL", "k"),
        ("EXPIRE", "k", "50", "NX"), ("EXPIRE", "k", "200", "LT"), ("EXPIRE", "k", "200", "GT"),
        ("~", "TTL", "k"), ("EXPIRE", "k", "150", "XX", "GT"), ("EXPIRE", "k", "120", "XX", "LT"),
        ("~", "TTL", "k"), ("EXPIRE", "k", "10", "NX", "XX"), ("EXPIRE", "k", "10", "GT", "LT"),
        ("EXPIRE", "k", "10", "FOO"), ("EXPIRE", "k", "abc", "FOO"), ("EXPIRE", "k", "abc", "NX"),
        ("PEXPIRE", "k", "-1", "GT"), ("EXISTS", "k"), ("PEXPIRE", "k", "-1", "LT"),
        ("EXISTS", "k"), ("EXPIRE", "missing", "10", "NX"), ("PERSIST", "k"),
        ("SET", "n", "v"), ("EXPIRE", "n", "10", "NX"), ("~", "TTL", "n"),
    ],
    "multi_key": [
        ("DEL", "a", "b", "c"), ("MSET", "a", "1", "b", "2"), ("EXISTS", "a", "a", "b", "zz"),
        ("MGET", "a", "b", "c"), ("MSET", "a"), ("MSET", "a", "1", "b"), ("DEL", "a", "b", "c"),
        ("EXISTS", "a"), ("MGET", "a"), ("DEL",), ("MGET",), ("UNLINK", "a"), ("DBSIZE",),
        ("MSET", "x", "1", "x", "2"), ("GET", "x"), ("DBSIZE",),
    ],
    "keys_glob": [
        ("MSET", "foo", "1", "fob", "2", "bar", "3", "f*o", "4", "f\\o", "5", "fo", "6"),
        ("KEYS", "f*"), ("KEYS", "*"), ("KEYS", "f?o"), ("KEYS", "[fb]*"), ("KEYS", "[^f]*"),
        ("KEYS", "f\\*o"), ("KEYS", "nomatch"), ("KEYS", "[a-c]ar"), ("KEYS", "f[o-o]?"),
        ("KEYS", "fo*"), ("KEYS", "**o"), ("DBSIZE",), ("KEYS",),
    ],
    "scan_errors": [
        ("SCAN", "abc"), ("SCAN", "0", "COUNT", "0"), ("SCAN", "0", "COUNT", "x"),
        ("SCAN", "0", "FOO", "1"), ("SCAN", "0", "MATCH"), ("SCAN",),
        ("SCAN", "0", "TYPE", "list"),
    ],
    "select_quit_flush": [
        ("SELECT", "0"), ("SELECT", "abc"), ("SELECT",), ("SET", "k", "v"), ("FLUSHDB",),
        ("DBSIZE",), ("SET", "k", "v"), ("FLUSHALL", "ASYNC"), ("DBSIZE",),
        ("FLUSHALL", "FOO"), ("FLUSHDB", "SYNC", "x"),
    ],
    "unknown_and_arity": [
        ("FOO",), ("FOO", "a", "b c"), ("foo", "x" * 200), ("GET",), ("DEL",), ("TTL",),
        ("PERSIST",), ("ECHO", "a", "b"), ("DBSIZE", "x"), ("KEYS", "a", "b"), ("SELECT", "0", "1"),
    ],
    "client": [
        ("CLIENT", "GETNAME"), ("CLIENT", "SETNAME", "me"), ("CLIENT", "GETNAME"),
        ("CLIENT", "SETNAME", "a b"), ("CLIENT", "FOO"), ("CLIENT", "SETNAME"),
        ("CLIENT", "SETNAME", ""), ("CLIENT", "GETNAME"), ("CLIENT",),
    ],
    "hello": [
        ("HELLO", "abc"), ("HELLO", "1"), ("HELLO", "4"), ("HELLO", "2", "FOO"),
        ("HELLO", "3", "FOO"), ("HELLO", "3", "SETNAME", "a b"), ("CLIENT", "GETNAME"),
    ],
    "config_command_docs": [
        ("CONFIG", "GET", "save"), ("CONFIG", "GET", "nothing"), ("CONFIG", "GET", "save", "save"),
        ("COMMAND", "DOCS", "nope"), ("CONFIG", "GET"),
    ],
    "binary": [
        ("SET", b"\xff\x00k", b"\x80\r\n\x00v"), ("GET", b"\xff\x00k"), ("KEYS", "*"),
        ("MGET", b"\xff\x00k", "x"), ("SET", "u", "h\u00e9llo \u2603"), ("GET", "u"),
        ("DEL", b"\xff\x00k"), ("EXISTS", b"\xff\x00k"),
    ],
}


@pytest.fixture
def yakvs_client(yakvs_addr: tuple[str, int]) -> Iterator[redis.Redis]:
    client = redis.Redis(*yakvs_addr, protocol=2, socket_timeout=10)
    yield client
    client.close()


@pytest.fixture
def redis_client(redis_addr: tuple[str, int] | None) -> Iterator[redis.Redis | None]:
    if redis_addr is None:
        yield None
        return
    client = redis.Redis(*redis_addr, protocol=2, socket_timeout=10)
    yield client
    client.close()


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_answers_as_redis(
    case: str, protocol: int, yakvs_addr: tuple[str, int], redis_addr: tuple[str, int] | None
) -> None:
    """The same script through redis-py speaking RESP2 and RESP3 (``HELLO 3``, its parser)."""
    script = CASES[case]
    with redis.Redis(*yakvs_addr, protocol=protocol, socket_timeout=10) as client:
        ours = _run(client, script)
    assert len(ours) == len(script)
    if redis_addr is None:
        pytest.skip("redis-server not installed: compared nothing (yakvs ran the script)")
    with redis.Redis(*redis_addr, protocol=protocol, socket_timeout=10) as client:
        theirs = _run(client, script)
    diffs = [
        (cmd, mine, other)
        for cmd, mine, other in zip(script, ours, theirs, strict=True)
        if not _same(mine, other)
    ]
    assert not diffs, "\n".join(f"{c!r}: yakvs {m!r} != redis {o!r}" for c, m, o in diffs)


def test_expected_values_without_redis(yakvs_client: redis.Redis) -> None:
    """A few answers pinned here, so the suite checks yakvs even where Redis is absent."""
    r = yakvs_client
    r.flushall()
    assert r.set("k", b"\xff\x00v") is True and r.get("k") == b"\xff\x00v"
    assert r.set("k", "x", nx=True) is None
    assert r.set("k", "y", xx=True, get=True) == b"\xff\x00v"
    assert r.mset({"a": "1", "b": "2"}) and r.mget("a", "b", "c") == [b"1", b"2", None]
    assert r.exists("a", "a", "c") == 2 and r.delete("a", "c") == 1
    assert r.expire("k", 100) and 99 <= r.ttl("k") <= 100 and r.persist("k") and r.ttl("k") == -1
    assert r.ttl("missing") == -2 and r.pttl("missing") == -2
    assert sorted(r.keys("*")) == [b"b", b"k"] and r.dbsize() == 2
    with pytest.raises(redis.ResponseError, match="unknown command 'NOPE', with args beginning"):
        r.execute_command("NOPE", "x")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'get' command"):
        r.execute_command("GET")
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        r.execute_command("SELECT", "1")
    assert r.flushall() and r.dbsize() == 0
    # Keys are never empty here (Redis allows ""): writes of "" are refused, MSET as a whole.
    for write in (lambda: r.set("", "v"), lambda: r.mset({"z": "1", "": "v"})):
        with pytest.raises(redis.ResponseError, match=r"Key is required \(BAD_REQUEST\)"):
            write()
    assert r.exists("z", "") == 0 and r.get("") is None and r.delete("") == 0
    assert r.expire("", 10) is False and r.persist("") is False and r.ttl("") == -2


def test_scan_visits_every_key_once(yakvs_client: redis.Redis, redis_client: Any) -> None:
    for client in filter(None, [yakvs_client, redis_client]):
        client.flushall()
        client.mset({f"k{i}": str(i) for i in range(300)})
        client.mset({f"other{i}": "x" for i in range(50)})
        seen: list[bytes] = []
        cursor, rounds = 0, 0
        while True:
            cursor, keys = client.scan(cursor, match="k1*", count=7)
            seen += keys
            rounds += 1
            assert rounds < 500
            if cursor == 0:
                break
        assert sorted(set(seen)) == sorted(f"k{i}".encode() for i in range(300)
                                           if str(i).startswith("1"))
        assert rounds > 10  # COUNT is honoured: not everything in one step
        assert sorted(client.scan_iter(match="other*", count=1000)) == sorted(
            f"other{i}".encode() for i in range(50))


def test_select_hello_info_command(yakvs_client: redis.Redis) -> None:
    r = yakvs_client
    assert r.execute_command("SELECT", "0") is True or r.execute_command("SELECT", "0") == b"OK"
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        r.execute_command("SELECT", "1")
    with pytest.raises(redis.ResponseError, match="unsupported protocol version"):
        r.execute_command("HELLO", "4")
    hello = r.execute_command("HELLO", "2")
    assert b"proto" in hello and hello[hello.index(b"proto") + 1] == 2
    r.set("ik", "v", ex=100)
    info = r.info()
    for field in ("redis_version", "process_id", "tcp_port", "uptime_in_seconds",
                  "connected_clients", "used_memory", "aof_enabled", "aof_current_size", "role"):
        assert field in info, field
    assert info["connected_clients"] >= 1 and info["used_memory"] > 1_000_000
    assert info["role"] == "master" and info["aof_current_size"] > 0
    assert info["db0"]["keys"] >= 1 and info["db0"]["expires"] >= 1
    assert set(r.info("memory")) >= {"used_memory", "used_memory_peak"}
    assert "connected_clients" not in r.info("memory")
    addr = r.connection_pool.connection_kwargs
    raw = _raw((addr["host"], addr["port"]), b"COMMAND COUNT\r\nCOMMAND DOCS\r\nQUIT\r\n")
    count, docs = raw.split(b"\r\n")[:2]
    assert int(count[1:]) >= 25 and docs == b"*0"
    assert r.client_id() > 0 and r.client_setname("n1") and r.client_getname() == "n1"


def _raw(addr: tuple[str, int], payload: bytes, timeout: float = 5.0) -> bytes:
    """Send ``payload``, half-close, return everything until the server closes."""
    with socket.create_connection(addr, timeout=timeout) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    raise AssertionError(f"no close after {data[-200:]!r}")


RAW_CASES = [
    b"PING\r\nECHO \"a b\"\r\nFOO 'x' y\r\nQUIT\r\nPING\r\n",
    b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$3\r\na\x00b\r\n*1\r\n$4\r\nQUIT\r\n",
    b"*1\r\n$4\r\nPING\r\n*x\r\n",  # protocol error after a good command: answered, error, close
    b"*1\r\n$4\r\nPING\r\n*1\r\nPING\r\n",
    b"ECHO \"unbalanced\r\nPING\r\n",
    b"*2\r\n$3\r\nGET\r\n$-5\r\n",
    b"ping\nping\r\nSET k \"a\\x00b\"\r\nGET k\r\nGET\r\n",
]


@pytest.mark.parametrize("payload", RAW_CASES)
def test_raw_bytes_as_redis(tmp_path: Any, payload: bytes) -> None:
    """Byte-for-byte replies (error texts, QUIT, protocol errors), against Redis when present."""
    with run_server(tmp_path / "y") as handle:
        ours = _raw((handle.host, handle.port), payload)
    assert ours.startswith(b"+PONG") or ours.startswith(b"-") or ours.startswith(b"+")
    if REDIS_SERVER is None:
        pytest.skip("redis-server not installed")
    (tmp_path / "r").mkdir()
    with run_redis(tmp_path / "r") as addr:
        theirs = _raw(addr, payload)
    assert ours == theirs
