"""Store batches: many commands under one lock, their log records written with one syscall.

``with store.batch() as b:`` holds the store's lock for the whole block. ``b.set`` / ``b.get`` /
``b.delete`` / ``b.expire`` / ``b.persist`` / ``b.flush`` / ``b.expires_at`` / ``b.ttl`` /
``b.exists`` / ``b.keys`` behave like the store's methods, except that
write records go to a userspace buffer and the old (value, expiry) of each mutated key goes to an
undo list. On exit the buffer is written with one ``LogFile.append`` (one pwrite, plus one fsync
at ``fsync="always"`` outside ``deferred_sync``). If that write fails, every mutation of the
batch is undone in reverse order, so memory is exactly as before the batch, and StorageError is
raised: the caller must discard every result computed inside the batch (reads may have seen the
undone writes) and may re-run the commands one by one to learn which of them can succeed.

Holding the lock across the batch also keeps a concurrent rewrite from snapshotting memory that
holds writes whose records are not in the log yet (a rolled-back write must never reach a log).
A batch is not reentrant: calling the store's own locking methods inside it deadlocks.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING
from zlib import crc32

import orjson

from yakvs._expiry import GetDerivedReads, check_key, checked_set, expiry_ms, now_ms
from yakvs._log import FLUSH_RECORD, binary_payload, encode
from yakvs.errors import StorageError

if TYPE_CHECKING:
    from yakvs.store import Store

_dumps = orjson.dumps
_JSONError = orjson.JSONEncodeError
# (key, value before, expiry before); value None = the key did not exist.
Undo = list[tuple[str, str | None, int | None]]


class Batch(GetDerivedReads):
    """The object ``Store.batch()`` returns; one per store, reused (the lock serialises it)."""

    __slots__ = ("_data", "_exp", "_now", "_pending", "_store", "_ttl_at", "_ttl_keys", "_undo")

    def __init__(self, store: Store) -> None:
        self._store = store
        self._data = store._data
        self._exp = store._exp
        self._ttl_keys = store._ttl_keys
        self._ttl_at = store._ttl_at
        self._pending: list[bytes] | None = None
        self._undo: Undo | None = None
        self._now = 0

    def __enter__(self) -> Batch:
        store = self._store
        store._lock.acquire()
        log = store._log
        failed = log.failed if log is not None else None
        if store._closed or failed is not None:
            store._lock.release()
            if store._closed:
                raise StorageError("the store is closed")
            raise StorageError(f"the command log is being rewritten after an error ({failed})")
        if log is not None:
            # Memory-only stores cannot fail a write, so they need neither buffer nor undo.
            self._pending = store._pending = []
            self._undo = store._undo = []
        # One clock read per batch: a key expiring during the batch lives microseconds longer.
        self._now = now_ms()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        store = self._store
        pending, undo = self._pending, self._undo
        self._pending = self._undo = store._pending = store._undo = None
        try:
            if undo is None:
                return
            if t is not None:
                self._rollback(undo)  # an escaping exception: nothing of the batch stays
                return
            if pending:
                try:
                    assert store._log is not None
                    store._log.append(b"".join(pending), store._always and not store._deferred)
                except StorageError:
                    self._rollback(undo)
                    raise
        finally:
            store._lock.release()

    def _rollback(self, undo: Undo) -> None:
        data, exp = self._data, self._exp
        for key, value, at in reversed(undo):
            if value is None:
                data.pop(key, None)
                exp.discard(key)
            else:
                data[key] = value
                if at is None:
                    exp.discard(key)
                else:
                    exp.set(key, at)

    # -- the store's API, lock already held ---------------------------------------------------

    def set(
        self, key: str, value: str, ttl: float | None = None, *, expires_at: int | None = None
    ) -> None:
        at = checked_set(key, value, ttl, expires_at)
        data, ttl_keys = self._data, self._ttl_keys
        pending = self._pending
        if pending is not None:
            pending.append(encode(("S", key, value, at)))
            self._undo.append(  # type: ignore[union-attr]
                (key, data.get(key), self._exp.get(key) if key in ttl_keys else None)
            )
        data[key] = value
        if at:
            self._exp.set(key, at)
        elif key in ttl_keys:
            self._exp.discard(key)

    def put(self, key: str, value: str, at: int | None) -> None:
        """:meth:`set` for input the protocol decoder validated (key a non-empty str, value a
        str -- bytes from RESP decoded with surrogateescape included --, ``at`` None or a sane
        epoch ms): the server's hot path, without the checks."""
        pending = self._pending
        if pending is None:
            self._data[key] = value
            self._exp.replace(key, at)
            return
        try:
            payload = _dumps(("S", key, value, at or 0))
        except _JSONError:
            payload = binary_payload(("S", key, value, at or 0))  # BadRequestError if not bytes
        pending.append(b"%08x %b\n" % (crc32(payload), payload))
        data = self._data
        old = data.get(key)
        data[key] = value
        i = self._ttl_keys.get(key)
        if i is None and at is None:  # no TTL before or after (the common SET): no call
            self._undo.append((key, old, None))  # type: ignore[union-attr]
        elif i is not None and at is not None:  # a TTL replaced by another (caches): no call
            ttl_at = self._ttl_at
            self._undo.append((key, old, ttl_at[i]))  # type: ignore[union-attr]
            ttl_at[i] = at
        else:
            self._undo.append((key, old, self._exp.replace(key, at)))  # type: ignore[union-attr]

    def get(self, key: str) -> tuple[str, int | None] | None:
        value = self._data.get(key)
        if value is None:
            return None
        i = self._ttl_keys.get(key)
        if i is None:
            return value, None
        left = self._ttl_at[i] - self._now
        if left > 0:
            return value, left
        self._store._reclaim([key])
        return None

    def delete(self, key: str) -> bool:
        check_key(key)
        data = self._data
        value = data.get(key)
        if value is None:
            return False
        at = self._exp.get(key) if key in self._ttl_keys else None
        if at is not None and at <= self._now:
            self._store._reclaim([key])
            return False
        pending = self._pending
        if pending is not None:
            try:
                payload = _dumps(("D", key, None, 0))
            except _JSONError:  # a key set over RESP that is not valid UTF-8
                payload = binary_payload(("D", key, None, 0))
            pending.append(b"%08x %b\n" % (crc32(payload), payload))
            self._undo.append((key, value, at))  # type: ignore[union-attr]
        del data[key]
        if at is not None:
            self._exp.discard(key)
        return True

    def expire(self, key: str, ttl: float | None = None, *, expires_at: int | None = None) -> bool:
        """Set (or with neither argument, clear) the expiry of an existing key: one E record."""
        check_key(key)
        at = 0 if ttl is None and expires_at is None else expiry_ms(ttl, expires_at)
        if self.get(key) is None:
            return False
        exp = self._exp
        self._log_key_record(("E", key, None, at))
        if not at:
            exp.discard(key)
        elif at <= self._now and self._store.config.local_expiry:
            del self._data[key]
            exp.discard(key)
        else:
            exp.set(key, at)
        return True

    def persist(self, key: str) -> bool:
        """Drop the expiry of ``key``; False if it is missing or has none (as Redis PERSIST)."""
        check_key(key)
        if self.get(key) is None or key not in self._ttl_keys:
            return False
        self._log_key_record(("E", key, None, 0))
        self._exp.discard(key)
        return True

    def expires_at(self, key: str) -> int | None:
        """Absolute expiry (epoch ms) of a live key, None if it has none or is missing."""
        return self._exp.get(key) if self.get(key) is not None else None

    def flush(self) -> int:
        """Remove every key with one F record; the number removed. Undo keeps each key, so a
        failed write of the batch restores them all (O(keys), as the flush itself)."""
        data, exp = self._data, self._exp
        pending, undo = self._pending, self._undo
        if pending is not None and undo is not None:
            pending.append(FLUSH_RECORD)
            get_at = exp.get
            undo.extend([(k, v, get_at(k)) for k, v in data.items()])
        removed = len(data)
        data.clear()
        exp.clear()
        return removed

    def _log_key_record(self, record: tuple[str, str, None, int]) -> None:
        """Buffer a record about an existing key and remember the key's value and expiry."""
        pending = self._pending
        if pending is None:
            return
        try:
            payload = _dumps(record)
        except _JSONError:
            payload = binary_payload(record)
        pending.append(b"%08x %b\n" % (crc32(payload), payload))
        key = record[1]
        self._undo.append(  # type: ignore[union-attr]
            (key, self._data[key], self._exp.get(key) if key in self._ttl_keys else None)
        )

    def keys(self, prefix: str = "", limit: int | None = None) -> list[str]:
        return self._store._keys_locked(prefix, limit)
