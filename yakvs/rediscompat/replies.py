"""Reply bytes for the command layer: binary-safe bulks of surrogateescape'd str, errors.

Keys and values arrive as bytes and are kept as ``str`` decoded with ``surrogateescape``, so any
byte sequence round-trips: encoding back with the same error handler gives the exact bytes.

RESP2 by default; after ``HELLO 3`` a connection gets the RESP3 forms Redis 7 sends for our
commands: ``_`` for every null, ``%`` maps, ``~`` sets and ``=`` verbatim text. The few helpers
that differ take the null to use (``NIL`` or ``NULL3``) or the protocol version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from yakvs.protocol import Reply

OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
NIL = b"$-1\r\n"
NULL3 = b"_\r\n"  # RESP3's one null, for a missing bulk and a missing array alike
EMPTY_ARRAY = b"*0\r\n"
NOT_INTEGER = b"-ERR value is not an integer or out of range\r\n"
SYNTAX = b"-ERR syntax error\r\n"


def text(arg: bytes) -> str:
    """A RESP argument as the str the store keeps (any bytes, losslessly)."""
    return arg.decode("utf-8", "surrogateescape")


def raw(value: str) -> bytes:
    """The bytes a stored str stands for (inverse of :func:`text`)."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate from JSON ("\ud800") that stands for no byte
        return value.encode("utf-8", "replace")


def bulk(value: str | None) -> bytes:
    if value is None:
        return NIL
    data = raw(value)
    return b"$%d\r\n%b\r\n" % (len(data), data)


def bulk_bytes(data: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(data), data)


def integer(value: int) -> bytes:
    return b":%d\r\n" % value


def array(items: Sequence[str | None], nil: bytes = NIL) -> bytes:
    return b"*%d\r\n" % len(items) + b"".join(
        [nil if item is None else bulk(item) for item in items]
    )


def verbatim(body: str, resp: int) -> bytes:
    """Text for humans (INFO, CLIENT LIST): a bulk in RESP2, a ``=`` verbatim ``txt`` in RESP3."""
    if resp == 2:
        return bulk(body)
    data = raw(body)
    return b"=%d\r\ntxt:%b\r\n" % (len(data) + 4, data)


def map_header(pairs: int, resp: int) -> bytes:
    """A map of ``pairs`` entries: ``%n`` in RESP3, a flat array of 2n items in RESP2."""
    return b"%%%d\r\n" % pairs if resp == 3 else b"*%d\r\n" % (2 * pairs)


def error(message: str) -> bytes:
    """``-message``; CR/LF become spaces, as Redis's addReplyError does."""
    data = raw(message).replace(b"\r", b" ").replace(b"\n", b" ")
    return b"-" + data + b"\r\n"


def wrong_arity(name: str) -> bytes:
    return error(f"ERR wrong number of arguments for '{name}' command")


def unknown_command(argv: list[bytes]) -> bytes:
    """Redis 7's exact text: the name and the first arguments, quoted, up to ~128 bytes."""
    args = b""
    for arg in argv[1:]:
        if len(args) >= 128:
            break
        args += b"'" + arg[: 128 - len(args)] + b"' "
    name = argv[0][:128]
    message = b"ERR unknown command '" + name + b"', with args beginning with: " + args
    return b"-" + message.replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n"


def backend_error(reply: Reply) -> bytes:
    """A failed yakvs reply as a RESP error; the code is kept so it can be told apart."""
    return error(f"ERR {reply.message} ({reply.code})")


def flat_map(pairs: dict[str, Any], resp: int = 2) -> bytes:
    """A map of names to str/int/list values (HELLO's reply, CONFIG GET's); see map_header."""
    parts = [map_header(len(pairs), resp)]
    for name, value in pairs.items():
        parts.append(bulk(name))
        if isinstance(value, int):
            parts.append(integer(value))
        elif isinstance(value, list):
            parts.append(array(value))
        else:
            parts.append(bulk(str(value)))
    return b"".join(parts)
