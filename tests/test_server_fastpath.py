"""The server's fast paths (one request per read, whole pipelined reads) answer every line
exactly as the general path does, bad lines included."""

from __future__ import annotations

import time

LINES = [
    b'{"op":"SET","key":"k","value":"v1"}',
    b'{"op":"GET","key":"k"}',
    b"not json",
    b"[1, 2]",
    b'"a string"',
    b'{"op":"SET","key":"","value":"v"}',
    b'{"op":"SET","key":"k","value":5}',
    b'{"op":"SET","key":"k","value":"v","expires_in":-1}',
    b'{"op":"SET","key":"k","value":"v","expires_in":1.5}',
    b'{"op":"set","key":"k","value":"v2"}',
    b'{"op":"GET","key":"k","consistency":"stale"}',
    b'{"op":"GET","key":"k","consistency":"bogus"}',
    b'{"op":"NOPE","key":"k"}',
    b'{"op":["SET"],"key":"k"}',
    b'{"op":"SET","key":"s","value":"\\ud800"}',
    b'{"op":"SET","key":"t","value":"v","expires_in":60000000000}',
    b'{"op":"DELETE","key":"k"}',
    b'{"op":"GET","key":"k"}',
    b'{"op":"TTL","key":"t"}',
]


def _normalise(reply: dict) -> dict:
    if reply.get("ttl", -1) > 0:
        reply["ttl"] = "positive"  # depends on the clock
    return reply


def _one_by_one(wire) -> list[dict]:
    wire.call({"op": "PING"})  # past the connection's first read (the HTTP sniffing)
    out = []
    for line in LINES:
        wire.send(line + b"\n")
        out.append(_normalise(wire.reply()))
    return out


def test_one_request_per_read_answers_as_a_pipelined_read(wire_factory):
    single = _one_by_one(wire_factory())
    pipelined_wire = wire_factory()
    pipelined_wire.call({"op": "SET", "key": "k", "value": "reset"})
    pipelined_wire.call({"op": "DELETE", "key": "t"})
    pipelined_wire.send(b"\n".join(LINES) + b"\n")
    pipelined = [_normalise(pipelined_wire.reply()) for _ in LINES]
    assert single == pipelined
    codes = [r.get("code", r["status"]) for r in single]
    assert codes.count("BAD_REQUEST") >= 8  # the bad lines were answered, not skipped
    assert single[1] == {"status": "success", "value": "v1", "ttl": -1}
    assert single[-2] == {
        "status": "error",
        "code": "NOT_FOUND",
        "message": "Key not found or expired",
    }


def test_a_blank_line_alone_gets_no_reply(wire):
    wire.call({"op": "PING"})
    wire.send(b"\n")
    time.sleep(0.05)
    assert wire.call({"op": "PING"}) == {"status": "success", "value": "PONG"}
