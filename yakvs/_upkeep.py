"""The Store's durability calls and periodic upkeep: fsync (group commit and everysec), the
incremental active expiry cycle, and the tick that also starts compaction.

A mixin: the state is the Store's (declared here for the type checker). ``tick()`` is called about
ten times a second, by the server's event loop or by the store's own thread (``background=True``);
it never waits for the disk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from yakvs._expiry import Expiries, now_ms
from yakvs._log import LogFile
from yakvs.errors import StorageError

if TYPE_CHECKING:
    from yakvs.store import StoreConfig

logger = logging.getLogger(__name__)

_SAMPLE = 20  # keys per active-expiry sample, as Redis
_CYCLE_BUDGET_S = 0.005  # active expiry time per tick; ticks come ~10 times a second


class Upkeep:
    """fsync and periodic work of the Store."""

    config: StoreConfig
    _lock: threading.Lock
    _sync_lock: threading.Lock
    _log: LogFile | None
    _exp: Expiries
    _rng: random.Random
    _deferred: int
    _last_fsync: float
    _sync_thread: threading.Thread | None
    _stop: threading.Event

    if TYPE_CHECKING:  # defined by the Store and by Compaction; not here, or they would shadow

        def _reclaim(self, keys: list[str]) -> None: ...

        def _maybe_compact(self) -> None: ...

    @contextlib.contextmanager
    def deferred_sync(self) -> Iterator[None]:
        """Group commit: fsync=always writes inside are written but not fsynced; call sync()."""
        with self._lock:
            self._deferred += 1
        try:
            yield
        finally:
            with self._lock:
                self._deferred -= 1

    def sync(self) -> None:
        """fsync everything written so far. Safe from another thread while writes go on."""
        with self._sync_lock:
            with self._lock:
                log = self._log
                if log is None or log.size <= log.synced:
                    return
                fd, size = log.fd, log.size
            try:
                os.fsync(fd)
            except OSError as exc:
                # After a failed fsync Linux may drop the dirty pages and report success next
                # time, so the file can no longer be trusted: refuse writes until a rewrite from
                # memory (started by tick()) has produced a fully fsynced log again.
                with self._lock:
                    log.errors += 1
                    log.failed = f"fsync failed: {exc.strerror}"
                raise StorageError(f"fsync of the command log failed: {exc.strerror}") from exc
            with self._lock:
                if log.fd == fd and size > log.synced:  # else a rewrite replaced the file
                    log.synced = size
                self._last_fsync = time.monotonic()

    def tick(self) -> None:
        """One round of periodic work; call ~10 times a second when background=False.

        Never waits for the disk: the periodic fsync runs in a short-lived thread, a rewrite in
        its own thread; the active expiry step is bounded to a few milliseconds.
        """
        self._tick(inline_sync=False)

    def _tick(self, inline_sync: bool) -> None:
        log = self._log
        if (
            log is not None
            and self.config.fsync != "no"
            and time.monotonic() - self._last_fsync >= 1.0
            and log.synced < log.size
        ):
            if inline_sync:
                self._periodic_sync()
            elif self._sync_thread is None or not self._sync_thread.is_alive():
                self._sync_thread = threading.Thread(
                    target=self._periodic_sync, name="yakvs-fsync", daemon=True
                )
                self._sync_thread.start()
        if self.config.local_expiry:
            self._active_expire_cycle()
        self._maybe_compact()

    def _periodic_sync(self) -> None:
        try:
            self.sync()
        except StorageError as exc:
            logger.error("periodic fsync failed: %s", exc)


    def _active_expire_cycle(self) -> None:
        deadline = time.perf_counter() + _CYCLE_BUDGET_S
        while True:
            with self._lock:
                sample = self._exp.sample(_SAMPLE, self._rng)
                if not sample:
                    return
                now = now_ms()
                expired = list({k for k, at in sample if at <= now})
                if expired:
                    self._reclaim(expired)
            if len(expired) * 4 <= len(sample) or time.perf_counter() > deadline:
                return

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self._tick(inline_sync=True)
            except Exception:
                logger.exception("store background work failed")
