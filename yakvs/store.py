"""The durable store: a dict of strings, per-key expiry, and an append-only command log.

Durability contract. A write call returns only after its record is in the log: at ``fsync="no"``
and ``"everysec"`` that means written to the OS page cache (it survives a crash of this process,
not of the machine; ``everysec`` fsyncs about once a second), at ``"always"`` it means fsynced,
except inside :meth:`Store.deferred_sync`, where the caller acknowledges only after
:meth:`Store.sync` (group commit). A write whose record cannot be written raises
:class:`~yakvs.errors.StorageError` and leaves memory exactly as it was. If :meth:`Store.sync`
fails, the writes it covered stay in memory but were never acknowledged (their outcome is
unknown); writes are then refused until an automatic rewrite has made the log trustworthy again.
Inside ``with store.batch() as b:`` (yakvs/_batch.py) the writes of the block reach the log with
one write when it ends; if that fails, the whole block is undone and StorageError is raised there.

Input. Keys are non-empty strings, values strings; both valid Unicode, or bytes decoded with
``surrogateescape`` (from RESP: logged as base64). ``ttl`` is seconds, > 0 and at most 100
years; ``expires_at`` an int of epoch ms up to year 9999. Anything else raises
:class:`~yakvs.errors.BadRequestError` and changes nothing.

Expiry. Absolute epoch milliseconds. Expired keys are invisible at once; they are removed when
touched, by an incremental active cycle (Redis's sampling algorithm) and at replay and rewrite.
Removals are logged as DELETE records too, so a clock stepping back cannot resurrect them.
``len(store)`` counts keys that have expired but were not reclaimed yet.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import logging
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from zlib import crc32

import orjson

from yakvs._batch import Batch, Undo
from yakvs._expiry import (
    MAX_EXPIRES_AT,
    MAX_TTL_MS,
    Expiries,
    GetDerivedReads,
    check_key,
    checked_set,
    expiry_ms,
    now_ms,
)
from yakvs._log import (
    FLUSH_RECORD,
    LogFile,
    binary_payload,
    encode,
)
from yakvs._replay import apply_records, open_log
from yakvs._rewrite import Compaction
from yakvs._upkeep import Upkeep
from yakvs.errors import BadRequestError, StorageError

logger = logging.getLogger(__name__)

FSYNC_POLICIES = ("always", "everysec", "no")
__all__ = ["FSYNC_POLICIES", "MAX_EXPIRES_AT", "MAX_TTL_MS", "Store", "StoreConfig"]
_NOT_UNICODE = "key and value must be valid Unicode (no lone surrogates)"
_dumps = orjson.dumps
_time_ns = time.time_ns


@dataclass
class StoreConfig:
    path: str | os.PathLike[str] | None = None  # log file; None = memory only, no log
    fsync: str = "everysec"  # "always" | "everysec" | "no"
    compact_min_size: int = 64 * 1024 * 1024  # auto-rewrite when the log is past this ...
    compact_growth: float = 2.0  # ... and past growth * its size after the last rewrite
    repair: bool = False  # on mid-file corruption keep the good prefix, move the rest aside
    background: bool = True  # daemon thread for everysec fsync, active expiry, auto-compaction
    # False: the store never deletes expired keys by itself (they stay hidden); for replicated
    # stores, where the leader proposes expiry deletes through the Raft log.
    local_expiry: bool = True


class Store(Upkeep, Compaction, GetDerivedReads):
    """Thread-safe key-value store; see the module docstring for the durability contract."""

    def __init__(self, config: StoreConfig | None = None, **kwargs: Any) -> None:
        if config is None:
            config = StoreConfig(**kwargs)
        elif kwargs:
            config = dataclasses.replace(config, **kwargs)
        if config.fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, not {config.fsync!r}")
        self.config = config
        # Absolute, so the rename of a rewrite still hits the log if the cwd changes.
        self._path = os.path.abspath(config.path) if config.path is not None else None
        self._always = config.fsync == "always"
        self._lock = threading.Lock()
        # Held while fsyncing outside _lock, so a rewrite never closes the fd under a sync().
        self._sync_lock = threading.Lock()
        self._data: dict[str, str] = {}
        self._exp = Expiries()
        # Live views, for a cheap membership test and for get() without a method call.
        self._ttl_keys, self._ttl_at = self._exp.slots()
        self._rng = random.Random()
        self._log: LogFile | None = None
        self._deferred = 0
        # Set while a batch holds the lock: records wait here, old values of mutated keys there.
        self._pending: list[bytes] | None = None
        self._undo: Undo | None = None
        self._rewrite_thread: threading.Thread | None = None
        self._sync_thread: threading.Thread | None = None
        self._rewrite_retry_at = 0.0
        self._base_size = 0
        self._last_rewrite: float | None = None
        self._last_fsync = time.monotonic()
        self._closed = False
        self._counters = {"expired_keys": 0, "rewrites": 0, "replayed": 0, "torn_bytes_cut": 0}
        self._moved_aside: str | None = None  # where --repair-log put a corrupt suffix
        if self._path is not None:
            self._replay_now = now_ms()
            fd, result = open_log(self._path, config.repair, self._apply_replay)
            self._log = LogFile(self._path, fd, result.size)
            self._base_size = result.size
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path + ".rewrite")  # left by a crash mid-rewrite; never valid
            self._counters["replayed"] = result.records
            self._counters["torn_bytes_cut"] = result.cut_bytes
            self._moved_aside = result.moved_aside
            logger.info(
                "%s: replayed %d records, %d keys", self._path, result.records, len(self._data)
            )
        self._batch = Batch(self)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if config.background:
            self._thread = threading.Thread(target=self._run, name="yakvs-store", daemon=True)
            self._thread.start()

    # -- public API -----------------------------------------------------------------------------

    def set(
        self, key: str, value: str, ttl: float | None = None, *, expires_at: int | None = None
    ) -> None:
        """Store ``value`` at ``key``; ttl in seconds or expires_at in epoch ms, else no expiry."""
        at = checked_set(key, value, ttl, expires_at)
        rec = encode(("S", key, value, at)) if self._log is not None else None
        with self._lock:
            self._append(rec)
            self._data[key] = value
            if at:
                self._exp.set(key, at)
            elif key in self._ttl_keys:
                self._exp.discard(key)

    def put(self, key: str, value: str, at: int | None) -> None:
        """:meth:`set` for input the protocol decoder validated (key a non-empty str, value a
        str -- bytes from RESP decoded with surrogateescape included --, ``at`` None or a sane
        epoch ms): the server's hot path, without the checks."""
        rec = None
        if self._log is not None:
            try:
                payload = _dumps(("S", key, value, at or 0))
            except orjson.JSONEncodeError:
                payload = binary_payload(("S", key, value, at or 0))  # BadRequestError if not bytes
            rec = b"%08x %b\n" % (crc32(payload), payload)
        with self._lock:
            self._append(rec)
            self._data[key] = value
            self._exp.replace(key, at)

    def get(self, key: str) -> tuple[str, int | None] | None:
        """(value, remaining ms or None for no expiry), or None if missing or expired."""
        with self._lock:
            value = self._data.get(key)
            if value is None:
                return None
            i = self._ttl_keys.get(key)
            if i is None:
                return value, None
            left = self._ttl_at[i] - _time_ns() // 1_000_000
            if left > 0:
                return value, left
            self._reclaim([key])
            return None

    def delete(self, key: str) -> bool:
        """Remove ``key``; False if it did not exist (or had expired)."""
        check_key(key)
        with self._lock:
            if not self._live(key):
                return False
            self._append(self._encode(("D", key, None, 0)) if self._log is not None else None)
            del self._data[key]
            self._exp.discard(key)
            return True

    def expire(self, key: str, ttl: float | None = None, *, expires_at: int | None = None) -> bool:
        """Set (or with neither argument, clear) the expiry of an existing key; False if missing."""
        check_key(key)
        at = 0 if ttl is None and expires_at is None else expiry_ms(ttl, expires_at)
        with self._lock:
            if not self._live(key):
                return False
            self._append(self._encode(("E", key, None, at)) if self._log is not None else None)
            if not at:
                self._exp.discard(key)
            elif at <= now_ms() and self.config.local_expiry:
                del self._data[key]
                self._exp.discard(key)
            else:
                self._exp.set(key, at)
            return True

    def persist(self, key: str) -> bool:
        """Drop the expiry of ``key``; False if it is missing or has none (as Redis PERSIST)."""
        check_key(key)
        with self._lock:
            if not self._live(key) or key not in self._exp:
                return False
            self._append(self._encode(("E", key, None, 0)) if self._log is not None else None)
            self._exp.discard(key)
            return True

    def flush(self) -> int:
        """Remove every key with one log record (Redis FLUSHALL); the number of keys removed."""
        with self._lock:
            self._append(FLUSH_RECORD if self._log is not None else None)
            removed = len(self._data)
            self._data.clear()
            self._exp.clear()
            return removed

    def expires_at(self, key: str) -> int | None:
        """Absolute expiry (epoch ms) of a live key, None if it has none or is missing."""
        with self._lock:
            return self._exp.get(key) if self._live(key) else None

    def keys(self, prefix: str = "", limit: int | None = None) -> list[str]:
        """Live keys starting with ``prefix``, sorted; the ``limit`` smallest if given.

        This walks the whole keyspace under the lock (O(n)); it is meant for admin use.
        """
        with self._lock:
            return self._keys_locked(prefix, limit)

    def _keys_locked(self, prefix: str, limit: int | None) -> list[str]:
        if type(prefix) is not str:
            raise BadRequestError("prefix must be a string")
        if limit is not None and (type(limit) is not int or limit < 0):
            raise BadRequestError("limit must be a non-negative integer")
        now, exp_get = now_ms(), self._exp.get
        found = (k for k in self._data if k.startswith(prefix) and (exp_get(k) or now + 1) > now)
        return sorted(found) if limit is None else heapq.nsmallest(limit, found)

    def __len__(self) -> int:
        return len(self._data)

    def items(self) -> Iterator[tuple[str, str, int | None]]:
        """(key, value, expires_at ms or None) of live keys, from a snapshot taken at the call."""
        with self._lock:
            data = list(self._data.items())
            exps = self._exp.copy()
        now = now_ms()
        for key, value in data:
            at = exps.get(key)
            if at is None or at > now:
                yield key, value, at

    def batch(self) -> Batch:
        """``with store.batch() as b:`` -- many commands, one lock, one log write; see _batch."""
        return self._batch

    # -- durability -----------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, Any]:
        running, log = self._rewrite_thread, self._log
        return {
            "keys": len(self._data),
            "expires": len(self._exp),
            "log_path": self._path,
            "log_bytes": log.size if log else 0,
            "log_synced_bytes": log.synced if log else 0,
            "log_errors": log.errors if log else 0,
            "fsync": self.config.fsync,
            "last_rewrite": self._last_rewrite,
            "rewrite_base_bytes": self._base_size,
            "rewrite_in_progress": running is not None and running.is_alive(),
            "repaired_suffix_file": self._moved_aside,
            **self._counters,
        }

    def close(self) -> None:
        """Stop background work, flush + fsync + close the log. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        # The background thread may start a rewrite until it stops: join it first.
        for name in ("_thread", "_rewrite_thread", "_sync_thread"):
            thread = getattr(self, name)
            if thread is not None and thread is not threading.current_thread():
                thread.join()
        with self._sync_lock, self._lock:
            log, self._log = self._log, None
        if log is not None:
            try:
                if log.synced < log.size:
                    os.fsync(log.fd)
                    log.synced = log.size
            except OSError as exc:
                raise StorageError(f"fsync at close failed: {exc.strerror}") from exc
            finally:
                os.close(log.fd)

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------

    def _encode(self, record: tuple[Any, ...]) -> bytes:
        try:
            return encode(record)
        except orjson.JSONEncodeError:
            raise BadRequestError(_NOT_UNICODE) from None

    def _append(self, rec: bytes | None, durable: bool = True) -> None:
        """Write one record (caller holds _lock); raise StorageError, leaving nothing behind."""
        if self._closed:
            raise StorageError("the store is closed")
        if self._pending is not None:  # inside a batch: written (or undone) at its end
            if rec:
                self._pending.append(rec)
            return
        if self._log is not None and rec is not None:
            self._log.append(rec, durable and self._always and not self._deferred)

    def _live(self, key: str) -> bool:
        """Whether ``key`` exists unexpired (caller holds _lock); reclaims it if expired."""
        if key not in self._data:
            return False
        at = self._exp.get(key)
        if at is None or at > now_ms():
            return True
        self._reclaim([key])
        return False

    def _reclaim(self, keys: list[str]) -> None:
        """Drop expired ``keys`` (caller holds _lock and checked them); log DELETEs best-effort."""
        if not self.config.local_expiry:
            return
        if self._log is not None and not self._closed:
            try:
                self._append(b"".join(encode(("D", k, None, 0)) for k in keys), durable=False)
            except StorageError as exc:
                # Replay also drops them by the wall clock; only a clock stepping back could
                # bring them back, which is the lesser evil than failing reads.
                logger.warning("could not log the removal of %d expired keys: %s", len(keys), exc)
        undo = self._undo
        for k in keys:
            if undo is not None:
                undo.append((k, self._data.get(k), self._exp.get(k)))
            self._data.pop(k, None)
            self._exp.discard(k)
        self._counters["expired_keys"] += len(keys)

    def _apply_replay(self, records: list[Any]) -> None:
        apply_records(records, self._data, self._exp, self._replay_now)
