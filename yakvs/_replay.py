"""Replay of the command log: checking, decoding and applying records, torn tails and repair.

The format is described in docs/log-format.md and yakvs/_log.py (which writes it). Replay is the
slowest part of a restart, so a batch of lines is checked and decoded with C-level calls; only a
batch known to hold a bad line is walked line by line, to name the offset of the first bad one.
"""

from __future__ import annotations

import base64
import logging
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter, length_hint
from typing import TYPE_CHECKING, Any
from zlib import crc32

import orjson

from yakvs._log import MAGIC, fsync_dir, open_locked, write_at
from yakvs.errors import LogCorruptError, StorageError

if TYPE_CHECKING:
    from yakvs._expiry import Expiries

logger = logging.getLogger(__name__)

_MAGIC_PREFIX = b"YAKVS-LOG "
_CHUNK = 1 << 20
# C-level slicing for the replay fast path: a Python-level loop per record costs more than the rest.
_HEAD = itemgetter(slice(0, 8))
_BODY = itemgetter(slice(9, None))
_INNER = itemgetter(slice(10, -1))  # the payload without its brackets
_unpack = struct.unpack


class BadRecord(Exception):
    """Raised by a replay ``apply`` callback: record ``index`` of the batch is malformed."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


@dataclass
class ScanResult:
    size: int  # offset where the next record goes (after any cut)
    records: int
    cut_bytes: int = 0  # torn tail removed
    moved_aside: str | None = None  # repair: where the bad suffix went


def open_log(path: str, repair: bool, apply: Callable[[list[Any]], None]) -> tuple[int, ScanResult]:
    """Open (or create) the log at ``path``, replay it through ``apply`` and return (fd, result)."""
    try:
        fd = open_locked(path, os.O_RDWR | os.O_CREAT)
    except OSError as exc:
        raise StorageError(f"{path}: cannot open the command log: {exc.strerror}") from exc
    try:
        return fd, _check_and_replay(fd, path, repair, apply)
    except OSError as exc:  # reading, cutting a torn tail or repairing failed
        os.close(fd)
        raise StorageError(f"{path}: cannot read or repair the command log: {exc}") from exc
    except BaseException:
        os.close(fd)
        raise


def _check_and_replay(
    fd: int, path: str, repair: bool, apply: Callable[[list[Any]], None]
) -> ScanResult:
    file_size = os.fstat(fd).st_size
    head = os.pread(fd, len(MAGIC), 0)
    if head != MAGIC:
        if MAGIC.startswith(head):
            # Empty, or we crashed while writing the header of a brand-new log: nothing to lose.
            if head:
                logger.warning(
                    "%s: incomplete header (%d bytes), starting a new log", path, len(head)
                )
            os.ftruncate(fd, 0)
            write_at(fd, MAGIC, 0)
            os.fsync(fd)
            fsync_dir(path)
            return ScanResult(size=len(MAGIC), records=0)
        if head.startswith(_MAGIC_PREFIX):
            version = head[len(_MAGIC_PREFIX) :].strip()
            raise LogCorruptError(
                f"{path}: yakvs log format version {version!r} is not supported (this is 1)", 0
            )
        raise LogCorruptError(
            f"{path}: not a yakvs command log (missing the 'YAKVS-LOG 1' header); refusing to "
            "open it. Point the server at a new file or move this one away.",
            0,
        )
    pos = len(MAGIC)  # file offset of the first byte of `pending`
    pending: list[bytes] = []  # a partial line, in pieces (joined once: huge values stay linear)
    records = 0
    read_off = pos
    while True:
        chunk = os.pread(fd, _CHUNK, read_off)
        if not chunk:
            break
        read_off += len(chunk)
        if b"\n" not in chunk:
            pending.append(chunk)
            continue
        buf = b"".join((*pending, chunk)) if pending else chunk
        cut = buf.rfind(b"\n")
        lines = buf[:cut].split(b"\n")
        pending = [buf[cut + 1 :]] if cut + 1 < len(buf) else []
        bad = _replay_lines(lines, apply)
        if bad is not None:
            index, reason = bad
            offset = pos + sum(len(line) + 1 for line in lines[:index])
            line_end = offset + len(lines[index]) + 1
            return _bad_record(
                fd, path, repair, offset, line_end, file_size, reason, records + index
            )
        records += len(lines)
        pos += cut + 1
    if pending:
        return _bad_record(fd, path, repair, pos, file_size, file_size, "incomplete", records)
    return ScanResult(size=pos, records=records)


def _replay_lines(lines: list[bytes], apply: Callable[[list[Any]], None]) -> tuple[int, str] | None:
    """Check and apply a batch of lines; return (index, reason) of the first bad one, else None."""
    # Fast path: the whole batch is checked with C-level loops and decoded by one orjson call.
    try:
        want = _unpack(f">{len(lines)}I", bytes.fromhex(b"".join(map(_HEAD, lines)).decode()))
        if tuple(map(crc32, map(_BODY, lines))) == want:
            # Decoding the records' fields as one flat array is ~2.5x faster than an array of
            # arrays (no list per record); every record has exactly 4 fields, which is checked.
            records = orjson.loads(b"[" + b",".join(map(_INNER, lines)) + b"]")
            if len(records) != 4 * len(lines):
                records = None
        else:
            records = None
    except (ValueError, struct.error, orjson.JSONDecodeError):  # UnicodeDecodeError included
        records = None
    if records is not None:
        try:
            apply(records)
        except BadRecord as exc:
            return exc.index, exc.reason
        return None
    # Slow path, only for a batch known to hold a bad line: find it, applying the lines before it.
    for i, line in enumerate(lines):
        reason = _check_line(line)
        if reason is not None:
            return i, reason
        try:
            apply(orjson.loads(line[9:]))
        except BadRecord as exc:
            return i, exc.reason
    return None  # unreachable in practice: the fast path failed for a reason the slow path saw


def _check_line(line: bytes) -> str | None:
    head = line[:8]
    if len(line) < 10 or line[8:9] != b" " or head.strip(b"0123456789abcdef"):
        return "malformed record"
    if int(head, 16) != crc32(line[9:]):
        return "checksum mismatch"
    try:
        record = orjson.loads(line[9:])
    except orjson.JSONDecodeError:
        return "undecodable record"
    if type(record) is not list or len(record) != 4:
        return "malformed record"
    return None


def _bad_record(
    fd: int,
    path: str,
    repair: bool,
    offset: int,
    line_end: int,
    file_size: int,
    reason: str,
    records: int,
) -> ScanResult:
    if line_end >= file_size:
        # Only the very last record is bad: a write torn by a crash (Redis: aof-load-truncated).
        cut = file_size - offset
        logger.warning(
            "%s: cut off a torn last record (%s) at byte offset %d (%d bytes)",
            path,
            reason,
            offset,
            cut,
        )
        os.ftruncate(fd, offset)
        os.fsync(fd)
        return ScanResult(size=offset, records=records, cut_bytes=cut)
    if not repair:
        raise LogCorruptError(
            f"{path}: corrupt record ({reason}) at byte offset {offset}, with "
            f"{file_size - offset} bytes after it; refusing to start. Start with the repair "
            f"option (--repair-log) to keep the first {offset} bytes and move the rest aside.",
            offset,
        )
    aside = f"{path}.corrupt-{offset}-{int(time.time())}"
    with open(aside, "wb") as out:
        read = offset
        while chunk := os.pread(fd, _CHUNK, read):
            out.write(chunk)
            read += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    os.ftruncate(fd, offset)
    os.fsync(fd)
    fsync_dir(path)
    logger.warning(
        "%s: repaired: corrupt record (%s) at byte offset %d; kept %d records, moved %d bytes "
        "to %s",
        path,
        reason,
        offset,
        records,
        file_size - offset,
        aside,
    )
    return ScanResult(size=offset, records=records, moved_aside=aside)


def apply_records(flat: list[Any], data: dict[str, str], exp: Expiries, now: int) -> None:
    """Apply records given as one flat list of 4 fields each; raise BadRecord naming a bad one.

    Records expired at ``now`` (the wall clock at the start of replay) are dropped.
    """
    it = iter(flat)
    has_ttl = exp.keys_with_ttl()  # a live view: truthy once any key has an expiry
    try:
        # zip over one iterator four times yields the records without a list per record.
        for op, key, value, at in zip(it, it, it, it, strict=True):
            if op == "S" and at == 0 and type(key) is str and type(value) is str and key:
                data[key] = value  # the hot case: a SET without expiry
                if has_ttl and key in has_ttl:
                    exp.discard(key)
            else:
                _apply_other(op, key, value, at, data, exp, now)
    except (_Malformed, ValueError) as exc:
        index = (len(flat) - length_hint(it)) // 4 - 1
        raise BadRecord(max(index, 0), str(exc) or "malformed record") from None


class _Malformed(Exception):
    pass


_BINARY = frozenset({"bS", "bD", "bE"})


def _unb64(text: Any) -> str:
    if type(text) is not str:
        raise TypeError
    return base64.b64decode(text, validate=True).decode("utf-8", "surrogateescape")


def _apply_other(
    op: Any, key: Any, value: Any, at: Any, data: dict[str, str], exp: Expiries, now: int
) -> None:
    if op == "F":
        if key is not None or value is not None or at != 0:
            raise _Malformed("bad FLUSH record")
        data.clear()
        exp.clear()  # in place: apply_records holds a live view of it
        return
    if type(key) is not str or not key or type(at) is not int or at < 0:
        raise _Malformed("bad key or expiry")
    if op in _BINARY:
        # Strings that were not valid Unicode, logged as base64 of their bytes (see _log.py).
        try:
            key = _unb64(key)
            value = None if value is None else _unb64(value)
        except (ValueError, TypeError):
            raise _Malformed("bad base64 in a binary record") from None
        _apply_other(op[1:], key, value, at, data, exp, now)
        return
    if op == "S":
        if type(value) is not str:
            raise _Malformed("bad SET value")
        if at and at <= now:
            data.pop(key, None)
            exp.discard(key)
            return
        data[key] = value
        if at:
            exp.set(key, at)
        else:
            exp.discard(key)
    elif value is not None:
        raise _Malformed("value in a DELETE/EXPIRE record")
    elif op == "D":
        data.pop(key, None)
        exp.discard(key)
    elif op == "E":
        if key not in data:
            return
        if not at:
            exp.discard(key)
        elif at <= now:
            del data[key]
            exp.discard(key)
        else:
            exp.set(key, at)
    else:
        raise _Malformed("unknown record type")
