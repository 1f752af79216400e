"""Store durability: fsync policies, group commit, fsync failures, threads, close, locking."""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest

import yakvs.store as store_module
from yakvs.errors import StorageError
from yakvs.store import Store


@pytest.fixture
def log_path(tmp_path):
    return tmp_path / "kv.log"


def reopen(path, **kw) -> Store:
    return Store(path=path, background=False, **kw)


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
        # At least once, whether or not the rewrite has already finished by now.
        s.set("during", "rewrite")
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
