"""Redis commands -> yakvs requests, with Redis 7's argument checks and error texts.

:func:`dispatch` turns one command (a list of byte strings from :mod:`yakvs.resp`) into either
reply bytes at once (PING, ECHO, errors, ...) or a :class:`Call`: a :class:`~yakvs.protocol.Request`
for the backend plus the function that turns its Reply into RESP bytes. Nothing here touches a
store, so standalone and cluster share every check; the semantics of writes (NX/XX/GET, expiry)
are decided by the backend, inside the replicated apply in a cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from yakvs._expiry import MAX_EXPIRES_AT
from yakvs.errors import KeyNotFoundError
from yakvs.protocol import Op, Reply, Request, _request
from yakvs.rediscompat import admin
from yakvs.rediscompat.replies import (
    NIL,
    NOT_INTEGER,
    NULL3,
    OK,
    PONG,
    SYNTAX,
    array,
    backend_error,
    bulk,
    bulk_bytes,
    error,
    integer,
    text,
    unknown_command,
    wrong_arity,
)
from yakvs.resp._parse import _string2ll

if TYPE_CHECKING:
    from yakvs.rediscompat.admin import Session

Format = Callable[[Reply], bytes]
_NOT_FOUND: Final = KeyNotFoundError.code
# yakvs keys are never empty (Redis allows ""): writes of "" are refused here, before either
# backend sees them, so standalone and cluster agree and an MSET is refused as a whole; EXPIRE
# and PERSIST of "" answer 0, as for any missing key.
_KEY_REQUIRED: Final = error("ERR Key is required (BAD_REQUEST)")
_ZERO: Final = b":0\r\n"
_LLONG_MAX: Final = 2**63 - 1


class Call:
    """A command that needs the backend: run ``request``, answer ``format(reply)``."""

    __slots__ = ("format", "request")

    def __init__(self, request: Request, format: Format) -> None:
        self.request = request
        self.format = format


class Quit:
    """QUIT: answer +OK, then close the connection."""


QUIT: Final = Quit()
Planned = bytes | Call | Quit


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _int(arg: bytes) -> int | None:
    return _string2ll(arg)


# --- reply formatters (Reply -> bytes) ------------------------------------------------------


def _checked(fmt: Format) -> Format:
    def run(reply: Reply) -> bytes:
        return fmt(reply) if reply.ok else backend_error(reply)

    return run


def _nil_formatters(nil: bytes) -> tuple[Format, Format, Format, Format]:
    """GET's, SET's, SET ... GET's and MGET's formatters answering a null as ``nil``."""

    def get(reply: Reply) -> bytes:
        if reply.ok:
            return bulk(reply.value)
        return nil if reply.code == _NOT_FOUND else backend_error(reply)

    def set_plain(reply: Reply) -> bytes:
        return OK if reply.result[0] else nil

    def set_get(reply: Reply) -> bytes:
        old = reply.result[1]
        return nil if old is None else bulk(old)

    def mget(reply: Reply) -> bytes:
        return array(reply.result, nil)

    return get, _checked(set_plain), _checked(set_get), _checked(mget)


# Indexed by the connection's protocol version (2 or 3): RESP2 and RESP3 nulls.
_FMT_GET, _FMT_SET, _FMT_SET_GET, _FMT_MGET = (
    {2: fmt2, 3: fmt3}
    for fmt2, fmt3 in zip(_nil_formatters(NIL), _nil_formatters(NULL3), strict=True)
)


def _fmt_ok(reply: Reply) -> bytes:
    return OK if reply.ok else backend_error(reply)


_fmt_int = _checked(lambda r: integer(r.result))


def _fmt_scan(reply: Reply) -> bytes:
    cursor, keys = reply.result
    return b"*2\r\n" + bulk_bytes(b"%d" % cursor) + array(keys)


def _fmt_keys(reply: Reply) -> bytes:
    return array(reply.result[1])


def _fmt_ttl(reply: Reply) -> bytes:
    ms = reply.result
    return integer(ms if ms < 0 else (ms + 500) // 1000)


# --- commands ---------------------------------------------------------------------------------


def _ping(argv: list[bytes], session: Session) -> Planned:
    if len(argv) > 2:
        return wrong_arity("ping")
    return PONG if len(argv) == 1 else bulk_bytes(argv[1])


def _echo(argv: list[bytes], session: Session) -> Planned:
    return bulk_bytes(argv[1])


def _get(argv: list[bytes], session: Session) -> Planned:
    return Call(_request(Op.GET, text(argv[1])), _FMT_GET[session.resp])


def _set(argv: list[bytes], session: Session) -> Planned:
    key, value = text(argv[1]), text(argv[2])
    if len(argv) == 3 and key:
        return Call(_request(Op.SET, key, value), _fmt_ok)
    cond, get_old, keep_ttl = "", False, False
    unit: bytes | None = None
    amount = b""
    i = 3
    while i < len(argv):
        opt = argv[i].lower()
        has_next = i + 1 < len(argv)
        if opt == b"nx" and cond != "XX":
            cond = "NX"
        elif opt == b"xx" and cond != "NX":
            cond = "XX"
        elif opt == b"get":
            get_old = True
        elif opt == b"keepttl" and unit is None:
            keep_ttl = True
        elif opt in (b"ex", b"px", b"exat", b"pxat") and not keep_ttl and unit is None and has_next:
            unit, amount = opt, argv[i + 1]
            i += 1
        else:
            return SYNTAX
        i += 1
    expires_at: int | None = None
    if unit is not None:
        found = _set_expiry(unit, amount)
        if isinstance(found, bytes):
            return found
        expires_at = found
    if not key:
        return _KEY_REQUIRED
    request = Request(
        Op.RSET, key, value, expires_at=expires_at, args=(cond, get_old, keep_ttl)
    )
    return Call(request, (_FMT_SET_GET if get_old else _FMT_SET)[session.resp])


def _set_expiry(unit: bytes, amount: bytes) -> int | bytes:
    """SET's EX/PX/EXAT/PXAT operand as an absolute epoch ms, or the error reply."""
    n = _int(amount)
    if n is None:
        return NOT_INTEGER
    invalid = error("ERR invalid expire time in 'set' command")
    if n <= 0:
        return invalid
    if unit in (b"ex", b"exat"):
        if n > _LLONG_MAX // 1000:
            return invalid
        n *= 1000
    at = n if unit in (b"exat", b"pxat") else _now_ms() + n
    # The store keeps expiries up to the year 9999; Redis would take later ones.
    return invalid if at > MAX_EXPIRES_AT else at


def _expire_flag(options: list[bytes]) -> str | bytes:
    """EXPIRE's NX/XX/GT/LT as one flag ("" for none), or the error reply (Redis 7's texts)."""
    flags: set[str] = set()
    for opt in options:
        name = opt.upper()
        if name not in (b"NX", b"XX", b"GT", b"LT"):
            return error(f"ERR Unsupported option {text(opt)}")
        flags.add(name.decode())
    if "NX" in flags and len(flags) > 1:
        return error("ERR NX and XX, GT or LT options at the same time are not compatible")
    if {"GT", "LT"} <= flags:
        return error("ERR GT and LT options at the same time are not compatible")
    if "XX" in flags and "GT" in flags:
        flags.discard("XX")  # GT already needs an existing expiry
    # "XXLT": an existing expiry that the new one is below (LT alone also takes keys without).
    return "".join(sorted(flags, key=lambda f: f != "XX"))


def _expire_generic(argv: list[bytes], name: str, unit_ms: int) -> Planned:
    flag = _expire_flag(argv[3:])
    if isinstance(flag, bytes):
        return flag
    n = _int(argv[2])
    if n is None:
        return NOT_INTEGER
    invalid = error(f"ERR invalid expire time in '{name}' command")
    if n > _LLONG_MAX // unit_ms or n < -(_LLONG_MAX // unit_ms):
        return invalid
    at = _now_ms() + n * unit_ms
    if at > MAX_EXPIRES_AT:
        return invalid
    if not argv[1]:
        return _ZERO
    # An expiry at or before now deletes the key, as in Redis (the backend compares).
    request = Request(Op.PEXPIREAT, text(argv[1]), expires_at=max(at, 0), args=(flag,))
    return Call(request, _fmt_int)


def _expire(argv: list[bytes], session: Session) -> Planned:
    return _expire_generic(argv, "expire", 1000)


def _pexpire(argv: list[bytes], session: Session) -> Planned:
    return _expire_generic(argv, "pexpire", 1)


def _persist(argv: list[bytes], session: Session) -> Planned:
    if not argv[1]:
        return _ZERO
    return Call(Request(Op.PEXPIREAT, text(argv[1])), _fmt_int)


def _ttl(argv: list[bytes], session: Session) -> Planned:
    return Call(Request(Op.PTTL, text(argv[1])), _checked(_fmt_ttl))


def _pttl(argv: list[bytes], session: Session) -> Planned:
    return Call(Request(Op.PTTL, text(argv[1])), _fmt_int)


def _keys_args(argv: list[bytes]) -> tuple[str, ...]:
    return tuple(text(a) for a in argv[1:])


def _del(argv: list[bytes], session: Session) -> Planned:
    return Call(Request(Op.DEL, args=_keys_args(argv)), _fmt_int)


def _exists(argv: list[bytes], session: Session) -> Planned:
    return Call(Request(Op.COUNT, args=_keys_args(argv)), _fmt_int)


def _mget(argv: list[bytes], session: Session) -> Planned:
    return Call(Request(Op.MGET, args=_keys_args(argv)), _FMT_MGET[session.resp])


def _mset(argv: list[bytes], session: Session) -> Planned:
    if len(argv) % 2 == 0:
        return wrong_arity("mset")
    if not all(argv[1::2]):
        return _KEY_REQUIRED
    return Call(Request(Op.MSET, args=_keys_args(argv)), _fmt_ok)


def _keys(argv: list[bytes], session: Session) -> Planned:
    return Call(Request(Op.SCAN, args=(0, text(argv[1]), 0)), _checked(_fmt_keys))


def _scan(argv: list[bytes], session: Session) -> Planned:
    cursor = _int(argv[1])
    if cursor is None or cursor < 0:
        return error("ERR invalid cursor")
    pattern: str | None = None
    count = 10
    i = 2
    while i < len(argv):
        opt = argv[i].lower()
        if i + 1 >= len(argv):
            return SYNTAX
        if opt == b"match":
            pattern = text(argv[i + 1])
        elif opt == b"count":
            n = _int(argv[i + 1])
            if n is None:
                return NOT_INTEGER
            if n < 1:
                return SYNTAX
            count = n
        elif opt == b"type":
            if argv[i + 1].lower() != b"string":
                return b"*2\r\n$1\r\n0\r\n*0\r\n"  # every yakvs value is a string
        else:
            return SYNTAX
        i += 2
    return Call(Request(Op.SCAN, args=(cursor, pattern, count)), _checked(_fmt_scan))


def _dbsize(argv: list[bytes], session: Session) -> Planned:
    return Call(Request(Op.DBSIZE), _fmt_int)


def _flush(argv: list[bytes], session: Session) -> Planned:
    if len(argv) > 2 or (len(argv) == 2 and argv[1].lower() not in (b"async", b"sync")):
        return SYNTAX
    return Call(Request(Op.FLUSH), _fmt_ok)


def _select(argv: list[bytes], session: Session) -> Planned:
    n = _int(argv[1])
    if n is None:
        return NOT_INTEGER
    return OK if n == 0 else error("ERR DB index is out of range")


def _quit(argv: list[bytes], session: Session) -> Planned:
    return QUIT


def _info(argv: list[bytes], session: Session) -> Planned:
    sections = [text(a).lower() for a in argv[1:]]
    return Call(Request(Op.STATUS), lambda reply: admin.info(reply, session, sections))


def _hello(argv: list[bytes], session: Session) -> Planned:
    return admin.hello(argv, session)


def _client(argv: list[bytes], session: Session) -> Planned:
    return admin.client(argv, session)


def _command(argv: list[bytes], session: Session) -> Planned:
    return admin.command(argv, COMMANDS, session.resp)


def _config(argv: list[bytes], session: Session) -> Planned:
    return admin.config(argv, session.resp)


# name -> (Redis arity: n exact, -n at least n, counting the name; handler)
Handler = Callable[[list[bytes], "Session"], Planned]
COMMANDS: Final[dict[bytes, tuple[int, Handler]]] = {
    b"ping": (-1, _ping),
    b"echo": (2, _echo),
    b"get": (2, _get),
    b"set": (-3, _set),
    b"del": (-2, _del),
    b"unlink": (-2, _del),
    b"exists": (-2, _exists),
    b"expire": (-3, _expire),
    b"pexpire": (-3, _pexpire),
    b"persist": (2, _persist),
    b"ttl": (2, _ttl),
    b"pttl": (2, _pttl),
    b"mget": (-2, _mget),
    b"mset": (-3, _mset),
    b"keys": (2, _keys),
    b"scan": (-2, _scan),
    b"dbsize": (1, _dbsize),
    b"flushall": (-1, _flush),
    b"flushdb": (-1, _flush),
    b"select": (2, _select),
    b"quit": (-1, _quit),
    b"info": (-1, _info),
    b"hello": (-1, _hello),
    b"client": (-2, _client),
    b"command": (-1, _command),
    b"config": (-2, _config),
}


def dispatch(argv: list[bytes], session: Session) -> Planned:
    """Plan one command: reply bytes now, a backend Call, or QUIT."""
    name = argv[0].lower()
    entry = COMMANDS.get(name)
    if entry is None:
        return unknown_command(argv)
    arity, handler = entry
    if (arity > 0 and len(argv) != arity) or len(argv) < -arity:
        return wrong_arity(name.decode("ascii"))
    return handler(argv, session)
