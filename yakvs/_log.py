"""The command log file: record encoding, replay scanning, crash repair and snapshot writing.

Format (see docs/log-format.md): the header line ``YAKVS-LOG 1``, then one record per line,
``<crc32 of payload, 8 lowercase hex digits> <payload>\\n``, where the payload is a compact JSON
array: ``["S", key, value, expires_at_ms_or_0]``, ``["D", key]`` or ``["E", key, expires_at_or_0]``.
JSON escapes newlines, so a record can contain a newline only as its terminator, and any Unicode
string round-trips exactly.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any
from zlib import crc32

import orjson

from yakvs.errors import LogCorruptError, StorageError

if TYPE_CHECKING:
    from yakvs._expiry import Expiries

logger = logging.getLogger(__name__)

MAGIC = b"YAKVS-LOG 1\n"
_MAGIC_PREFIX = b"YAKVS-LOG "
_CHUNK = 1 << 20
_dumps = orjson.dumps
# C-level slicing for the replay fast path: a Python-level loop per record costs more than the rest.
_HEAD = itemgetter(slice(0, 8))
_BODY = itemgetter(slice(9, None))


class BadRecord(Exception):
    """Raised by a replay ``apply`` callback: record ``index`` of the batch is malformed."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


def frame(payload: bytes) -> bytes:
    return b"%08x %b\n" % (crc32(payload), payload)


def encode(record: tuple[Any, ...]) -> bytes:
    """One framed record; raises orjson.JSONEncodeError for strings that are not valid Unicode."""
    payload = _dumps(record)
    return b"%08x %b\n" % (crc32(payload), payload)


@dataclass
class ScanResult:
    size: int  # offset where the next record goes (after any cut)
    records: int
    cut_bytes: int = 0  # torn tail removed
    moved_aside: str | None = None  # repair: where the bad suffix went


def fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_locked(path: str, flags: int) -> int:
    """Open ``path`` and take an exclusive lock, so two processes never append to one log."""
    fd = os.open(path, flags | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageError(f"{path}: the log is in use by another process") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_log(path: str, repair: bool, apply: Callable[[list[Any]], None]) -> tuple[int, ScanResult]:
    """Open (or create) the log at ``path``, replay it through ``apply`` and return (fd, result)."""
    try:
        fd = open_locked(path, os.O_RDWR | os.O_CREAT)
    except OSError as exc:
        raise StorageError(f"{path}: cannot open the command log: {exc.strerror}") from exc
    try:
        return fd, _check_and_replay(fd, path, repair, apply)
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
            _write_all(fd, MAGIC, 0)
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
    pending = b""
    records = 0
    read_off = pos
    while True:
        chunk = os.pread(fd, _CHUNK, read_off)
        if not chunk:
            break
        read_off += len(chunk)
        buf = pending + chunk if pending else chunk
        cut = buf.rfind(b"\n")
        if cut < 0:
            pending = buf
            continue
        lines = buf[:cut].split(b"\n")
        pending = buf[cut + 1 :]
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
        want = list(map(int, map(_HEAD, lines), repeat(16)))
        payloads = list(map(_BODY, lines))
        if list(map(crc32, payloads)) == want:
            records = orjson.loads(b"[" + b",".join(payloads) + b"]")
        else:
            records = None
    except (ValueError, orjson.JSONDecodeError):
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
            apply([orjson.loads(line[9:])])
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
        orjson.loads(line[9:])
    except orjson.JSONDecodeError:
        return "undecodable record"
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


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        offset += n
        view = view[n:]


def write_at(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset``; on error, cut the file back so no partial record stays.

    Raises OSError. If even the truncate fails, the caller must cut back before the next write.
    """
    try:
        _write_all(fd, data, offset)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, offset)
        raise


def write_snapshot(
    path: str, items: Iterable[tuple[str, str]], expiries: dict[str, int], now_ms: int
) -> tuple[int, int]:
    """Write a fresh log holding ``items`` (skipping expired ones) to ``path``; return (fd, size).

    The file is fsynced but not renamed; the fd is open read-write and locked.
    """
    fd = open_locked(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    try:
        size = 0
        parts = [MAGIC]
        buffered = len(MAGIC)
        get_exp = expiries.get
        for key, value in items:
            at = get_exp(key, 0)
            if at and at <= now_ms:
                continue
            payload = _dumps(("S", key, value, at))
            rec = b"%08x %b\n" % (crc32(payload), payload)
            parts.append(rec)
            buffered += len(rec)
            if buffered >= _CHUNK:
                _write_all(fd, b"".join(parts), size)
                size += buffered
                parts, buffered = [], 0
        if parts:
            _write_all(fd, b"".join(parts), size)
            size += buffered
        return fd, size
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


_OP, _KEY, _VALUE, _AT = (itemgetter(i) for i in range(4))


def _plain_sets(records: list[Any]) -> bool:
    """Whether ``records`` are all well-formed SETs without expiry (checked at C speed)."""
    try:
        return (
            set(map(len, records)) == {4}
            and set(map(_OP, records)) == {"S"}
            and set(map(type, map(_KEY, records))) == {str}
            and set(map(type, map(_VALUE, records))) == {str}
            and set(map(type, map(_AT, records))) == {int}
            and not any(map(_AT, records))
            and "" not in map(_KEY, records)
        )
    except TypeError:  # a record that is not a list: the per-record path names it
        return False


def apply_records(records: list[Any], data: dict[str, str], exp: Expiries, now: int) -> None:
    """Apply decoded records to ``data``/``exp``; raise BadRecord naming the first bad one.

    Records expired at ``now`` (the wall clock at the start of replay) are dropped.
    """
    if _plain_sets(records):
        # The common case (every rewritten log, most workloads): whole batch in C-level calls.
        keys = list(map(_KEY, records))
        data.update(zip(keys, map(_VALUE, records), strict=True))
        if len(exp):
            for key in keys:
                exp.discard(key)
        return
    i = 0
    try:
        for i, r in enumerate(records):
            op = r[0]
            key = r[1]
            if type(key) is not str or not key:
                raise BadRecord(i, "bad key")
            if op == "S":
                value, at = r[2], r[3]
                if type(value) is not str or type(at) is not int:
                    raise BadRecord(i, "bad SET record")
                if at and at <= now:
                    data.pop(key, None)
                    exp.discard(key)
                    continue
                data[key] = value
                if at:
                    exp.set(key, at)
                else:
                    exp.discard(key)
            elif op == "D":
                data.pop(key, None)
                exp.discard(key)
            elif op == "E":
                at = r[2]
                if type(at) is not int:
                    raise BadRecord(i, "bad EXPIRE record")
                if key not in data:
                    continue
                if not at:
                    exp.discard(key)
                elif at <= now:
                    del data[key]
                    exp.discard(key)
                else:
                    exp.set(key, at)
            else:
                raise BadRecord(i, "unknown record type")
    except (IndexError, TypeError, KeyError):
        raise BadRecord(i, "malformed record") from None
