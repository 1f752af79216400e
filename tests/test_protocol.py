"""The sans-IO codec on bytes alone: no sockets, no event loop."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yakvs.errors import BadRequestError, TooLargeError, UnknownCommandError
from yakvs.protocol import (
    MAX_EXPIRES_IN_NS,
    NOT_FOUND,
    OK,
    Consistency,
    LineBuffer,
    Op,
    Reply,
    Request,
    decode_reply,
    decode_request,
    encode_replies,
    encode_reply,
    encode_request,
    error_reply,
    looks_like_http,
)

GO_SET = b'{"op":"SET","key":"k","value":"v","expires_in":300000000000}\n'
STREAM = (
    GO_SET
    + b'{"op":"get","key":"k"}\n'
    + '{"op":"SET","key":"ключ \\n","value":"\\u0000 ☃"}\n'.encode()
    + b'{"op":"KEYS","prefix":"a","limit":3}\n'
)


def _decode_stream(chunks: list[bytes]) -> list[Request]:
    buf = LineBuffer(1024)
    out: list[Request] = []
    for chunk in chunks:
        out += [decode_request(line) for line in buf.feed(chunk)]
    assert buf.pending == 0
    return out


def test_split_at_every_byte_boundary():
    whole = _decode_stream([STREAM])
    assert [r.op for r in whole] == [Op.SET, Op.GET, Op.SET, Op.KEYS]
    assert whole[2].key == "ключ \n" and whole[2].value == "\x00 ☃"
    for i in range(len(STREAM) + 1):
        assert _decode_stream([STREAM[:i], STREAM[i:]]) == whole, i
    # one byte at a time, the worst case for a reassembling reader
    assert _decode_stream([STREAM[i : i + 1] for i in range(len(STREAM))]) == whole


def test_replies_split_at_every_byte_boundary():
    replies = [
        OK,
        Reply(value="v\n☃", ttl=5),
        NOT_FOUND,
        Reply(keys=("a", "b")),
        Reply(exists=True),
    ]
    data = encode_replies(replies)
    for i in range(len(data) + 1):
        buf = LineBuffer(1 << 20)
        lines = buf.feed(data[:i]) + buf.feed(data[i:])
        assert [decode_reply(line) for line in lines] == replies


def test_go_client_bytes_decode():
    req = decode_request(GO_SET.rstrip(b"\n"))
    assert req == Request(Op.SET, "k", "v", 300_000_000_000)


def test_expires_at_is_pinned_from_arrival_clock():
    req = decode_request(GO_SET, now_ms=1_000)
    assert req.expires_at == 1_000 + 300_000
    assert decode_request(b'{"op":"SET","key":"k","value":"v"}', now_ms=5).expires_at is None
    # a TTL below one millisecond still expires (rounded up), it never means "forever"
    tiny = decode_request(b'{"op":"SET","key":"k","value":"v","expires_in":1}', now_ms=5)
    assert tiny.expires_at == 6


def test_replies_decode_as_go_struct_would():
    # Go: struct{Status, Message, Value string; TTL time.Duration}: ttl must be a JSON integer.
    line = encode_reply(Reply(value="v", ttl=299_999_000_000))
    assert line == b'{"status":"success","value":"v","ttl":299999000000}\n'
    obj = orjson.loads(line)
    assert type(obj["ttl"]) is int
    assert encode_reply(Reply(value="v", ttl=-1)) == b'{"status":"success","value":"v","ttl":-1}\n'
    assert encode_reply(OK) == b'{"status":"success"}\n'
    err = orjson.loads(encode_reply(NOT_FOUND))
    assert err == {"status": "error", "code": "NOT_FOUND", "message": "Key not found"}


def test_op_is_case_insensitive():
    for spelling in ("get", "Get", "GET", "gEt"):
        assert decode_request(f'{{"op":"{spelling}","key":"k"}}'.encode()).op is Op.GET


@pytest.mark.parametrize(
    ("line", "error", "message"),
    [
        (b"not json", BadRequestError, "Invalid command format"),
        (b"\xff\xfe{}", BadRequestError, "Invalid command format"),
        (b'{"op":"GET","key":"\xc3"}', BadRequestError, "Invalid command format"),
        (b"[1,2]", BadRequestError, "expected a JSON object"),
        (b"42", BadRequestError, "expected a JSON object"),
        (b'"SET"', BadRequestError, "expected a JSON object"),
        (b"null", BadRequestError, "expected a JSON object"),
        (b"[" * 5000 + b"]" * 5000, BadRequestError, "Invalid command format"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, BadRequestError, "Invalid command format"),
        (b'{"op":"FLY","key":"k"}', UnknownCommandError, "Unknown command"),
        (b'{"key":"k"}', UnknownCommandError, "Unknown command"),
        (b'{"op":7}', BadRequestError, "op must be a string"),
        (b'{"op":"GET"}', BadRequestError, "Key is required"),
        (b'{"op":"SET","key":"","value":"v"}', BadRequestError, "Key is required"),
        (b'{"op":"DELETE","key":5}', BadRequestError, "key must be a string"),
        (b'{"op":"SET","key":"k","value":5}', BadRequestError, "value must be a string"),
        (b'{"op":"SET","key":"k","value":null}', BadRequestError, "value must be a string"),
        (b'{"op":"SET","key":"k","value":"v","expires_in":-1}', BadRequestError, "between 0"),
        (b'{"op":"SET","key":"k","value":"v","expires_in":1.5}', BadRequestError, "integer"),
        (b'{"op":"SET","key":"k","value":"v","expires_in":3e11}', BadRequestError, "integer"),
        (b'{"op":"SET","key":"k","value":"v","expires_in":"5s"}', BadRequestError, "integer"),
        (b'{"op":"SET","key":"k","value":"v","expires_in":true}', BadRequestError, "integer"),
        (
            b'{"op":"SET","key":"k","value":"v","expires_in":%d}' % (MAX_EXPIRES_IN_NS + 1),
            BadRequestError,
            "between 0",
        ),
        (
            b'{"op":"SET","key":"k","value":"v","expires_in":99999999999999999999999}',
            BadRequestError,
            "",
        ),
        (b'{"op":"KEYS","limit":-1}', BadRequestError, "limit"),
        (b'{"op":"KEYS","prefix":1}', BadRequestError, "prefix"),
        (b'{"op":"GET","key":"k","consistency":"eventual"}', BadRequestError, "consistency"),
    ],
)
def test_bad_requests(line, error, message):
    with pytest.raises(error) as info:
        decode_request(line)
    assert type(info.value) is error
    assert message in info.value.message
    reply = error_reply(info.value)
    assert not reply.ok and reply.code == error.code


def test_optional_fields():
    req = decode_request(b'{"op":"get","key":"k","consistency":"stale","extra":[1]}')
    assert req.consistency is Consistency.STALE
    keys = decode_request(b'{"op":"KEYS","prefix":"user:","limit":10}')
    assert (keys.prefix, keys.limit) == ("user:", 10)


def test_line_buffer_refuses_oversized_lines():
    buf = LineBuffer(10)
    assert buf.feed(b"0123456789") == []
    assert not buf.overflowed
    assert buf.feed(b"x") == [] and buf.overflowed  # a line that never ends stops here
    assert buf.pending == 0  # and nothing of it is kept
    buf = LineBuffer(10)
    assert buf.feed(b"ok\n" + b"y" * 11 + b"\nlater\n") == [b"ok"]
    assert buf.overflowed and buf.feed(b"more\n") == []
    assert TooLargeError.code == "TOO_LARGE"


def test_line_buffer_memory_is_bounded_for_endless_line():
    buf = LineBuffer(1 << 16)
    for _ in range(100):
        buf.feed(b"z" * 4096)
        assert buf.pending <= 1 << 16
    assert buf.overflowed


def test_http_is_recognised():
    assert looks_like_http(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert looks_like_http(b"POST /join HTTP/1.1\r\n")
    assert looks_like_http(b"PRI * HTTP/2.0\r\n")
    assert not looks_like_http(b'{"op":"GET","key":"k"}\n')
    assert not looks_like_http(b"GETX")


def test_encode_request_round_trip():
    reqs = [
        Request(Op.SET, "k", "v", 5),
        Request(Op.SET, "k", ""),
        Request(Op.GET, "k", consistency=Consistency.STALE),
        Request(Op.KEYS, prefix="p", limit=3),
        Request(Op.PING),
        Request(Op.STATUS),
    ]
    for req in reqs:
        assert decode_request(encode_request(req)) == req


def test_decode_reply_of_go_server_without_code():
    reply = decode_reply(b'{"status":"error","message":"Key not found or expired"}')
    assert reply.code == "NOT_FOUND"
    with pytest.raises(BadRequestError):
        decode_reply(b"garbage")


@settings(max_examples=200, deadline=None)
@given(
    key=st.text(min_size=1, max_size=50),
    value=st.text(max_size=200),
    ttl=st.integers(min_value=0, max_value=MAX_EXPIRES_IN_NS),
    cut=st.integers(min_value=0, max_value=400),
)
def test_any_unicode_round_trips(key, value, ttl, cut):
    try:
        data = encode_request(Request(Op.SET, key, value, ttl))
    except TypeError:  # orjson refuses lone surrogates; such strings never reach the wire
        return
    cut = min(cut, len(data))
    buf = LineBuffer(1 << 20)
    lines = buf.feed(data[:cut]) + buf.feed(data[cut:])
    assert lines and decode_request(lines[0]) == Request(Op.SET, key, value, ttl)
    reply = Reply(value=value, ttl=ttl or -1)
    assert decode_reply(encode_reply(reply)) == reply
