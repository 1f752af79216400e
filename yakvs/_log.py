"""The command log file, write side: record encoding, appends, fsync state and rewrites.

Format (see docs/log-format.md): the header line ``YAKVS-LOG 1``, then one record per line,
``<crc32 of payload, 8 lowercase hex digits> <payload>\\n``, where the payload is a compact JSON
array of exactly four fields: ``["S", key, value, expires_at]``, ``["D", key, null, 0]``,
``["E", key, null, expires_at]`` or ``["F", null, null, 0]`` (remove every key: Redis FLUSHALL);
expires_at is epoch ms, 0 = none. JSON escapes newlines, so a
record can contain a newline only as its terminator, and any Unicode string round-trips exactly.
A record holding a string that is not valid Unicode (bytes set over RESP, kept as str decoded with
``surrogateescape``) is written as ``["bS", b64key, b64value, at]`` (``bD``, ``bE`` likewise).
Reading it back is yakvs/_replay.py.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import time
from collections.abc import Iterable
from typing import Any
from zlib import crc32

import orjson

from yakvs.errors import BadRequestError, StorageError

MAGIC = b"YAKVS-LOG 1\n"
_CHUNK = 1 << 20
_dumps = orjson.dumps


class LogFile:
    """The open log: where the next record goes and how much of it is known to be fsynced.

    Not thread-safe: the store calls it holding its lock (``Store.sync`` reads ``fd``/``size``
    under the lock and fsyncs outside it).
    """

    def __init__(self, path: str, fd: int, size: int) -> None:
        self.path = path
        self.fd = fd
        self.size = size  # end of the last complete record
        self.synced = size  # bytes known to be fsynced
        self.tail_dirty = False  # a failed write may have left bytes past `size`
        self.failed: str | None = None  # why writes are refused until a rewrite (fsync error)
        self.rewrite_buf: list[bytes] | None = None  # records appended while a rewrite runs
        self.errors = 0

    def append(self, rec: bytes, fsync: bool) -> None:
        """Write ``rec`` (fsync it if asked); on failure raise StorageError and leave no trace."""
        if self.failed is not None:
            raise StorageError(f"the command log is being rewritten after an error ({self.failed})")
        fd, start = self.fd, self.size
        syncing = False
        try:
            if self.tail_dirty:
                os.ftruncate(fd, start)
                self.tail_dirty = False
            if os.pwrite(fd, rec, start) != len(rec):  # short write: disk nearly full
                write_at(fd, rec, start)
            if fsync:
                syncing = True
                os.fsync(fd)
        except OSError as exc:
            self.errors += 1
            try:
                os.ftruncate(fd, start)  # also drops a record written but not fsynced
            except OSError:
                self.tail_dirty = True
            if syncing and self.synced < start:
                # Earlier unsynced records may have been dropped with the failed fsync.
                self.failed = f"fsync failed: {exc.strerror}"
            raise StorageError(f"write to the command log failed: {exc.strerror}") from exc
        self.size = start + len(rec)
        if fsync:
            self.synced = self.size
        if self.rewrite_buf is not None:
            self.rewrite_buf.append(rec)

    def install(self, tmp: str, new_fd: int, size: int) -> int:
        """Make the rewritten ``tmp`` (fd ``new_fd``, ``size`` bytes) the log; return the old fd.

        Appends the records written since the snapshot, fsyncs, renames over the log. Until the
        rename any failure (OSError) leaves the old log in place; after it the new one is in use.
        """
        assert self.rewrite_buf is not None, "no rewrite in progress"
        tail = b"".join(self.rewrite_buf)
        if tail:
            write_at(new_fd, tail, size)
            size += len(tail)
        os.fsync(new_fd)
        os.replace(tmp, self.path)
        old_fd = self.fd
        self.fd, self.size, self.synced = new_fd, size, size
        self.tail_dirty = False
        self.failed = None
        self.rewrite_buf = None
        return old_fd


def encode(record: tuple[Any, ...]) -> bytes:
    """One framed record; raises BadRequestError for a string no byte sequence stands for."""
    try:
        payload = _dumps(record)
    except orjson.JSONEncodeError:
        payload = binary_payload(record)
    return b"%08x %b\n" % (crc32(payload), payload)


# FLUSHALL: one record however many keys there are (written as one DELETE per key before).
FLUSH_RECORD = encode(("F", None, None, 0))


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogateescape")).decode("ascii")


def binary_payload(record: tuple[Any, ...]) -> bytes:
    """The payload of a record whose key or value is not valid Unicode (orjson refuses those).

    Such strings come from RESP, decoded with ``surrogateescape``: their bytes are logged in
    base64 under the record type prefixed with ``b``. Replay decodes them back the same way.
    """
    op, key, value, at = record
    try:
        return _dumps(("b" + op, _b64(key), None if value is None else _b64(value), at))
    except UnicodeEncodeError:  # a surrogate that stands for no byte (e.g. JSON "\ud800")
        raise BadRequestError("key and value must be valid Unicode or bytes") from None


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

    Not fsynced and not renamed yet (see :meth:`LogFile.install`); the fd is open and locked.
    """
    fd = open_locked(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    try:
        size = count = 0
        parts = [MAGIC]
        buffered = len(MAGIC)
        get_exp = expiries.get
        for key, value in items:
            at = get_exp(key, 0)
            if at and at <= now_ms:
                continue
            try:
                payload = _dumps(("S", key, value, at))
            except orjson.JSONEncodeError:
                payload = binary_payload(("S", key, value, at))
            rec = b"%08x %b\n" % (crc32(payload), payload)
            parts.append(rec)
            buffered += len(rec)
            count += 1
            if not count & 127:
                # Offer the GIL: else the event loop's thread, which drops it at every syscall,
                # waits out a 5 ms switch interval each time to get it back (a convoy that
                # stalled the server 60-100 ms per rewrite); 128 records take ~0.1 ms.
                time.sleep(0)
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
