"""RESP2 reply encoders (and :func:`encode_command`, the form clients send requests in)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias


@dataclass(frozen=True, slots=True)
class SimpleString:
    """A ``+`` status reply such as ``+OK`` (must not contain CR or LF)."""

    value: str


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """A ``-`` error reply; ``message`` starts with the error kind, e.g. ``ERR ...``."""

    message: str


class _NilArray:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NIL_ARRAY"


NIL_ARRAY: Final = _NilArray()  # encodes as *-1 (a plain None is the nil bulk string $-1)

RespValue: TypeAlias = (
    "SimpleString | ErrorReply | int | bytes | str | _NilArray | Sequence[RespValue] | None"
)


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def encode_simple(value: str | bytes) -> bytes:
    data = _as_bytes(value)
    if b"\r" in data or b"\n" in data:
        raise ValueError("a RESP simple string cannot contain CR or LF")
    return b"+" + data + b"\r\n"


def encode_error(message: str | bytes) -> bytes:
    """``-message``; CR/LF become spaces as in Redis, so the reply stays one line."""
    data = _as_bytes(message).replace(b"\r", b" ").replace(b"\n", b" ")
    return b"-" + data + b"\r\n"


def encode_integer(value: int) -> bytes:
    return b":%d\r\n" % value


def encode_bulk(value: bytes | str | None) -> bytes:
    """``$n`` bulk string, binary-safe; None is the nil bulk ``$-1``. str is sent as UTF-8."""
    if value is None:
        return b"$-1\r\n"
    data = _as_bytes(value)
    return b"$%d\r\n%b\r\n" % (len(data), data)


def encode_array(items: Sequence[RespValue] | None) -> bytes:
    """``*n`` followed by each item (nested arrays allowed); None is the nil array ``*-1``."""
    if items is None:
        return b"*-1\r\n"
    parts = [b"*%d\r\n" % len(items)]
    parts.extend(encode_reply(item) for item in items)
    return b"".join(parts)


def encode_reply(value: RespValue) -> bytes:
    """Encode a Python value: bytes/str -> bulk, int -> integer, None -> nil bulk, list -> array."""
    if isinstance(value, bytes | str):
        return encode_bulk(value)
    if isinstance(value, int):
        return encode_integer(value)
    if value is None:
        return encode_bulk(None)
    if isinstance(value, SimpleString):
        return encode_simple(value.value)
    if isinstance(value, ErrorReply):
        return encode_error(value.message)
    if value is NIL_ARRAY:
        return b"*-1\r\n"
    if isinstance(value, list | tuple):
        return encode_array(value)
    raise TypeError(f"cannot encode {type(value).__name__} as RESP")


def encode_command(*args: bytes | str | int) -> bytes:
    """A request as an array of bulk strings, the form redis-cli and client libraries send."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = b"%d" % arg if isinstance(arg, int) else _as_bytes(arg)
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)
