"""Redis writes in the command log: EXPIRE/PEXPIRE/PERSIST as one E record, FLUSHALL as one F
record, SET ... KEEPTTL with the key's exact expiry; replay, batches (and their undo) and
rewrites around them."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

import yakvs._rewrite
from yakvs.errors import StorageError
from yakvs.store import Store
from yakvs.testing.server import run_server

FAR = 4_000_000_000_000  # epoch ms in 2096


def _records(log: Path, since: int) -> list[list[Any]]:
    """The payloads of the records appended after byte ``since``."""
    tail = log.read_bytes()[since:]
    assert tail.endswith(b"\n") or not tail
    return [orjson.loads(line[9:]) for line in tail.splitlines()]


def _one(log: Path, since: int) -> tuple[list[Any], int]:
    """The single record appended after ``since``, and its size in bytes."""
    records = _records(log, since)
    assert len(records) == 1, records
    return records[0], os.path.getsize(log) - since


def test_expire_persist_flushall_log_one_small_record_each_and_replay(tmp_path: Path) -> None:
    log = tmp_path / "kv.log"
    big = "v" * 20_000
    with run_server(log) as handle:
        r = redis.Redis(handle.host, handle.port, protocol=3, socket_timeout=5)
        r.set("big", big)
        r.set(b"\xffbin", big)
        size = os.path.getsize(log)
        assert r.expire("big", 1000)
        (op, key, value, at), grew = _one(log, size)
        assert (op, key, value) == ("E", "big", None) and grew < 60
        expire_at = at
        assert abs(at - (time.time() * 1000 + 1_000_000)) < 5000

        size = os.path.getsize(log)
        assert r.pexpire(b"\xffbin", 2_000_000)
        (op, _key, value, at), grew = _one(log, size)  # binary key: a base64 bE record
        assert op == "bE" and value is None and grew < 60
        assert abs(at - (time.time() * 1000 + 2_000_000)) < 5000

        # Conditions that fail, and PERSIST of a key without expiry, write nothing.
        size = os.path.getsize(log)
        assert not r.expire("big", 10, nx=True) and not r.expire("missing", 10)
        r.set("plain", "p")
        size2 = os.path.getsize(log)
        assert not r.persist("plain") and not r.expire("plain", 10, xx=True)
        assert os.path.getsize(log) == size2 > size

        # KEEPTTL: the new value with the key's exact absolute expiry, not one re-derived.
        size = os.path.getsize(log)
        assert r.set("big", "small", keepttl=True)
        assert _one(log, size)[0] == ["S", "big", "small", expire_at]

        size = os.path.getsize(log)
        assert r.persist("big")
        assert _one(log, size)[0] == ["E", "big", None, 0]
        assert r.expire("plain", 500)
        r.set("gone", "x")
        size = os.path.getsize(log)
        assert r.expire("gone", -1) and r.exists("gone") == 0  # in the past: a DELETE
        assert _one(log, size)[0] == ["D", "gone", None, 0]
        r.close()
    with run_server(log) as handle:
        r = redis.Redis(handle.host, handle.port, protocol=2, socket_timeout=5)
        assert r.get("big") == b"small" and r.ttl("big") == -1
        assert 1_990_000 <= r.pttl(b"\xffbin") <= 2_000_000 and r.get(b"\xffbin") == big.encode()
        assert 490 <= r.ttl("plain") <= 500 and r.exists("gone") == 0

        r.mset({f"k{i}": "x" * 100 for i in range(2000)})
        size = os.path.getsize(log)
        assert r.flushall()
        record, grew = _one(log, size)
        assert record == ["F", None, None, 0] and grew == len(b'01234567 ["F",null,null,0]\n')
        r.set("after", "1", ex=300)
        r.set("after2", "2")
        r.close()
    with run_server(log) as handle:
        r = redis.Redis(handle.host, handle.port, protocol=2, socket_timeout=5)
        assert sorted(r.keys("*")) == [b"after", b"after2"]
        assert 295 <= r.ttl("after") <= 300 and r.ttl("after2") == -1
        r.close()


def test_pipelined_expire_persist_flush_in_one_batch(tmp_path: Path) -> None:
    """The same commands pipelined: one server batch, the Batch's expire/persist/flush."""
    log = tmp_path / "kv.log"
    with run_server(log) as handle:
        r = redis.Redis(handle.host, handle.port, protocol=2, socket_timeout=5)
        r.mset({"a": "1", "b": "2"})
        size = os.path.getsize(log)
        pipe = r.pipeline(transaction=False)
        pipe.expire("a", 100).pexpire("b", 200_000).persist("b").persist("b")
        pipe.set("a", "A", keepttl=True).flushall().set("c", "3", ex=50).expire("c", 60)
        assert pipe.execute() == [True, True, True, False, True, True, True, True]
        ops = [rec[0] for rec in _records(log, size)]
        assert ops == ["E", "E", "E", "S", "F", "S", "E"]
        r.close()
    with run_server(log) as handle:
        r = redis.Redis(handle.host, handle.port, protocol=2, socket_timeout=5)
        assert r.keys("*") == [b"c"] and 55 <= r.ttl("c") <= 60
        r.close()


def test_failed_batch_with_expire_persist_flush_is_undone(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "kv.log"
    store = Store(path=path, background=False)
    store.set("ttl", "1", expires_at=FAR)
    store.set("plain", "2")
    store.set("other", "3", expires_at=FAR + 7)
    before = sorted(store.items())
    real_pwrite = os.pwrite

    def failing_pwrite(fd: int, data: bytes, offset: int) -> int:
        real_pwrite(fd, bytes(data)[:5], offset)
        raise OSError(28, "No space left on device")

    with pytest.raises(StorageError):
        with store.batch() as batch:
            assert batch.persist("ttl") and not batch.persist("plain")
            assert batch.expire("plain", expires_at=FAR + 1)
            assert batch.expires_at("plain") == FAR + 1
            assert batch.flush() == 3 and batch.get("other") is None
            batch.set("new", "4")
            monkeypatch.setattr(os, "pwrite", failing_pwrite)
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    assert sorted(store.items()) == before
    assert store.expires_at("ttl") == FAR and store.expires_at("plain") is None
    store.close()
    with Store(path=path, background=False) as again:
        assert sorted(again.items()) == before


def test_flush_during_a_rewrite_is_in_the_new_log(tmp_path: Path, monkeypatch) -> None:
    """F arriving while the snapshot is written goes after the snapshot in the new file."""
    path = tmp_path / "kv.log"
    real = yakvs._rewrite.write_snapshot

    with Store(path=path, fsync="no", background=False) as store:
        for i in range(100):
            store.set(f"k{i}", "x", expires_at=FAR if i % 2 else None)

        def snapshot_then_flush(*args: Any, **kwargs: Any) -> Any:
            result = real(*args, **kwargs)
            store.flush()  # the rewrite holds no lock here: this is a concurrent write
            store.set("after", "1", expires_at=FAR)
            return result

        monkeypatch.setattr(yakvs._rewrite, "write_snapshot", snapshot_then_flush)
        store.compact()
        assert store.stats["rewrites"] == 1
        assert sorted(store.items()) == [("after", "1", FAR)]
    monkeypatch.undo()
    lines = path.read_bytes().splitlines()
    assert lines[-2].endswith(b'["F",null,null,0]') and len(lines) == 1 + 100 + 2
    with Store(path=path, background=False) as again:
        assert sorted(again.items()) == [("after", "1", FAR)]
        again.compact()  # a rewrite from memory drops the F and everything before it
    assert len(path.read_bytes().splitlines()) == 2
    with Store(path=path, background=False) as again:
        assert sorted(again.items()) == [("after", "1", FAR)]


def test_bad_flush_record_is_refused_like_any_bad_record(tmp_path: Path) -> None:
    from zlib import crc32

    from yakvs.errors import LogCorruptError

    path = tmp_path / "kv.log"
    with Store(path=path, background=False) as store:
        store.set("a", "1")
    payload = b'["F","a",null,0]'
    good = b'["S","b","2",0]'
    with path.open("ab") as f:
        for p in (payload, good):
            f.write(b"%08x %b\n" % (crc32(p), p))
    with pytest.raises(LogCorruptError, match="bad FLUSH record"):
        Store(path=path, background=False)
