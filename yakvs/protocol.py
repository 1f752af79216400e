"""Sans-IO codec for the yakvs wire protocol: bytes in, :class:`Request` out; :class:`Reply` in,
bytes out. No asyncio and no sockets here: the server and both clients share this module.

JSON lines, compatible with the Go original: one JSON object per line each way.
Request: ``{"op": "SET", "key": "k", "value": "v", "expires_in": 300000000000}`` (nanoseconds).
Reply: ``{"status": "success", "value": "v", "ttl": 299999000000}`` or
``{"status": "error", "code": "NOT_FOUND", "message": "Key not found"}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

import orjson

from yakvs.errors import (
    BadRequestError,
    KeyNotFoundError,
    UnknownCommandError,
    YakvsError,
    error_from_code,
)


class Op(StrEnum):
    SET = "SET"
    GET = "GET"
    DELETE = "DELETE"
    TTL = "TTL"
    STATUS = "STATUS"
    PING = "PING"
    EXISTS = "EXISTS"
    KEYS = "KEYS"
    # Redis-protocol commands (yakvs/redis/): reached only through RESP, never from JSON lines.
    # Their operands travel in Request.args; results come back in Reply.result.
    RSET = "RSET"  # key, value, expires_at; args = (cond "NX"|"XX"|"", get_old, keep_ttl)
    MSET = "MSET"  # args = (k1, v1, k2, v2, ...)
    DEL = "DEL"  # args = keys -> number removed
    # key, expires_at (None = PERSIST); args = (flag "NX"|"XX"|"GT"|"LT"|"",) -> 1 if set, else 0
    PEXPIREAT = "PEXPIREAT"
    FLUSH = "FLUSH"  # remove every key
    MGET = "MGET"  # args = keys -> list of values / None
    COUNT = "COUNT"  # args = keys -> how many exist (EXISTS k...)
    PTTL = "PTTL"  # key -> ms left, -1 no expiry, -2 missing
    SCAN = "SCAN"  # args = (cursor, glob pattern | None, count) -> (next cursor, keys)
    DBSIZE = "DBSIZE"  # -> number of keys


# The ops a JSON-lines request may name (the Go original's, plus STATUS/PING/EXISTS/KEYS).
JSON_OPS = (Op.SET, Op.GET, Op.DELETE, Op.TTL, Op.STATUS, Op.PING, Op.EXISTS, Op.KEYS)
REDIS_WRITE_OPS = frozenset({Op.RSET, Op.MSET, Op.DEL, Op.PEXPIREAT, Op.FLUSH})


class Consistency(StrEnum):
    LINEARIZABLE = "linearizable"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class Request:
    """One decoded request; the single definition shared by server and clients."""

    op: Op
    key: str = ""
    value: str = ""
    # Relative expiry in nanoseconds (Go's time.Duration), 0 = no expiry. The node that receives
    # the request turns it into an absolute time, so replicas never read their own clocks.
    expires_in: int = 0
    # KEYS only: prefix filter and the most keys to return (0 = server default).
    prefix: str = ""
    limit: int = 0
    # Reads only: overrides the server's default read consistency.
    consistency: Consistency | None = None
    # SET only: absolute expiry in epoch milliseconds, filled in by the server from expires_in
    # when the request arrives (never sent on the wire); None = no expiry.
    expires_at: int | None = None
    # Redis-protocol ops only: their further operands (see Op).
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply; ``ok`` False means an error with ``code`` and ``message``."""

    ok: bool = True
    value: str | None = None
    # Remaining time to live in nanoseconds, -1 = no expiry (GET and TTL).
    ttl: int | None = None
    code: str | None = None
    message: str | None = None
    # EXISTS
    exists: bool | None = None
    # KEYS
    keys: tuple[str, ...] | None = None
    # STATUS: {"mode", "version", "role", "leader", "members", "keys", ...}
    info: dict[str, Any] | None = None
    # NOT_LEADER: the leader's client address, when known.
    leader: str | None = None
    # Redis-protocol ops only: the command's result (int, str, list, tuple; see Op).
    result: Any = None


# A frozen dataclass's generated __init__ sets every field through object.__setattr__; on the
# server's hot path that was the largest single cost of decoding (~1 us a request). Setting the
# slots through their descriptors builds an identical, equal Request in about half the time.
_REQUEST_FIELDS = ("op", "key", "value", "expires_in", "prefix", "limit", "consistency")
assert tuple(f.name for f in fields(Request)) == (
    *_REQUEST_FIELDS,
    "expires_at",
    "args",
), "update _request"
_new = object.__new__
(
    _set_op,
    _set_key,
    _set_value,
    _set_expires_in,
    _set_prefix,
    _set_limit,
    _set_cons,
    _set_at,
    _set_args,
) = (Request.__dict__[f.name].__set__ for f in fields(Request))


def _request(
    op: Op, key: str, value: str = "", expires_in: int = 0, expires_at: int | None = None
) -> Request:
    request = _new(Request)
    _set_op(request, op)
    _set_key(request, key)
    _set_value(request, value)
    _set_expires_in(request, expires_in)
    _set_prefix(request, "")
    _set_limit(request, 0)
    _set_cons(request, None)
    _set_at(request, expires_at)
    _set_args(request, ())
    return request


# The Go original's messages, kept verbatim: its users may match on them.
MSG_NOT_FOUND = "Key not found"
MSG_NOT_FOUND_OR_EXPIRED = "Key not found or expired"
MSG_KEY_REQUIRED = "Key is required"
MSG_UNKNOWN_COMMAND = "Unknown command"
MSG_INVALID_FORMAT = "Invalid command format"

NS_PER_MS = 1_000_000
_dumps = orjson.dumps
# Longest accepted expires_in: ten years. Bounds absolute expiry times to sane epoch values and
# keeps every TTL within Go's int64 Duration.
MAX_EXPIRES_IN_NS = 10 * 366 * 24 * 3600 * 1_000_000_000
DEFAULT_MAX_LINE = 1 << 20

OK = Reply()
PONG = Reply(value="PONG")
OK_LINE = b'{"status":"success"}\n'

_OPS: dict[str, Op] = {op.value: op for op in JSON_OPS}
# Module constants: looking a member up on the enum class costs ~70 ns each time.
_SET, _KEYS = Op.SET, Op.KEYS
_KEYED = frozenset({Op.SET, Op.GET, Op.DELETE, Op.TTL, Op.EXISTS})
_CONSISTENCY: dict[str, Consistency] = {c.value: c for c in Consistency}
# Any request line is a JSON object, so a first line starting with an HTTP method is a browser,
# a health checker or curl that dialled the wrong port.
_HTTP_RE = re.compile(rb"\s*(GET|POST|PUT|HEAD|DELETE|OPTIONS|PATCH|CONNECT|TRACE|PRI) ")


def looks_like_http(data: bytes) -> bool:
    """True when the first bytes of a connection are an HTTP request line."""
    return _HTTP_RE.match(data) is not None


class LineBuffer:
    """Splits a byte stream into lines, never holding more than ``max_line`` bytes of one line.

    After an oversized line ``overflowed`` is set and nothing more is returned: the caller answers
    TOO_LARGE and closes, because the rest of the stream cannot be re-synchronised cheaply.
    """

    __slots__ = ("_max", "_parts", "overflowed", "pending")

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._max = max_line
        self._parts: list[bytes] = []
        self.pending = 0  # bytes of an unfinished line held
        self.overflowed = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the complete lines (without their newline) in order."""
        if self.overflowed:
            return []
        if not self._parts and data[-1:] == b"\n" and len(data) <= self._max:
            # The common case (whole requests per read): no line can be over the limit.
            lines = data.split(b"\n")
            lines.pop()
            return lines
        if b"\n" not in data:
            self.pending += len(data)
            if self.pending > self._max:
                self._overflow()
            else:
                self._parts.append(data)
            return []
        if self._parts:
            self._parts.append(data)
            data = b"".join(self._parts)
            self._parts.clear()
        lines = data.split(b"\n")
        tail = lines.pop()
        limit = self._max
        for i, line in enumerate(lines):
            if len(line) > limit:
                self._overflow()
                return lines[:i]
        if len(tail) > limit:
            self._overflow()
            return lines
        self.pending = len(tail)
        if tail:
            self._parts.append(tail)
        return lines

    def _overflow(self) -> None:
        self.overflowed = True
        self._parts.clear()
        self.pending = 0


def _bad(detail: str) -> BadRequestError:
    return BadRequestError(f"{MSG_INVALID_FORMAT}: {detail}")


def decode_request(line: bytes | str, now_ms: int | None = None) -> Request:
    """Parse one request line; raises :class:`BadRequestError` (or a subclass) when invalid.

    With ``now_ms`` (the server's clock when the line arrived) a SET's ``expires_in`` is also
    pinned to an absolute ``expires_at``.
    """
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise BadRequestError(MSG_INVALID_FORMAT) from None
    if type(obj) is not dict:
        raise _bad("expected a JSON object")
    return request_from_dict(obj, now_ms)


def request_from_dict(obj: dict[str, Any], now_ms: int | None = None) -> Request:
    """Validate a decoded JSON object into a :class:`Request`."""
    name = obj.get("op")
    if type(name) is not str:
        if name is None:
            raise UnknownCommandError(MSG_UNKNOWN_COMMAND)
        raise _bad("op must be a string")
    op = _OPS.get(name) or _OPS.get(name.upper())
    if op is None:
        raise UnknownCommandError(MSG_UNKNOWN_COMMAND)
    key = obj.get("key", "")
    if type(key) is not str:
        raise _bad("key must be a string")
    if not key and op in _KEYED:
        raise BadRequestError(MSG_KEY_REQUIRED)
    if op is _SET:
        value = obj.get("value", "")
        if type(value) is not str:
            raise _bad("value must be a string")
        expires_in = obj.get("expires_in", 0)
        if type(expires_in) is not int:
            raise _bad("expires_in must be an integer number of nanoseconds")
        if expires_in < 0 or expires_in > MAX_EXPIRES_IN_NS:
            raise _bad(f"expires_in must be between 0 and {MAX_EXPIRES_IN_NS} nanoseconds")
        if expires_in and now_ms is not None:
            # Sub-millisecond TTLs round up: a key set with a TTL must never live forever.
            expires_at = now_ms + max(1, expires_in // NS_PER_MS)
            return _request(op, key, value, expires_in, expires_at)
        return _request(op, key, value, expires_in)
    consistency = obj.get("consistency")
    if consistency is not None:
        consistency = _CONSISTENCY.get(consistency) if type(consistency) is str else None
        if consistency is None:
            raise _bad("consistency must be 'linearizable' or 'stale'")
    if op is _KEYS:
        prefix = obj.get("prefix", "")
        limit = obj.get("limit", 0)
        if type(prefix) is not str:
            raise _bad("prefix must be a string")
        if type(limit) is not int or limit < 0:
            raise _bad("limit must be a non-negative integer")
        return Request(op, prefix=prefix, limit=limit, consistency=consistency)
    if consistency is None:
        return _request(op, key)
    return Request(op, key, consistency=consistency)


# The server's hot path: a SET or GET in its plain form decodes to this tuple instead of a
# Request (building a frozen dataclass costs more than the rest of the decoding):
# (op, key, value, expires_in, expires_at) for SET, (op, key, "", 0, None) for GET.
FastRequest = tuple[Op, str, str, int, int | None]
_FAST_OPS: dict[str, Op] = {"SET": Op.SET, "GET": Op.GET}


def fast_request(obj: dict[str, Any], now_ms: int) -> FastRequest | Request:
    """:func:`request_from_dict`, but a :data:`FastRequest` for a plain, valid SET or GET.

    Anything unusual (other ops, lower case, a consistency, any invalid field) goes through
    request_from_dict, so validation and its errors have one definition.
    """
    name = obj.get("op")
    op = _FAST_OPS.get(name) if type(name) is str else None
    key = obj.get("key")
    if op is not None and type(key) is str and key:
        if op is _SET:
            value = obj.get("value", "")
            expires_in = obj.get("expires_in", 0)
            if type(value) is str and type(expires_in) is int:
                if expires_in == 0:
                    return (op, key, value, 0, None)
                if 0 < expires_in <= MAX_EXPIRES_IN_NS:
                    # As request_from_dict: sub-millisecond TTLs round up, never to "no expiry".
                    return (op, key, value, expires_in, now_ms + (expires_in // NS_PER_MS or 1))
        elif "consistency" not in obj:
            return (op, key, "", 0, None)
    return request_from_dict(obj, now_ms)


def to_request(item: FastRequest | Request) -> Request:
    """The Request a :data:`FastRequest` stands for (equal to what request_from_dict builds)."""
    if type(item) is not tuple:
        return item  # type: ignore[return-value]
    op, key, value, expires_in, expires_at = item
    return _request(op, key, value, expires_in, expires_at)


def with_expiry(request: Request, now_ms: int) -> Request:
    """Pin a SET's relative ``expires_in`` to an absolute epoch-ms expiry, as of ``now_ms``."""
    if request.expires_in <= 0:
        return request
    expires_at = now_ms + max(1, request.expires_in // NS_PER_MS)
    return Request(
        request.op, request.key, request.value, request.expires_in, expires_at=expires_at
    )


def encode_request(request: Request) -> bytes:
    """One request as a JSON line, the way the clients send it."""
    obj: dict[str, Any] = {"op": request.op.value}
    if request.key:
        obj["key"] = request.key
    if request.op is Op.SET:
        obj["value"] = request.value
        if request.expires_in:
            obj["expires_in"] = request.expires_in
    elif request.op is Op.KEYS:
        if request.prefix:
            obj["prefix"] = request.prefix
        if request.limit:
            obj["limit"] = request.limit
    if request.consistency is not None:
        obj["consistency"] = request.consistency.value
    return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)


def error_reply(exc: YakvsError) -> Reply:
    """The reply that carries ``exc`` over the wire."""
    leader = getattr(exc, "leader", None)
    return Reply(ok=False, code=exc.code, message=exc.message, leader=leader)


NOT_FOUND = error_reply(KeyNotFoundError(MSG_NOT_FOUND))
NOT_FOUND_OR_EXPIRED = error_reply(KeyNotFoundError(MSG_NOT_FOUND_OR_EXPIRED))


def encode_reply(reply: Reply) -> bytes:
    """One reply as a JSON line. Integers stay JSON integers: Go decodes ``ttl`` as an int64."""
    if reply is OK:
        return OK_LINE
    if reply.ok:
        obj: dict[str, Any] = {"status": "success"}
        if reply.value is not None:
            obj["value"] = reply.value
        if reply.ttl is not None:
            obj["ttl"] = reply.ttl
        if reply.exists is not None:
            obj["exists"] = reply.exists
        if reply.keys is not None:
            obj["keys"] = reply.keys
        if reply.info is not None:
            obj["info"] = reply.info
    else:
        obj = {"status": "error", "code": reply.code, "message": reply.message}
        if reply.leader is not None:
            obj["leader"] = reply.leader
    try:
        return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return _dumps_lossy(obj)


def encode_value_reply(value: str, ttl: int) -> bytes:
    """The line of ``Reply(value=value, ttl=ttl)``, without building the Reply (GET's hot path)."""
    # Byte for byte what encode_reply writes for it; formatting is faster than a dict dump.
    try:
        return b'{"status":"success","value":%b,"ttl":%d}\n' % (_dumps(value), ttl)
    except orjson.JSONEncodeError:  # bytes set over RESP that are not UTF-8
        return _dumps_lossy({"status": "success", "value": value, "ttl": ttl})


def to_valid_unicode(text: str) -> str:
    """``text`` with each byte that was not UTF-8 (a lone surrogate) replaced by U+FFFD.

    Keys and values set over RESP may be any bytes; they are kept as str decoded with
    ``surrogateescape``. JSON cannot carry lone surrogates, so a JSON-lines reply shows such a
    string lossily (as ``bytes.decode("utf-8", "replace")`` would); RESP returns the exact bytes.
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _lossy(item: Any) -> Any:
    if type(item) is str:
        try:
            return to_valid_unicode(item)
        except UnicodeEncodeError:  # a surrogate surrogateescape never makes (from JSON \ud800)
            return item.encode("utf-8", "replace").decode("utf-8")
    if isinstance(item, list | tuple):
        return [_lossy(x) for x in item]
    if isinstance(item, dict):
        return {k: _lossy(v) for k, v in item.items()}
    return item


def _dumps_lossy(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(_lossy(obj), option=orjson.OPT_APPEND_NEWLINE)


def encode_replies(replies: Iterable[Reply]) -> bytes:
    """Several replies as one buffer, so a pipelined batch is answered with one write."""
    return b"".join([encode_reply(r) for r in replies])


def decode_reply(line: bytes | str) -> Reply:
    """Parse one reply line (client side); raises :class:`BadRequestError` when it is garbage."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise BadRequestError("Malformed reply from server") from None
    if type(obj) is not dict:
        raise BadRequestError("Malformed reply from server")
    status = obj.get("status")
    if status == "success":
        keys = obj.get("keys")
        return Reply(
            ok=True,
            value=obj.get("value"),
            ttl=obj.get("ttl"),
            exists=obj.get("exists"),
            keys=tuple(keys) if keys is not None else None,
            info=obj.get("info"),
        )
    if status == "error":
        message = obj.get("message")
        code = obj.get("code")
        if code is None:
            # A server speaking the Go original's dialect sends no code; its messages are fixed.
            code = KeyNotFoundError.code if message and "not found" in message else "ERROR"
        return Reply(ok=False, code=code, message=message, leader=obj.get("leader"))
    raise BadRequestError("Malformed reply from server")


def raise_for_error(reply: Reply) -> Reply:
    """Return ``reply`` when it succeeded; raise the typed error its code stands for otherwise."""
    if reply.ok:
        return reply
    raise error_from_code(reply.code, reply.message, leader=reply.leader)


__all__ = [
    "DEFAULT_MAX_LINE",
    "JSON_OPS",
    "MAX_EXPIRES_IN_NS",
    "NOT_FOUND",
    "NOT_FOUND_OR_EXPIRED",
    "OK",
    "OK_LINE",
    "PONG",
    "REDIS_WRITE_OPS",
    "Consistency",
    "FastRequest",
    "LineBuffer",
    "Op",
    "Reply",
    "Request",
    "decode_reply",
    "decode_request",
    "encode_replies",
    "encode_reply",
    "encode_request",
    "encode_value_reply",
    "error_reply",
    "fast_request",
    "looks_like_http",
    "raise_for_error",
    "request_from_dict",
    "to_request",
    "to_valid_unicode",
    "with_expiry",
]
