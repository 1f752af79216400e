"""Store API: values, validation, TTL, active expiry, keys, stats, thread safety."""

from __future__ import annotations

import errno
import math
import os
import threading
import time

import pytest

import yakvs.store as store_module
from yakvs.errors import BadRequestError, StorageError
from yakvs.store import MAX_EXPIRES_AT, Store, StoreConfig

ODD_VALUES = [
    "",
    " ",
    "a b  c",
    "line1\nline2\r\n",
    'quote " and \\ backslash',
    "nul\x00inside",
    "SET x y 0\nDELETE z",
    "unicode é ü 中文 😀 \u2028\u2029",
    "\x7f\x1b[31m",
    '{"op": "SET"}',
    "x" * 100_000,
]


@pytest.fixture
def log_path(tmp_path):
    return tmp_path / "kv.log"


def reopen(path, **kw) -> Store:
    return Store(path=path, background=False, **kw)


@pytest.mark.parametrize("value", ODD_VALUES)
def test_odd_values_round_trip_through_the_log(log_path, value):
    key = "k " + value[:50] + "\n"
    with reopen(log_path) as s:
        s.set(key, value)
        assert s.get(key) == (value, None)
    with reopen(log_path) as s:
        assert s.get(key) == (value, None)
        assert list(s.items()) == [(key, value, None)]


def test_basic_api_memory_only():
    with Store(background=False) as s:
        assert s.get("a") is None
        assert s.ttl("a") == -2
        assert not s.exists("a")
        s.set("a", "1")
        assert s.get("a") == ("1", None)
        assert s.ttl("a") == -1
        assert s.exists("a")
        assert len(s) == 1
        assert s.delete("a") is True
        assert s.delete("a") is False
        assert s.get("a") is None
        assert not s.expire("a", 10)
        assert not s.persist("a")


def test_set_without_ttl_never_expires_and_overwrite_clears_ttl(log_path):
    # The Go original expired keys set without a TTL at once.
    with reopen(log_path) as s:
        s.set("k", "v", ttl=100)
        assert 99_000 < s.ttl("k") <= 100_000
        s.set("k", "v2")
        assert s.ttl("k") == -1
        assert s.stats["expires"] == 0
    with reopen(log_path) as s:
        assert s.get("k") == ("v2", None)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"key": "", "value": "v"},
        {"key": 1, "value": "v"},
        {"key": b"k", "value": "v"},
        {"key": None, "value": "v"},
        {"key": "k", "value": 1},
        {"key": "k", "value": b"v"},
        {"key": "k", "value": None},
        {"key": "k", "value": "v", "ttl": 0},
        {"key": "k", "value": "v", "ttl": -1},
        {"key": "k", "value": "v", "ttl": math.nan},
        {"key": "k", "value": "v", "ttl": math.inf},
        {"key": "k", "value": "v", "ttl": 1e12},
        {"key": "k", "value": "v", "ttl": True},
        {"key": "k", "value": "v", "ttl": "10"},
        {"key": "k", "value": "v", "expires_at": 1.5},
        {"key": "k", "value": "v", "expires_at": 0},
        {"key": "k", "value": "v", "expires_at": -5},
        {"key": "k", "value": "v", "expires_at": MAX_EXPIRES_AT + 1},
        {"key": "k", "value": "v", "ttl": 5, "expires_at": 2**40},
        {"key": "k\ud800", "value": "v"},
        {"key": "k", "value": "lone surrogate \udfff"},
    ],
)
def test_bad_input_is_rejected_and_changes_nothing(log_path, kwargs):
    with reopen(log_path) as s:
        s.set("k", "before")
        size = s.stats["log_bytes"]
        with pytest.raises(BadRequestError):
            s.set(**kwargs)
        assert s.get("k") == ("before", None)
        assert list(s.items()) == [("k", "before", None)]
        assert s.stats["log_bytes"] == size
    with reopen(log_path) as s:
        assert list(s.items()) == [("k", "before", None)]


def test_bad_expire_arguments(log_path):
    with reopen(log_path) as s:
        s.set("k", "v")
        for bad in (0, -1, math.nan, math.inf):
            with pytest.raises(BadRequestError):
                s.expire("k", bad)
        with pytest.raises(BadRequestError):
            s.delete("")
        with pytest.raises(BadRequestError):
            s.keys(limit=-1)
        assert s.ttl("k") == -1


def test_ttl_expiry_is_immediate_and_not_resurrected_by_replay(log_path):
    with reopen(log_path) as s:
        s.set("short", "v", ttl=0.3)
        s.set("untouched", "v", ttl=0.3)  # expires without ever being read: no DELETE logged
        s.set("long", "v", ttl=1000)
        s.set("gone", "v", expires_at=1)  # in the past: invisible at once
        assert s.get("gone") is None
        got = s.get("short")
        assert got is not None and 0 < got[1] <= 300
        time.sleep(max(0.0, s.expires_at("untouched") / 1000 - time.time()) + 0.02)
        assert s.get("short") is None
        assert s.ttl("short") == -2
        assert not s.exists("short")
        assert s.keys() == ["long"]
    # Expired keys must not come back, whether or not a DELETE was logged for them.
    with reopen(log_path) as s:
        assert s.keys() == ["long"]
        assert len(s) == 1
        assert 990_000 < s.ttl("long") <= 1_000_000


def test_expired_records_are_dropped_at_replay_without_delete_records(log_path):
    with reopen(log_path, local_expiry=False) as s:
        s.set("a", "1", ttl=0.05)
        s.set("b", "2")
        s.expire("b", 0.05)
        s.set("c", "3")
        time.sleep(0.08)
        assert s.get("a") is None
        assert len(s) == 3  # hidden, but the store did not delete them on its own
    with reopen(log_path) as s:
        assert s.keys() == ["c"]
        assert len(s) == 1


def test_expire_persist_and_expires_at(log_path):
    with reopen(log_path) as s:
        s.set("k", "v")
        assert s.expire("k", 100)
        assert 99_000 < s.ttl("k") <= 100_000
        assert s.persist("k")
        assert not s.persist("k")
        assert s.ttl("k") == -1
        at = int(time.time() * 1000) + 3_600_000
        assert s.expire("k", expires_at=at)
        assert s.expires_at("k") == at
        assert s.expire("k")  # neither argument: clear
        assert s.expires_at("k") is None
        s.expire("k", expires_at=at)
    with reopen(log_path) as s:
        assert s.expires_at("k") == at
        assert s.expire("k", expires_at=1)
        assert s.get("k") is None
    with reopen(log_path) as s:
        assert s.get("k") is None


def test_active_cycle_reclaims_memory_incrementally():
    n = 60_000
    with Store(background=False) as s:
        at = int(time.time() * 1000) + 50
        for i in range(n):
            s.set(f"t{i}", "v", expires_at=at)
        for i in range(100):
            s.set(f"p{i}", "v")
        for i in range(100):
            s.set(f"l{i}", "v", ttl=1000)
        time.sleep(max(0.0, at / 1000 - time.time()) + 0.01)
        assert len(s) == n + 200  # nothing touched yet
        s.tick()
        # One tick makes progress but is bounded in time: never a scan of everything at once.
        assert 200 < len(s) < n + 200
        deadline = time.monotonic() + 20
        while len(s) > 200 and time.monotonic() < deadline:
            s.tick()
        assert len(s) == 200
        assert s.stats["expires"] == 100
        assert s.stats["expired_keys"] == n


def test_background_thread_reclaims_expired_keys(log_path):
    with Store(path=log_path, fsync="everysec") as s:
        for i in range(500):
            s.set(f"t{i}", "v", ttl=0.05)
        s.set("keep", "v")
        deadline = time.monotonic() + 5
        while len(s) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(s) == 1
        # everysec: the background thread fsynced what was written.
        deadline = time.monotonic() + 3
        while s.stats["log_synced_bytes"] < s.stats["log_bytes"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s.stats["log_synced_bytes"] == s.stats["log_bytes"]
    with reopen(log_path) as s:
        assert s.keys() == ["keep"]


def test_keys_prefix_limit_sorted():
    with Store(background=False) as s:
        for k in ["b2", "a1", "b1", "c", "b3", "bx"]:
            s.set(k, "v")
        s.set("b0", "v", expires_at=1)
        assert s.keys() == ["a1", "b1", "b2", "b3", "bx", "c"]
        assert s.keys("b") == ["b1", "b2", "b3", "bx"]
        assert s.keys("b", limit=2) == ["b1", "b2"]
        assert s.keys("b", limit=0) == []
        assert s.keys("zz") == []


def test_config_object_and_kwargs(log_path):
    cfg = StoreConfig(path=log_path, fsync="always", background=False)
    with Store(cfg) as s:
        s.set("a", "1")
        st = s.stats
        assert st["fsync"] == "always"
        assert st["log_synced_bytes"] == st["log_bytes"] > 0
        assert st["keys"] == 1
    with pytest.raises(ValueError):
        Store(fsync="sometimes")
    with Store(cfg, fsync="no") as s:
        assert s.stats["fsync"] == "no"


def test_close_is_idempotent_and_writes_after_close_fail(log_path):
    s = Store(path=log_path)
    s.set("a", "1")
    s.close()
    s.close()
    with pytest.raises(StorageError):
        s.set("b", "2")
    assert s.get("a") == ("1", None)


def test_second_process_cannot_open_the_same_log(log_path):
    # flock is per open file description, so a second open in this process stands in for it.
    with reopen(log_path):
        with pytest.raises(StorageError, match="in use"):
            reopen(log_path)


def test_deferred_sync_group_commit(log_path):
    with reopen(log_path, fsync="always") as s:
        with s.deferred_sync():
            for i in range(10):
                s.set(f"k{i}", "v")
            st = s.stats
            assert st["log_synced_bytes"] < st["log_bytes"]
        s.sync()
        st = s.stats
        assert st["log_synced_bytes"] == st["log_bytes"]
        s.set("after", "v")  # outside the block: fsynced by the call itself
        assert s.stats["log_synced_bytes"] == s.stats["log_bytes"]


def test_concurrent_writers_readers_and_compaction(log_path):
    errors: list[BaseException] = []
    with Store(path=log_path, fsync="no", background=False) as s:

        def writer(n: int) -> None:
            try:
                for i in range(2000):
                    s.set(f"w{n}:{i}", str(i), ttl=1000 if i % 3 == 0 else None)
                    if i % 5 == 0:
                        s.delete(f"w{n}:{i - 1}")
                    s.get(f"w{n}:{i // 2}")
            except BaseException as exc:
                errors.append(exc)

        stop = threading.Event()

        def syncer() -> None:
            # As the server's fsync worker does, while rewrites swap the file underneath.
            try:
                while not stop.is_set():
                    s.sync()
                    time.sleep(0.001)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
        sync_thread = threading.Thread(target=syncer)
        for t in [*threads, sync_thread]:
            t.start()
        for _ in range(3):
            s.compact()
            s.sync()
        for t in threads:
            t.join(timeout=60)
        stop.set()
        sync_thread.join(timeout=60)
        assert not errors
        assert s.stats["rewrites"] == 3
        s.sync()
        assert s.stats["log_synced_bytes"] == s.stats["log_bytes"]
        expected = sorted((k, v) for k, v, _ in s.items())
    with reopen(log_path) as s:
        assert sorted((k, v) for k, v, _ in s.items()) == expected


def test_failed_fsync_refuses_writes_until_a_rewrite(log_path, monkeypatch):
    # An fsync error cannot be produced on demand on a real disk here, so the OS call is made to
    # fail once; everything around it (files, rewrite, replay) is real.
    with reopen(log_path, fsync="everysec") as s:
        s.set("a", "1")
        real_fsync = os.fsync

        def failing_fsync(fd: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(store_module.os, "fsync", failing_fsync)
        with pytest.raises(StorageError, match="fsync"):
            s.sync()
        with pytest.raises(StorageError, match="rewritten"):
            s.set("b", "2")
        assert s.get("a") == ("1", None)  # reads keep working
        assert s.get("b") is None
        monkeypatch.setattr(store_module.os, "fsync", real_fsync)
        deadline = time.monotonic() + 10
        while s.stats["rewrites"] == 0 and time.monotonic() < deadline:
            s.tick()  # starts the recovery rewrite in a thread
            time.sleep(0.02)
        assert s.stats["rewrites"] == 1
        s.set("b", "2")
    with reopen(log_path) as s:
        assert sorted(s.items()) == [("a", "1", None), ("b", "2", None)]


def test_compact_without_waiting(log_path):
    with reopen(log_path) as s:
        for i in range(2000):
            s.set("k", str(i))
        s.compact(wait=False)
        deadline = time.monotonic() + 10
        while s.stats["rewrites"] == 0 and time.monotonic() < deadline:
            s.set("during", "rewrite")
            time.sleep(0.001)
        assert s.stats["rewrites"] == 1
        assert s.stats["log_bytes"] < 1000
    with reopen(log_path) as s:
        assert sorted(s.items()) == [("during", "rewrite", None), ("k", "1999", None)]


def test_tick_fsyncs_everysec_without_blocking_the_caller(log_path):
    with reopen(log_path, fsync="everysec") as s:
        s.set("a", "1")
        assert s.stats["log_synced_bytes"] < s.stats["log_bytes"]
        deadline = time.monotonic() + 5
        while s.stats["log_synced_bytes"] < s.stats["log_bytes"] and time.monotonic() < deadline:
            s.tick()  # the fsync is due ~1 s after the last one, and runs in a helper thread
            time.sleep(0.05)
        assert s.stats["log_synced_bytes"] == s.stats["log_bytes"]
    with reopen(log_path, fsync="no") as s:
        s.set("a", "2")
        time.sleep(1.1)
        s.tick()
        time.sleep(0.1)
        assert s.stats["log_synced_bytes"] < s.stats["log_bytes"]  # fsync=no: left to the OS


def test_failed_fsync_of_an_always_write(log_path, monkeypatch):
    with reopen(log_path, fsync="always") as s:
        s.set("a", "1")
        size = s.stats["log_bytes"]

        def failing_fsync(fd: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

        real_fsync = os.fsync
        monkeypatch.setattr(store_module.os, "fsync", failing_fsync)
        with pytest.raises(StorageError):
            s.set("b", "2")
        assert s.get("b") is None
        assert s.stats["log_bytes"] == size  # the record is cut off again
        monkeypatch.setattr(store_module.os, "fsync", real_fsync)
        s.set("b", "2")  # everything before was fsynced: no rewrite needed
        with s.deferred_sync():
            s.set("c", "3")  # written, not yet fsynced
        monkeypatch.setattr(store_module.os, "fsync", failing_fsync)
        with pytest.raises(StorageError):
            s.set("d", "4")
        monkeypatch.setattr(store_module.os, "fsync", real_fsync)
        # "c" may have been dropped by the failed fsync: refuse writes until a rewrite.
        with pytest.raises(StorageError, match="rewritten"):
            s.set("e", "5")
        s.compact()
        s.set("e", "5")
        expected = sorted(s.items())
    with reopen(log_path) as s:
        assert sorted(s.items()) == expected
        assert [k for k, _, _ in expected] == ["a", "b", "c", "e"]
