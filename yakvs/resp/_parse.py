"""RESP2 request parsing: RespParser, inline splitting, protocol errors (see the package)."""


from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from typing import Final

from yakvs.errors import BadRequestError
from yakvs.resp._hiredis import hiredis_fast_path

logger = logging.getLogger(__name__)


INLINE_MAX_SIZE: Final = 64 * 1024  # Redis's PROTO_INLINE_MAX_SIZE
DEFAULT_MAX_REQUEST_SIZE: Final = 1024 * 1024  # largest bulk string, like --max-request-size
DEFAULT_MAX_MULTIBULK_LEN: Final = 1024 * 1024
_LONG_STR_SIZE: Final = 21  # string2ll refuses 21+ characters outright
_LLONG_MIN: Final = -(2**63)
_LLONG_MAX: Final = 2**63 - 1


class RespProtocolError(BadRequestError):
    """The client broke RESP framing; send :attr:`reply` and close the connection."""

    def __init__(self, reply: bytes) -> None:
        # Kept as bytes: Redis echoes the offending byte raw, which may not be valid UTF-8.
        self.reply = reply
        super().__init__(reply[1:-2].decode("utf-8", "backslashreplace"))


def _protocol_error(detail: bytes) -> RespProtocolError:
    # Redis's addReplyError turns CR/LF into spaces so the error stays on one line.
    detail = detail.replace(b"\r", b" ").replace(b"\n", b" ")
    return RespProtocolError(b"-ERR Protocol error: " + detail + b"\r\n")


def _string2ll(s: bytes | bytearray) -> int | None:
    """Redis's strict string2ll: optional '-', no leading zeros, no '+', no spaces."""
    if not s or len(s) >= _LONG_STR_SIZE:
        return None
    if s.isdigit():
        if s[0] == 0x30 and len(s) > 1:
            return None
        value = int(s)
        return value if value <= _LLONG_MAX else None
    if s[0] == 0x2D and len(s) > 1 and s[1] != 0x30 and s[1:].isdigit():
        value = -int(s[1:])
        return value if value >= _LLONG_MIN else None
    return None


_ISSPACE: Final = frozenset(b" \t\n\v\f\r")  # C isspace(): skips blanks between tokens
_TOKEN_END: Final = frozenset(b" \t\n\r")  # but only these end an unquoted token
_ESCAPES: Final = {ord("n"): 0x0A, ord("r"): 0x0D, ord("t"): 0x09, ord("b"): 0x08, ord("a"): 0x07}
_HEX: Final = frozenset(b"0123456789abcdefABCDEF")


def _needs_slow_split(line: bytes) -> bool:
    # bytes.split() matches Redis unless quotes or \v / \f (blank, yet not a token end) appear.
    return b'"' in line or b"'" in line or b"\x0b" in line or b"\x0c" in line


def split_inline(line: bytes) -> list[bytes] | None:
    """Split an inline command like Redis's sdssplitargs; None means unbalanced quotes."""
    if not _needs_slow_split(line):
        return line.split()
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in _ISSPACE:
            i += 1
        if i >= n:
            return args
        token, i = _split_token(line, i)
        if token is None:
            return None
        args.append(token)


def _split_token(line: bytes, i: int) -> tuple[bytes | None, int]:
    """One sdssplitargs token starting at ``i``; returns (token or None on error, next index)."""
    n = len(line)
    cur = bytearray()
    quote = 0  # 0, '"' or "'" while inside quotes
    while i < n:
        c = line[i]
        nxt = line[i + 1] if i + 1 < n else -1
        if quote == 0x22:
            if (
                c == 0x5C
                and nxt == 0x78
                and i + 3 < n
                and line[i + 2] in _HEX
                and (line[i + 3] in _HEX)
            ):
                cur.append(int(line[i + 2 : i + 4], 16))
                i += 3
            elif c == 0x5C and nxt != -1:
                i += 1
                cur.append(_ESCAPES.get(nxt, nxt))
            elif c == 0x22:
                # A closing quote glued to more text is an error in Redis, not a concatenation.
                return (None if nxt != -1 and nxt not in _ISSPACE else bytes(cur)), i + 1
            else:
                cur.append(c)
        elif quote == 0x27:
            if c == 0x5C and nxt == 0x27:
                i += 1
                cur.append(0x27)
            elif c == 0x27:
                return (None if nxt != -1 and nxt not in _ISSPACE else bytes(cur)), i + 1
            else:
                cur.append(c)
        elif c in _TOKEN_END:
            return bytes(cur), i + 1
        elif c == 0x22 or c == 0x27:
            quote = c
        else:
            cur.append(c)
        i += 1
    return (None if quote else bytes(cur)), i


class RespParser:
    """Incremental RESP2 request parser (arrays of bulk strings and inline commands).

    ``feed()`` bytes as they arrive; ``next_command()`` returns the next complete command as a
    list of byte strings, None when more data is needed, or raises :class:`RespProtocolError`
    (and keeps raising it: the connection is done). Commands before a bad one in the same read
    are still returned first, as Redis executes them before replying with the error. Empty
    commands (blank inline lines, ``*0``, ``*-1``) are skipped, as Redis does.
    """

    def __init__(
        self,
        max_request_size: int = DEFAULT_MAX_REQUEST_SIZE,
        *,
        max_multibulk_len: int = DEFAULT_MAX_MULTIBULK_LEN,
        max_command_size: int | None = None,
        use_hiredis: bool | None = None,
    ) -> None:
        self.max_bulk_len = max_request_size
        self.max_multibulk_len = max_multibulk_len
        self.max_command_size = (
            max_command_size if max_command_size is not None else 64 * max_request_size
        )
        # Unparsed input is buf[pos:]. buf is the caller's bytes object whenever possible so
        # arguments are sliced straight out of it; it turns into a bytearray only while small
        # feeds trickle in behind a partial command, to keep appends amortized O(1).
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._scanned = 0  # bytes after pos already known to hold no line terminator
        self._argv: list[bytes] = []
        self._mb_left = 0  # bulks still expected in the current array; 0 = between commands
        self._bulk_len = -1  # declared length of the bulk being awaited; -1 = header not read
        self._cmd_size = 0  # raw bytes the current array has used so far
        self._error: RespProtocolError | None = None
        self._ready: deque[list[bytes]] = deque()
        self._fast = hiredis_fast_path() if use_hiredis is not False else None
        self._fast_stop = -1  # offset in the current buffer where hiredis gave up
        if use_hiredis and self._fast is None:
            raise RuntimeError("hiredis is not importable")

    @property
    def error(self) -> RespProtocolError | None:
        """The protocol error the parser stopped at, if any; the connection should be closed."""
        return self._error

    @property
    def uses_hiredis(self) -> bool:
        return self._fast is not None

    @property
    def idle(self) -> bool:
        """Nothing buffered, nothing parsed ahead, no error: the next byte starts a command."""
        return (
            self._pos >= len(self._buf)
            and not self._mb_left
            and not self._ready
            and self._error is None
        )

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as commands (for backpressure and tests)."""
        return len(self._buf) - self._pos + sum(len(c) for c in self._argv)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes. Data fed after a protocol error is dropped."""
        if self._error is not None or not data:
            return
        self._fast_stop = -1
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            self._buf = data if type(data) is bytes else bytes(data)
            self._pos = 0
        elif type(buf) is bytearray:
            buf += data
            if pos > len(buf) >> 1:
                del buf[:pos]  # consumed prefix outweighs the rest: amortized O(1) per byte
                self._pos = 0
        elif len(buf) - pos <= len(data):
            self._buf = buf[pos:] + data  # copy costs at most twice the new data
            self._pos = 0
        else:
            # A long partial command fed in small pieces: switch to appending in place.
            self._buf = bytearray(memoryview(buf)[pos:])
            self._buf += data
            self._pos = 0

    def next_command(self) -> list[bytes] | None:
        """The next complete command, or None if more bytes are needed."""
        if self._ready:
            return self._ready.popleft()
        if self._error is not None:
            raise self._error
        try:
            while True:
                if self._mb_left:
                    argv = self._read_array()
                elif self._pos >= len(self._buf):
                    return None
                elif self._buf[self._pos] != 0x2A:  # '*'
                    argv = self._read_inline()
                else:
                    # Not for the first command of a read: hiredis only pays off from the second
                    # one on, and most reads of a non-pipelining client hold just one.
                    if self._fast is not None and self._pos:
                        self._fast(self)
                        if self._ready:
                            return self._ready.popleft()
                    argv = self._read_array()
                if argv is None:
                    return None
                if argv:
                    return argv
        except RespProtocolError as exc:
            self._fail(exc)
            raise

    def __iter__(self) -> Iterator[list[bytes]]:
        """Yield every complete command buffered so far (raises at a protocol error)."""
        while (argv := self.next_command()) is not None:
            yield argv

    def _fail(self, exc: RespProtocolError) -> None:
        logger.debug("RESP protocol error: %s", exc)
        self._error = exc
        self._buf, self._pos, self._argv = b"", 0, []

    def _find_line(self, terminator: bytes, too_big: bytes) -> int:
        """Index of the terminator ending the line at pos, or -1 to wait for more data."""
        buf, pos = self._buf, self._pos
        end = buf.find(terminator, pos + self._scanned)
        if end < 0:
            if len(buf) - pos > INLINE_MAX_SIZE:
                raise _protocol_error(too_big)
            self._scanned = len(buf) - pos  # never rescan: byte-by-byte feeds stay linear
            return -1
        if end - pos > INLINE_MAX_SIZE:
            raise _protocol_error(too_big)
        return end

    def _read_inline(self) -> list[bytes] | None:
        nl = self._find_line(b"\n", b"too big inline request")
        if nl < 0:
            return None
        buf, pos = self._buf, self._pos
        end = nl - 1 if nl > pos and buf[nl - 1] == 0x0D else nl
        line = buf[pos:end]
        self._pos, self._scanned = nl + 1, 0
        args = split_inline(line if type(line) is bytes else bytes(line))
        if args is None:
            raise _protocol_error(b"unbalanced quotes in request")
        return args

    def _header_line(self, too_big: bytes) -> int:
        """Like Redis: the line ends at the first CR, which must be followed by one more byte."""
        cr = self._find_line(b"\r", too_big)
        if cr < 0:
            return -1
        if cr + 1 >= len(self._buf):
            self._scanned = cr - self._pos  # the CR is here; wait for the byte after it
            return -1
        return cr

    def _read_array(self) -> list[bytes] | None:
        """Continue the array at pos (reading its header first if between commands)."""
        buf, pos = self._buf, self._pos
        if not self._mb_left:
            cr = buf.find(b"\r", pos + self._scanned)
            if cr < 0 or cr + 1 >= len(buf) or cr - pos > INLINE_MAX_SIZE:
                cr = self._header_line(b"too big mbulk count string")
                if cr < 0:
                    return None
            digits = buf[pos + 1 : cr]
            if digits.isdigit() and len(digits) < 7 and (digits[0] != 0x30 or cr == pos + 2):
                count: int | None = int(digits)
            else:
                count = _string2ll(digits)
            if count is None or count > self.max_multibulk_len:
                raise _protocol_error(b"invalid multibulk length")
            # Redis skips two bytes after the CR without checking the LF; so do we.
            self._scanned = 0
            if count <= 0:
                self._pos = cr + 2
                return []
            self._mb_left, self._argv, self._cmd_size = count, [], cr + 2 - pos
            pos = cr + 2
        argv, end = self._argv, len(buf)
        size = self._bulk_len
        while True:
            if size < 0:
                # Fast path: the whole header line is here; else the careful, resumable path.
                cr = buf.find(b"\r", pos + self._scanned)
                if cr < 0 or cr + 1 >= end or cr - pos > INLINE_MAX_SIZE:
                    self._pos, self._bulk_len = pos, -1
                    cr = self._header_line(b"too big bulk count string")
                    if cr < 0:
                        return None
                if buf[pos] != 0x24:  # '$'
                    raise _protocol_error(b"expected '$', got '" + buf[pos : pos + 1] + b"'")
                digits = buf[pos + 1 : cr]
                if digits.isdigit() and len(digits) < 10 and (digits[0] != 0x30 or cr == pos + 2):
                    size = int(digits)
                else:
                    strict = _string2ll(digits)
                    if strict is None or strict < 0:
                        raise _protocol_error(b"invalid bulk length")
                    size = strict
                if size > self.max_bulk_len:
                    raise _protocol_error(b"invalid bulk length")
                self._cmd_size += cr + 4 - pos + size
                if self._cmd_size > self.max_command_size:
                    raise _protocol_error(b"too big request")
                pos, self._scanned = cr + 2, 0
            if end - pos < size + 2:
                self._pos, self._bulk_len = pos, size  # a declared, in-limit bulk: wait for it
                return None
            arg = buf[pos : pos + size]
            argv.append(arg if type(arg) is bytes else bytes(arg))
            pos += size + 2  # like Redis, the two bytes after the bulk are not checked
            size = -1
            self._mb_left -= 1
            if not self._mb_left:
                break
        self._pos, self._bulk_len, self._argv = pos, -1, []
        return argv
