"""Which protocol a connection speaks, from its first bytes: JSON lines, RESP, or stray HTTP."""

from __future__ import annotations

import re
from typing import Final, Literal

from yakvs.protocol import looks_like_http

# A full HTTP request line. "GET key" alone is a Redis inline command, so the method is not enough.
_REQUEST_LINE: Final = re.compile(rb"[A-Z]+ \S+ HTTP/[0-9]")
_HTTP_METHOD: Final = re.compile(rb"(GET|POST|PUT|HEAD|DELETE|OPTIONS|PATCH|CONNECT|TRACE|PRI) ")
# How long to wait for the newline of a line that starts like HTTP (an inline command is at most
# 64 KiB, so a longer one is not worth holding).
_MAX_HELD: Final = 8192

Kind = Literal["json", "resp", "http"]


def sniff(data: bytes) -> Kind | None:
    """``json``, ``resp``, ``http``, or None when more bytes are needed to tell.

    ``{`` (or anything not a letter or ``*``) keeps the JSON-lines protocol, as before; ``*`` or
    a letter is RESP (an array or an inline command), unless the first line is an HTTP request
    line, which is closed as before.
    """
    first = data[:1]
    if first == b"*":
        return "resp"
    if first.isalpha():
        if _HTTP_METHOD.match(data) is None:
            if len(data) < 8 and b"\n" not in data and b" " not in data:
                return None  # "GE" may still become "GET / HTTP/1.1"
            return "resp"
        nl = data.find(b"\n")
        if nl < 0:
            return None if len(data) < _MAX_HELD else "resp"
        return "http" if _REQUEST_LINE.match(data, 0, nl) else "resp"
    return "http" if looks_like_http(data) else "json"
