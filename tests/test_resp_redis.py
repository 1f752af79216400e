"""The RESP parser against a live Redis: same bytes in, byte-for-byte the same answer out.

Each input is made of PING / ECHO commands, so the parser's view predicts Redis's replies exactly:
+PONG for PING, the argument as a bulk for ECHO, then the protocol error and a closed connection.
Skipped when redis-server is not installed.
"""

from __future__ import annotations

import socket
import time

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from yakvs.resp import RespParser, RespProtocolError, encode_bulk, encode_command
from yakvs.testing.redis import REDIS_SERVER, run_redis

try:
    import hiredis
except ImportError:
    hiredis = None

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server not installed")


@pytest.fixture(scope="module")
def redis_addr(tmp_path_factory):
    with run_redis(tmp_path_factory.mktemp("redis"), "--proto-max-bulk-len", "1mb") as addr:
        yield addr


def ask_redis(addr, data: bytes, expect_len: int, expect_eof: bool, linger: float = 0) -> bytes:
    """Send data; read until the connection closes (expect_eof) or expect_len bytes came,
    then for ``linger`` seconds more, to see anything unexpected."""
    out = b""
    with socket.create_connection(addr, timeout=5) as conn:
        conn.sendall(data)
        deadline = time.monotonic() + 5
        while (expect_eof or len(out) < expect_len) and time.monotonic() < deadline:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:  # Redis may reset if it closes with our bytes unread
                return out + b"<EOF>"
            if not chunk:
                return out + b"<EOF>"
            out += chunk
        if linger and not expect_eof:
            conn.settimeout(linger)
            try:
                out += conn.recv(65536) or b"<EOF>"
            except TimeoutError:
                pass
    return out


def predict(data: bytes, use_hiredis: bool) -> tuple[bytes, bool]:
    """What Redis should answer, from our parser's reading of data: (bytes, connection closed)."""
    parser = RespParser(use_hiredis=use_hiredis)
    parser.feed(data)
    out = []
    try:
        for argv in parser:
            name = argv[0].upper()
            if name == b"PING" and len(argv) == 1:
                out.append(b"+PONG\r\n")
            elif name == b"ECHO" and len(argv) == 2:
                out.append(encode_bulk(argv[1]))
            elif name == b"ECHO":
                out.append(b"-ERR wrong number of arguments for 'echo' command\r\n")
            else:
                raise AssertionError(f"test input has a command other than PING/ECHO: {argv!r}")
    except RespProtocolError as exc:
        return b"".join(out) + exc.reply + b"<EOF>", True
    return b"".join(out), False


PING = b"*1\r\n$4\r\nPING\r\n"
CASES = [
    # Valid input, including Redis's quirks that the parser copies.
    b"ECHO \"a\\x41\\n\\r\\t\\b\\a\\q\\\"\" \r\nECHO 'it\\'s'\r\n",
    b'ECHO "\\x4"\r\nECHO "\\xZZ"\r\nECHO ""\r\nECHO \'\'\n',
    b"ECHO a\x0bb\r\nECHO \x0b\x0ca\r\n  PING  \n",
    b"\r\n\n   \r\n*0\r\n*-1\r\n*-5\r\nPING\r\n",
    b"*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\n\n",
    encode_command(b"ECHO", b"k\r\n\x00\xff*1\r\n$3\r\n") + b"ECHO x\r\n",
    encode_command(b"ECHO", b"v" * (1 << 20)),
    # Protocol errors, with and without commands before them.
    PING + b"*1\r\n:5\r\n",
    PING + b"*1\r\n+PING\r\n",
    PING + b"*1\r\n*1\r\n$1\r\nk\r\n",
    b"*1\r\n\r\n",
    b"*1\r\n\xff\r\n",
    b"*1\r\n$-1\r\n",
    b"*1\r\n$03\r\nfoo\r\n",
    b"*1\r\n$+3\r\nfoo\r\n",
    b"*1\r\n$4\nPING\r\n\r\n",
    b"*1\r\n$%d\r\n" % ((1 << 20) + 1),
    b"*1\r\n$99999999999999999999\r\n",
    b"*abc\r\n",
    b"*-0\r\n",
    b"*01\r\n$4\r\nPING\r\n",
    b"*1\n$4\r\nPING\r\n",
    b"*2147483648\r\n",
    b'PING\r\nPING "a\r\n',
    b"PING 'a\r\n",
    b'PING "a"b\r\n',
    b"PING 'a'b\r\n",
    b"x" * 70000,
    b"*" + b"1" * 70000,
    PING + b"*1\r\n" + b"$" * 70000,
]
PATHS = [False, pytest.param(True, marks=pytest.mark.skipif(hiredis is None, reason="no hiredis"))]


@pytest.mark.parametrize("use_hiredis", PATHS, ids=["python", "hiredis"])
@pytest.mark.parametrize("data", CASES, ids=range(len(CASES)))
def test_same_answer_as_redis(redis_addr, data, use_hiredis):
    expected, closed = predict(data, use_hiredis)
    assert ask_redis(redis_addr, data, len(expected), closed) == expected


inline_bytes = st.sampled_from(list(b"ab4fxn \t\r\x0b\x0c\"'\\"))


@settings(max_examples=120, deadline=None)
@given(line=st.lists(inline_bytes, max_size=16).map(bytes))
def test_inline_quoting_like_redis(redis_addr, line):
    data = b"ECHO " + line + b"\r\n"
    expected, closed = predict(data, use_hiredis=False)
    assert ask_redis(redis_addr, data, len(expected), closed) == expected


BASE = (
    encode_command(b"ECHO", b"hello") + encode_command(b"PING") + encode_command(b"ECHO", b"x\r\ny")
)
# Offsets of the framing bytes (array and bulk header lines with their CRLF), not the payload.
HEADER_OFFSETS = [
    i for i in range(len(BASE)) if BASE[i] in b"*$0123456789" or BASE[i : i + 1] in (b"\r", b"\n")
]


@settings(max_examples=60, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(HEADER_OFFSETS), st.sampled_from(list(b"0123456789*$\r\n-+ :x"))),
        min_size=1,
        max_size=3,
    )
)
def test_mangled_framing_like_redis(redis_addr, edits):
    data = bytearray(BASE)
    for offset, byte in edits:
        data[offset] = byte
    try:
        expected, closed = predict(bytes(data), use_hiredis=False)
    except AssertionError:  # mangling made another command name; Redis's answer is not ours
        assume(False)
    assert ask_redis(redis_addr, bytes(data), len(expected), closed, linger=0.05) == expected
    assert predict(bytes(data), use_hiredis=hiredis is not None) == (expected, closed)
