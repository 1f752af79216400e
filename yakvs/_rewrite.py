"""Log compaction for the Store: rewrite the log from memory, in a thread, without stopping writes.

A rewrite snapshots memory under the store's lock (and from then on keeps a copy of every record
appended), writes the snapshot to ``<log>.rewrite`` outside the lock, fsyncs it, copies the
records appended meanwhile in a few passes outside the lock, then -- under the lock -- appends the
last few, fsyncs and renames it over the log. Any failure before the rename leaves the old log in
use. A rewrite starts when the log has grown past ``compact_min_size`` and ``compact_growth``
times its size after the last one, and after a failed fsync (the file is not trusted any more).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from yakvs._expiry import Expiries, now_ms
from yakvs._log import LogFile, fsync_dir, write_at, write_snapshot
from yakvs.errors import StorageError

if TYPE_CHECKING:
    from yakvs.store import StoreConfig

logger = logging.getLogger(__name__)

_REWRITE_RETRY_S = 60.0
_CATCH_UP_PASSES = 4  # a rewrite's copy passes over records appended while it ran ...
_CATCH_UP_DONE = 64 * 1024  # ... until one copies less than this


class Compaction:
    """The Store's rewrite methods (a mixin: the state is the Store's, declared here for types)."""

    config: StoreConfig
    _path: str | None
    _lock: threading.Lock
    _sync_lock: threading.Lock
    _log: LogFile | None
    _data: dict[str, str]
    _exp: Expiries
    _closed: bool
    _base_size: int
    _last_rewrite: float | None
    _counters: dict[str, Any]
    _rewrite_thread: threading.Thread | None
    _rewrite_retry_at: float

    def compact(self, wait: bool = True) -> None:
        """Rewrite the log from live data; ``wait=False`` runs it in a background thread."""
        if self._log is None:
            return
        running = self._rewrite_thread
        if running is not None and running.is_alive():
            if not wait:
                return
            running.join()
        if wait:
            self._rewrite()
        else:
            self._start_rewrite()

    def _maybe_compact(self) -> None:
        cfg, log = self.config, self._log
        if (
            log is not None
            and (
                log.failed is not None
                or (
                    log.size > cfg.compact_min_size
                    and log.size > cfg.compact_growth * self._base_size
                )
            )
            and time.monotonic() >= self._rewrite_retry_at
            and not (self._rewrite_thread is not None and self._rewrite_thread.is_alive())
        ):
            logger.info(
                "log is %d bytes (%d after the last rewrite): rewriting",
                log.size,
                self._base_size,
            )
            self._start_rewrite()

    def _start_rewrite(self) -> None:
        def run() -> None:
            try:
                self._rewrite()
            except StorageError as exc:
                failed = self._log is not None and self._log.failed is not None
                retry = 1.0 if failed else _REWRITE_RETRY_S
                self._rewrite_retry_at = time.monotonic() + retry
                logger.error("background log rewrite failed (old log kept): %s", exc)

        self._rewrite_thread = threading.Thread(target=run, name="yakvs-rewrite", daemon=True)
        self._rewrite_thread.start()

    def _rewrite(self) -> None:
        assert self._path is not None
        with self._lock:
            log = self._log
            if log is None or self._closed or log.rewrite_buf is not None:
                return
            data = self._data.copy()
            exp_keys, exp_ats = self._exp.snapshot()
            log.rewrite_buf = []  # from now on appends are also kept for the new file
        tmp = self._path + ".rewrite"
        new_fd: int | None = None
        try:
            exps: dict[str, int] = {}
            for i in range(0, len(exp_keys), 4096):
                # In slices, offering the GIL in between (see write_snapshot): one C call over
                # 100k keys would hold it, and stall the event loop's thread, for 10-20 ms.
                exps.update(zip(exp_keys[i : i + 4096], exp_ats[i : i + 4096], strict=True))
                time.sleep(0)
            del exp_keys, exp_ats
            new_fd, size = write_snapshot(tmp, data.items(), exps, now_ms())
            del data, exps
            os.fsync(new_fd)  # the bulk, outside the lock
            size = self._catch_up(log, new_fd, size)
            with self._lock:
                if self._log is not log:  # closed meanwhile (a compact() racing close())
                    raise StorageError("the store was closed during the rewrite")
                old_fd = log.install(tmp, new_fd, size)
                new_fd = None  # from here on the new file is the log, whatever happens next
                self._base_size = log.size
                self._last_rewrite = time.time()
                self._counters["rewrites"] += 1
            try:
                fsync_dir(self._path)
            except OSError as exc:
                logger.error("fsync of the log directory after a rewrite failed: %s", exc)
            with self._sync_lock:
                os.close(old_fd)
            logger.info("%s: rewritten, %d bytes", self._path, log.size)
        except OSError as exc:
            raise StorageError(f"log rewrite failed, old log kept: {exc.strerror}") from exc
        finally:
            with self._lock:
                log.rewrite_buf = None  # no-op after a successful install
            if new_fd is not None:
                os.close(new_fd)
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _catch_up(self, log: LogFile, fd: int, size: int) -> int:
        """Copy the records appended during the rewrite to the new file, outside the lock.

        Leaves install() (under the lock, with its fsync) only what arrives during the last pass:
        copying and fsyncing a whole busy second's tail there stalled the server 40-60 ms.
        """
        for _ in range(_CATCH_UP_PASSES):
            with self._lock:
                tail, log.rewrite_buf = log.rewrite_buf, []
            if not tail:
                break
            chunk = b"".join(tail)
            write_at(fd, chunk, size)  # the records stay in the old log if this fails
            size += len(chunk)
            os.fsync(fd)
            if len(chunk) < _CATCH_UP_DONE:
                break
        return size
