"""Child process for the store's crash and disk-full tests (run as a script, not collected).

python store_child.py crash LOG START   write ops from index START, print "A <i>" after each
                                        acknowledged one, until killed (or 20,000 ops)
python store_child.py diskfull DIR      fill a tiny filesystem mounted at DIR, check the store's
                                        behaviour, print one JSON line with the results
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from yakvs.errors import StorageError
from yakvs.store import Store


def crash_value(i: int) -> str:
    return f'v{i} \n"\x00é😀' * (i % 3 + 1)


def crash_op(i: int) -> tuple[str, str, str | None]:
    """The i-th op of the crash workload: ("set", key, value) or ("delete", key, None)."""
    if i % 4 == 3:
        return "delete", f"k{i - 2}", None
    return "set", f"k{i}", crash_value(i)


def group_size(i: int, mode: str) -> int:
    """How many ops the batch starting at op i has: 1, or 1..7 for group commit."""
    return 1 if mode == "single" else 1 + i % 7


def crash(log: str, start: int, mode: str) -> None:
    """Acknowledge ops as the server does: one by one (fsync each), or per group commit."""
    out = sys.stdout
    with Store(path=log, fsync="always") as store:
        i = start
        while i < start + 20_000:
            batch = range(i, i + group_size(i, mode))
            with store.deferred_sync() if mode == "group" else contextlib.nullcontext():
                for j in batch:
                    kind, key, value = crash_op(j)
                    if kind == "set":
                        assert value is not None
                        store.set(key, value, ttl=3600 if j % 5 == 0 else None)
                    else:
                        store.delete(key)
            store.sync()
            # One small write to the pipe: a batch is acknowledged whole or not at all.
            out.write("".join(f"A {j}\n" for j in batch))
            out.flush()
            if any(j % 97 == 0 for j in batch):
                store.compact()
            i = batch.stop


def diskfull(folder: str) -> None:
    root = Path(folder)
    ballast = root / "ballast"
    ballast.write_bytes(b"\xff" * 96 * 1024)
    log = root / "kv.log"
    acked: dict[str, str] = {}
    result: dict[str, object] = {}
    store = Store(path=log, fsync="always", background=False)
    value = "x" * 1000
    failed_at = None
    for i in range(1000):
        try:
            store.set(f"k{i}", value + str(i))
        except StorageError:
            failed_at = i
            break
        acked[f"k{i}"] = value + str(i)
    assert failed_at is not None, "the tiny filesystem never filled up"
    result["acked_before_full"] = len(acked)
    # Memory is exactly as before the failed call, reads work, and no partial record is left.
    assert store.get(f"k{failed_at}") is None
    assert all(store.get(k) == (v, None) for k, v in acked.items())
    assert log.stat().st_size == store.stats["log_bytes"]
    size_when_full = log.stat().st_size
    for attempt in range(3):
        try:
            store.set("big", "y" * 5000)
            raise AssertionError("a write succeeded on a full disk")
        except StorageError:
            pass
        assert log.stat().st_size == size_when_full, attempt
    try:
        store.compact()
        raise AssertionError("a rewrite succeeded without room for a copy")
    except StorageError:
        pass
    assert log.stat().st_size == size_when_full
    assert sorted(p.name for p in root.iterdir()) == ["ballast", "kv.log"]
    result["errors_counted"] = store.stats["log_errors"]
    # Space comes back: writes work again, and so does a rewrite.
    ballast.unlink()
    for i in range(failed_at, failed_at + 20):
        store.set(f"k{i}", value + str(i))
        acked[f"k{i}"] = value + str(i)
    # A rewrite needs room for a copy of the live data: make the live data small first.
    for key in sorted(acked, key=lambda k: int(k[1:]))[:-30]:
        assert store.delete(key)
        del acked[key]
    store.compact()
    store.set("after-rewrite", "ok")
    acked["after-rewrite"] = "ok"
    store.close()
    with Store(path=log, background=False) as again:
        got = {k: v for k, v, _ in again.items()}
    assert got == acked, (len(got), len(acked))
    result["acked_total"] = len(acked)
    result["ok"] = True
    print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1] == "crash":
        crash(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif sys.argv[1] == "diskfull":
        diskfull(sys.argv[2])
    else:
        raise SystemExit(f"unknown mode {sys.argv[1]!r}")
