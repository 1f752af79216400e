"""Sans-IO RESP2 codec: request bytes in, ``list[bytes]`` commands out; reply values in, bytes out.

No sockets, no asyncio (like h11): the server feeds what it reads with :meth:`RespParser.feed` and
pulls commands with :meth:`RespParser.next_command`. Framing follows Redis 7.0's
``processMultibulkBuffer`` / ``processInlineBuffer`` so malformed input gets the same ``-ERR``
text Redis sends; after a protocol error the parser stays failed and the connection must be
closed, as Redis does.

Deliberate differences from Redis, each for split-invariance or binary safety:

- An inline line (or an array/bulk header line) longer than 64 KiB is rejected even when it
  arrives in one read; Redis only notices while waiting for the newline, so its verdict depends
  on how the bytes were chunked.
- NUL is an ordinary byte in inline commands and header lines (Redis stops scanning at a NUL
  and waits forever; we run the inline command, or reject the header).
- The multibulk count is capped at ``max_multibulk_len`` (default 1 Mi, Redis 6's limit; Redis 7
  allows INT_MAX) and one command's total size at ``max_command_size``, so a client cannot make
  us buffer without bound. Redis closes such a client silently; we send
  ``-ERR Protocol error: too big request`` first.
"""

from __future__ import annotations

from yakvs.resp._encode import (
    NIL_ARRAY,
    ErrorReply,
    RespValue,
    SimpleString,
    encode_array,
    encode_bulk,
    encode_command,
    encode_error,
    encode_integer,
    encode_reply,
    encode_simple,
)
from yakvs.resp._parse import (
    DEFAULT_MAX_MULTIBULK_LEN,
    DEFAULT_MAX_REQUEST_SIZE,
    INLINE_MAX_SIZE,
    RespParser,
    RespProtocolError,
    split_inline,
)

__all__ = [
    "DEFAULT_MAX_MULTIBULK_LEN",
    "DEFAULT_MAX_REQUEST_SIZE",
    "INLINE_MAX_SIZE",
    "NIL_ARRAY",
    "ErrorReply",
    "RespParser",
    "RespProtocolError",
    "RespValue",
    "SimpleString",
    "encode_array",
    "encode_bulk",
    "encode_command",
    "encode_error",
    "encode_integer",
    "encode_reply",
    "encode_simple",
    "split_inline",
]
