"""RESP2 codec on bytes alone: every message split at every boundary, both parser paths."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yakvs.resp import (
    NIL_ARRAY,
    ErrorReply,
    RespParser,
    RespProtocolError,
    SimpleString,
    encode_array,
    encode_bulk,
    encode_command,
    encode_error,
    encode_integer,
    encode_reply,
    encode_simple,
)

try:
    import hiredis
except ImportError:
    hiredis = None

PATHS = [
    "python",
    pytest.param(
        "hiredis", marks=pytest.mark.skipif(hiredis is None, reason="hiredis not installed")
    ),
]
SMALL_LIMIT = 1024  # max_request_size for these tests, so the limits are cheap to reach


def make_parser(path: str, **kw) -> RespParser:
    parser = RespParser(
        kw.pop("max_request_size", SMALL_LIMIT), use_hiredis=path == "hiredis", **kw
    )
    assert parser.uses_hiredis == (path == "hiredis")
    return parser


def run(parser: RespParser, chunks) -> tuple[list[list[bytes]], bytes | None]:
    """Feed chunks one by one, draining after each; returns (commands, error reply or None)."""
    out: list[list[bytes]] = []
    for chunk in chunks:
        parser.feed(chunk)
        try:
            while (argv := parser.next_command()) is not None:
                assert argv and all(type(a) is bytes for a in argv)
                out.append(argv)
        except RespProtocolError as exc:
            return out, exc.reply
    return out, None


def splits(data: bytes):
    """Whole, in two parts at every boundary, and byte by byte."""
    yield [data]
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]
    yield [data[i : i + 1] for i in range(len(data))]


def big_splits(data: bytes):
    """For long inputs: whole, byte by byte, and a few uneven chunkings."""
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    for size in (7, 4093, 65537):
        yield [data[i : i + size] for i in range(0, len(data), size)]


def cmd(*args: bytes) -> bytes:
    return encode_command(*args)


VALID = [
    (b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", [[b"GET", b"k"]]),
    (b"GET k\r\n", [[b"GET", b"k"]]),
    (b"GET k\n", [[b"GET", b"k"]]),
    (b"  SET\tk   v  \r\n", [[b"SET", b"k", b"v"]]),
    (
        b"ECHO \"a\\x41\\n\\r\\t\\b\\a\\q\\\"\" 'it\\'s'\r\n",
        [[b"ECHO", b'aA\n\r\t\b\aq"', b"it's"]],
    ),
    (b'SET "" \'\' x"y z" \r\n', [[b"SET", b"", b"", b"xy z"]]),
    (b"ECHO a\x0bb\r\n", [[b"ECHO", b"a\x0bb"]]),  # \v separates nothing, as in Redis
    (b'ECHO "\\x4"\r\n', [[b"ECHO", b"x4"]]),  # a half \\x escape is a plain \\x
    (b"ECHO a\x00b\xff\r\n", [[b"ECHO", b"a\x00b\xff"]]),
    (b"\r\n\n   \r\n*0\r\n*-1\r\n*-5\r\nPING\r\n", [[b"PING"]]),  # empty commands skipped
    (
        cmd(b"SET", b"k\r\n\x00\xff", b"\r\n*1\r\n$3\r\n")
        + b"PING\n"
        + cmd(b"GET", b"")
        + b"x y\n",
        [[b"SET", b"k\r\n\x00\xff", b"\r\n*1\r\n$3\r\n"], [b"PING"], [b"GET", b""], [b"x", b"y"]],
    ),
    (b"*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\n\n", [[b"PING"], [b"PING"]]),  # Redis skips 2 bytes
    (cmd(b"SET", b"k", b"v" * SMALL_LIMIT), [[b"SET", b"k", b"v" * SMALL_LIMIT]]),
    # Valid but not canonical after a first command, where the hiredis path must step aside.
    (b"PING\r\n*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n", [[b"PING"]] * 3),
    (
        b"PING\r\n*1\r\n$4\r\nECHO\r\n*0\r\n" + cmd(b"GET", b"k"),
        [[b"PING"], [b"ECHO"], [b"GET", b"k"]],
    ),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("data", "expected"), VALID)
def test_valid_split_everywhere(path, data, expected):
    chunkings = splits(data) if len(data) < 200 else big_splits(data)
    for chunks in chunkings:
        parser = make_parser(path)
        assert run(parser, chunks) == (expected, None), chunks
        assert parser.buffered == 0
        assert parser.next_command() is None


def proto(detail: bytes) -> bytes:
    return b"-ERR Protocol error: " + detail + b"\r\n"


PING = b"*1\r\n$4\r\nPING\r\n"
ERRORS = [
    (PING + b"*1\r\n:5\r\n", [[b"PING"]], proto(b"expected '$', got ':'")),
    (PING + b"*1\r\n+PING\r\n", [[b"PING"]], proto(b"expected '$', got '+'")),
    (PING * 3 + b"*1\r\n*1\r\n$1\r\nk\r\n", [[b"PING"]] * 3, proto(b"expected '$', got '*'")),
    (b"*1\r\n\r\n", [], proto(b"expected '$', got ' '")),
    (b"*1\r\n\xff\r\n", [], proto(b"expected '$', got '\xff'")),
    (b"*1\r\n$-1\r\n", [], proto(b"invalid bulk length")),
    (b"*1\r\n$03\r\nfoo\r\n", [], proto(b"invalid bulk length")),
    (b"*1\r\n$+3\r\nfoo\r\n", [], proto(b"invalid bulk length")),
    (b"*1\r\n$ 3\r\nfoo\r\n", [], proto(b"invalid bulk length")),
    (b"*1\r\n$4\nPING\r\n\r\n", [], proto(b"invalid bulk length")),
    (b"*1\r\n$%d\r\n" % (SMALL_LIMIT + 1), [], proto(b"invalid bulk length")),
    (b"*1\r\n$99999999999999999999\r\n", [], proto(b"invalid bulk length")),
    (b"*abc\r\n", [], proto(b"invalid multibulk length")),
    (b"*-0\r\n", [], proto(b"invalid multibulk length")),
    (b"*01\r\n$4\r\nPING\r\n", [], proto(b"invalid multibulk length")),
    (b"*1\n$4\r\nPING\r\n", [], proto(b"invalid multibulk length")),
    (b"*1048577\r\n", [], proto(b"invalid multibulk length")),
    (b'PING\r\nPING "a\r\n', [[b"PING"]], proto(b"unbalanced quotes in request")),
    (b"PING 'a\r\n", [], proto(b"unbalanced quotes in request")),
    (b'PING "a"b\r\n', [], proto(b"unbalanced quotes in request")),
    (b"PING 'a'b\r\n", [], proto(b"unbalanced quotes in request")),
    (b"*1\r\n\x00\r\n", [], proto(b"expected '$', got '\x00'")),  # Redis hangs on the NUL
    (
        PING + cmd(b"SET", b"k", b"v" * (SMALL_LIMIT + 1)),
        [[b"PING"]],
        proto(b"invalid bulk length"),
    ),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("data", "before", "reply"), ERRORS)
def test_errors_split_everywhere(path, data, before, reply):
    for chunks in splits(data) if len(data) < 200 else big_splits(data):
        parser = make_parser(path)
        assert run(parser, chunks) == (before, reply), chunks
        assert parser.error is not None and parser.error.reply == reply
        assert str(parser.error).startswith("ERR Protocol error: ")
        # The parser stays failed: more bytes change nothing, the error repeats.
        parser.feed(PING)
        with pytest.raises(RespProtocolError):
            parser.next_command()


@pytest.mark.skipif(hiredis is None, reason="hiredis not installed")
def test_hiredis_cannot_read_inline_commands():
    """Why inline commands always take the pure-Python path."""
    reader = hiredis.Reader()
    reader.feed(b"GET k\r\n")
    with pytest.raises(hiredis.ProtocolError):
        reader.gets()


def test_error_is_a_bad_request():
    from yakvs.errors import BadRequestError

    assert issubclass(RespProtocolError, BadRequestError)


LONG = [
    # A line right at the 64 KiB limit is fine; one byte more is not, however it is chunked.
    (b"ECHO " + b"a" * (65536 - 5) + b"\n", [[b"ECHO", b"a" * 65531]], None),
    (b"ECHO " + b"a" * (65536 - 6) + b"\r\n", [[b"ECHO", b"a" * 65530]], None),
    (b"ECHO " + b"a" * (65536 - 4) + b"\n", [], proto(b"too big inline request")),
    (b"x" * 70000, [], proto(b"too big inline request")),
    (b"*" + b"1" * 70000, [], proto(b"too big mbulk count string")),
    (PING + b"*1\r\n" + b"$" * 70000, [[b"PING"]], proto(b"too big bulk count string")),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("data", "before", "reply"), LONG, ids=range(len(LONG)))
def test_long_lines(path, data, before, reply):
    for chunks in big_splits(data):
        assert run(make_parser(path), chunks) == (before, reply)


@pytest.mark.parametrize("path", PATHS)
def test_limits_fail_before_the_data_arrives(path):
    """Nothing unbounded is buffered: an over-limit header fails as soon as it is complete."""
    parser = make_parser(path)
    assert run(parser, [b"*1\r\n$1025\r\n"]) == ([], proto(b"invalid bulk length"))
    parser = make_parser(path, max_command_size=3000)
    head = b"*3\r\n$1000\r\n" + b"v" * 1000 + b"\r\n$1000\r\n" + b"v" * 1000 + b"\r\n"
    assert run(parser, [head, b"$1000\r\n"]) == ([], proto(b"too big request"))
    parser = make_parser(path, max_command_size=100)
    assert run(parser, [PING + cmd(b"SET", b"k", b"v" * 100)]) == (
        [[b"PING"]],
        proto(b"too big request"),
    )
    parser = make_parser(path)
    assert run(parser, [b"y" * 65536]) == ([], None)
    assert parser.buffered == 65536
    assert run(parser, [b"y"]) == ([], proto(b"too big inline request"))
    assert parser.buffered == 0


@pytest.mark.parametrize("path", PATHS)
def test_huge_counts_allocate_nothing(path):
    """hiredis builds a list as soon as it reads a count; a 2**31 count must not reach it."""
    start = time.monotonic()
    for head in (b"*1048576\r\n", b"*2\r\n$3\r\nGET\r\n*2147483647\r\n", b"*%2147483647\r\n"):
        parser = make_parser(path)
        got = run(parser, [PING + PING + head])
        assert got[0] == [[b"PING"], [b"PING"]]
        assert parser.buffered < 100
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("path", PATHS)
def test_byte_by_byte_is_linear(path):
    """Partial data is never rescanned: 2 MiB-ish fed a byte at a time finishes quickly."""
    size = 1 << 20
    bulk = b"*2\r\n$3\r\nSET\r\n$%d\r\n%b\r\n" % (size, b"\xff" * size)
    inline = b"ECHO " + b"b" * 65000 + b"\r\n"
    data = bulk + inline
    parser = make_parser(path, max_request_size=size)
    start = time.monotonic()
    got = []
    for i in range(len(data)):
        parser.feed(data[i : i + 1])
        if (argv := parser.next_command()) is not None:
            got.append(argv)
    elapsed = time.monotonic() - start
    assert [len(a) for a in got[0]] == [3, size] and got[1] == [b"ECHO", b"b" * 65000]
    # Linear is ~1-3 s here; rescanning or recopying the buffer per byte takes minutes.
    assert elapsed < 10, elapsed


@pytest.mark.parametrize("path", PATHS)
def test_pipeline_in_random_chunks(path):
    commands = [[b"SET", b"k%d" % i, bytes(range(i % 256)) * 3] for i in range(300)]
    data = b"".join(
        encode_command(*c) if i % 3 else b" ".join(c[:2]) + b"\r\n" for i, c in enumerate(commands)
    )
    expected = [c if i % 3 else c[:2] for i, c in enumerate(commands)]
    for size in (1, 2, 3, 5, 16, 100, 1000, len(data)):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        assert run(make_parser(path), chunks) == (expected, None)


@pytest.mark.skipif(hiredis is None, reason="hiredis not installed")
def test_hiredis_path_takes_canonical_runs():
    """White-box: the C reader really parses a canonical pipeline, not the fallback."""
    parser = make_parser("hiredis")
    parser.feed(encode_command(b"SET", b"k", b"v") * 16 + b"PING\r\n")
    assert parser.next_command() == [b"SET", b"k", b"v"]  # the first one is Python's
    assert parser.next_command() == [b"SET", b"k", b"v"]
    assert len(parser._ready) == 14
    assert list(parser)[-1] == [b"PING"]


args_strategy = st.lists(st.binary(max_size=40), min_size=1, max_size=8)


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands=st.lists(args_strategy, min_size=1, max_size=5), data=st.data())
def test_roundtrip_arrays(path, commands, data):
    wire = b"".join(encode_command(*c) for c in commands)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=4)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    assert run(make_parser(path), chunks) == (commands, None)


def quote_inline(arg: bytes) -> bytes:
    """Redis inline quoting with every byte as a \\xHH escape."""
    return b'"' + b"".join(b"\\x%02x" % b for b in arg) + b'"'


@settings(max_examples=150, deadline=None)
@given(commands=st.lists(args_strategy, min_size=1, max_size=5))
def test_roundtrip_inline_quoted(commands):
    wire = b"".join(b" ".join(map(quote_inline, c)) + b"\r\n" for c in commands)
    assert run(make_parser("python"), [wire]) == (commands, None)


def test_encoders_exact_bytes():
    assert encode_simple("OK") == b"+OK\r\n"
    assert encode_error("ERR bad\r\nthing") == b"-ERR bad  thing\r\n"
    assert encode_integer(-12) == b":-12\r\n"
    assert encode_integer(True) == b":1\r\n"
    assert encode_bulk(b"a\r\n\x00\xff") == b"$5\r\na\r\n\x00\xff\r\n"
    assert encode_bulk("é") == b"$2\r\n\xc3\xa9\r\n"
    assert encode_bulk(b"") == b"$0\r\n\r\n"
    assert encode_bulk(None) == b"$-1\r\n"
    assert encode_array(None) == b"*-1\r\n"
    assert encode_array([]) == b"*0\r\n"
    nested = [b"a", 1, None, [SimpleString("OK"), ErrorReply("ERR x"), NIL_ARRAY], ()]
    assert encode_array(nested) == (
        b"*5\r\n$1\r\na\r\n:1\r\n$-1\r\n*3\r\n+OK\r\n-ERR x\r\n*-1\r\n*0\r\n"
    )
    assert encode_reply(SimpleString("PONG")) == b"+PONG\r\n"
    assert encode_command("SET", b"k", 10) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n10\r\n"
    with pytest.raises(ValueError):
        encode_simple("a\nb")
    with pytest.raises(TypeError):
        encode_reply(1.5)


reply_strategy = st.recursive(
    st.none() | st.integers(-(2**63), 2**63 - 1) | st.binary(max_size=30),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=12,
)


@pytest.mark.skipif(hiredis is None, reason="hiredis not installed")
@settings(max_examples=200, deadline=None)
@given(value=reply_strategy)
def test_encoded_replies_parse_back_with_hiredis(value):
    reader = hiredis.Reader()
    reader.feed(encode_reply(value))
    assert reader.gets() == value
    assert reader.gets() is False


FRAGMENTS = [
    PING,
    cmd(b"SET", b"k", b"v\r\n"),
    cmd(b"GET", b"x" * 30),
    b"PING\r\n",
    b"ECHO \"a\\x41\" 'b'\n",
    b"*2\r\n",
    b"*0\r\n",
    b"*-1\r\n",
    b"$3\r\n",
    b"$0\r\n\r\n",
    b"abc",
    b"\r\n",
    b"\n",
    b":1\r\n",
    b"+OK\r\n",
    b"*20000\r\n",
    b'"',
    b"$2000\r\n",
    b"\x00\xff",
]


@pytest.mark.skipif(hiredis is None, reason="hiredis not installed")
@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.sampled_from(FRAGMENTS), max_size=12), data=st.data())
def test_paths_and_chunkings_agree(parts, data):
    """Any mix of good and bad framing: both paths, whole or in random chunks, say the same."""
    wire = b"".join(parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    expected = run(make_parser("python"), [wire])
    assert run(make_parser("python"), chunks) == expected
    assert run(make_parser("hiredis"), [wire]) == expected
    assert run(make_parser("hiredis"), chunks) == expected
