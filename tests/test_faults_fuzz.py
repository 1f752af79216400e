"""Fault suite: hostile input to a live server. Hypothesis throws random bytes, malformed JSON,
wrong types, huge numbers, deep nesting, invalid UTF-8 and HTTP at it over TCP. The server must
answer every line it answers with a well-formed reply, never crash, never touch data the input
did not ask for, and never let an exception escape a connection handler (no "Traceback")."""

from __future__ import annotations

import json
import socket
import time

import hiredis
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yakvs.protocol import Op, Request
from yakvs.rediscompat.sniff import sniff
from yakvs.testing.history import WireSession
from yakvs.testing.server import spawn_server

_CONTROL_VALUES = ["plain", "with space", "new\nline", "nul\0", "é😀"]
CONTROL = {f"ctl-{i}": v for i, v in enumerate(_CONTROL_VALUES)}

_keys = st.one_of(
    st.text(max_size=20).filter(lambda k: not k.startswith("ctl")),
    st.integers(), st.none(), st.booleans(), st.lists(st.integers(), max_size=3),
    st.floats(allow_nan=True),
)
_ops = st.one_of(
    st.sampled_from(["SET", "set", "GET", "DELETE", "TTL", "KEYS", "EXISTS", "PING", "STATUS",
                     "Get", "", "FLUSHALL", "SET\0", " GET"]),
    st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2),
)
_numbers = st.one_of(
    st.integers(), st.integers(min_value=-(2**200), max_value=2**200), st.floats(),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-0", "1" * 5000, "0x10"]),
)


@st.composite
def _request_line(draw: st.DrawFn) -> bytes:
    """A request-shaped object with hostile field values, written as raw JSON text."""
    fields = {"op": draw(_ops), "key": draw(_keys)}
    for name in draw(st.sets(st.sampled_from(
            ["value", "expires_in", "prefix", "limit", "consistency", "extra"]))):
        fields[name] = draw(st.one_of(st.text(max_size=30), _keys, _numbers))
    parts = []
    for name, value in fields.items():
        # Special numbers go in bare, the way a hostile peer would write them.
        raw = value if isinstance(value, str) and value in {"NaN", "Infinity", "-Infinity", "1e999",
                                                            "1" * 5000, "0x10", "-0"} else None
        text = raw if raw is not None and name in {"expires_in", "limit"} else json.dumps(value)
        parts.append(f"{json.dumps(name)}: {text}")
    return ("{" + ", ".join(parts) + "}\n").encode()


_chunks = st.one_of(
    st.binary(max_size=200),
    _request_line(),
    st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                    max_size=3),
        max_leaves=10,
    ).map(lambda v: json.dumps(v).encode() + b"\n"),
    st.integers(1, 20000).map(lambda n: b"[" * n + b"]" * n + b"\n"),
    st.integers(1, 20000).map(lambda n: b'{"op":"GET","key":' + b"[" * n + b"\n"),
    st.just(b'{"op":"SET","key":"\xff\xfe","value":"\xc3\x28"}\n'),
    st.just(b'{"op":"SET","key":"fz","value":"\\ud800"}\n'),
    st.just(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    st.just(b"\n\n\r\n \n"),
    st.just(b'{"op":"SET","key":"fz","value":"v","expires_in":-5}\n'),
)


def _exchange(addr: str, payload: bytes, timeout: float = 5.0) -> list[bytes]:
    """Send everything, half-close, and collect reply lines until the server closes."""
    host, _, port = addr.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close first (HTTP, oversized line): fine, read what came
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        else:
            raise AssertionError("server neither answered nor closed within the timeout")
    lines = data.split(b"\n")
    assert lines.pop() == b"", f"a reply cut short: {data[-200:]!r}"
    return lines


def _assert_well_formed(line: bytes) -> None:
    obj = orjson.loads(line)
    assert isinstance(obj, dict), line
    assert obj.get("status") in ("success", "error"), line
    if obj["status"] == "error":
        assert isinstance(obj.get("code"), str) and isinstance(obj.get("message"), str), line


def _assert_well_formed_resp(data: bytes) -> None:
    reader = hiredis.Reader()
    reader.feed(data)
    while (reply := reader.gets()) is not False:
        assert reply is not None or data, data[-200:]
    assert not reader.has_data(), data[-200:]


def _control_intact(addr: str) -> None:
    session = WireSession(addr, timeout=5.0)
    session.connect()
    try:
        for key, value in CONTROL.items():
            reply = session.execute(Request(Op.GET, key))
            assert reply.ok and reply.value == value, (key, reply)
    finally:
        session.close()


def test_hostile_input_never_hurts_the_server_or_other_data(tmp_path):
    with spawn_server(tmp_path, max_request_size=65536) as server:
        session = WireSession(server.addr, timeout=5.0)
        session.connect()
        for key, value in CONTROL.items():
            assert session.execute(Request(Op.SET, key, value)).ok
        examples = 0

        @settings(max_examples=250, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(st.lists(_chunks, min_size=1, max_size=8))
        def fuzz(chunks: list[bytes]) -> None:
            nonlocal examples
            examples += 1
            payload = b"".join(chunks)
            lines = _exchange(server.addr, payload)
            if sniff(payload) == "resp":  # a letter or '*' first: the Redis protocol answers
                _assert_well_formed_resp(b"".join(line + b"\n" for line in lines))
            else:
                for line in lines:
                    _assert_well_formed(line)
            assert server.proc is not None and server.proc.poll() is None, server.stderr()
            # The long-lived connection is still served between hostile ones.
            assert session.execute(Request(Op.PING)).ok

        fuzz()
        # Over the limit: one TOO_LARGE reply, then the connection is closed.
        lines = _exchange(server.addr, b'{"op":"SET","key":"big","value":"' + b"x" * 70000)
        assert [orjson.loads(line)["code"] for line in lines] == ["TOO_LARGE"]
        _control_intact(server.addr)
        assert session.execute(Request(Op.PING)).ok
        session.close()
        stderr = server.stderr()
    assert examples >= 100
    assert "Traceback" not in stderr, stderr[-3000:]
