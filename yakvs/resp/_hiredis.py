"""The hiredis fast path of :class:`~yakvs.resp.RespParser` (used when hiredis is importable)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from yakvs.resp._parse import RespParser

# An aggregate header (array, map, set, push, attribute) announcing 10000+ items. Also matches
# inside data now and then; that only costs the fast path for the rest of the buffer.
_BIG_AGGREGATE: Final = re.compile(rb"[*%~>|][1-9][0-9]{4}")


class _HiredisArrays:
    """Parse runs of complete arrays with hiredis' C reader, keeping Redis's exact semantics.

    hiredis parses *replies*: it also accepts ``+``/``:`` items, RESP3 types, nested arrays and
    has none of our limits. So a command is taken only if re-encoding its args canonically gives
    back exactly the bytes received (a memcmp) and it is within limits; at the first command
    that is not, or at an incomplete tail, the pure-Python parser takes over from that offset
    and decides, with Redis's error texts. Only bytes already in memory are handed to hiredis,
    so it never buffers anything we would not. hiredis allocates a whole list as soon as it
    reads an aggregate header, so ``*2147483647`` would cost 16 GiB before any check of ours:
    bytes from anything that looks like a count of 10000 or more are left to Python.
    """

    __slots__ = ("_new_reader", "_protocol_error", "_reader")

    def __init__(self, hiredis: Any) -> None:
        self._new_reader = hiredis.Reader
        self._protocol_error = hiredis.ProtocolError
        self._reader: Any = None

    def __call__(self, parser: RespParser) -> None:
        buf, pos = parser._buf, parser._pos
        if type(buf) is not bytes or parser._fast_stop == pos:
            return
        big = _BIG_AGGREGATE.search(buf, pos)
        limit = big.start() if big is not None else len(buf)
        if limit == pos:
            parser._fast_stop = pos
            return
        reader = self._reader if self._reader is not None else self._new_reader()
        self._reader = None
        reader.feed(buf, pos, limit - pos)
        ready, end = parser._ready, len(buf)
        max_bulk, max_count = parser.max_bulk_len, parser.max_multibulk_len
        max_size = parser.max_command_size
        small = min(max_bulk, max_size)  # a command this small is within both limits
        while pos < limit:
            try:
                argv = reader.gets()
                if argv is False or type(argv) is not list or not 0 < len(argv) <= max_count:
                    break
                encoded = b"".join([b"$%d\r\n%b\r\n" % (len(a), a) for a in argv])
            except (self._protocol_error, TypeError):  # TypeError: an item that is not bytes
                break
            encoded = b"*%d\r\n%b" % (len(argv), encoded)
            size = len(encoded)
            if not buf.startswith(encoded, pos) or (
                size > small and (size > max_size or max(map(len, argv)) > max_bulk)
            ):
                break
            ready.append(argv)
            pos += size
        else:
            self._reader = reader  # everything fed was consumed: its buffer is empty, reuse it
        parser._pos = pos
        if pos < end:
            parser._fast_stop = pos  # Python's turn here: do not feed hiredis this tail again


def hiredis_fast_path() -> _HiredisArrays | None:
    try:
        import hiredis
    except ImportError:
        return None
    return _HiredisArrays(hiredis)
