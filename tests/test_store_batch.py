"""Store batches: same replies and same log as one-by-one execution; a failed write undoes all."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yakvs.errors import BadRequestError, StorageError
from yakvs.local import LocalBackend
from yakvs.protocol import Op, Request
from yakvs.store import Store

FAR = 4_000_000_000_000  # epoch ms in 2096: never expires during a test
KEYS = ["a", "b", "c", "d\n é"]

_op = st.one_of(
    st.builds(
        lambda k, v, at: Request(Op.SET, k, v, expires_at=at),
        st.sampled_from(KEYS),
        st.text(max_size=20),
        st.sampled_from([None, FAR, FAR + 1]),
    ),
    st.builds(lambda k: Request(Op.GET, k), st.sampled_from(KEYS)),
    # The server's decoded form of plain SET/GET (protocol.fast_request): Store/Batch.put.
    st.builds(
        lambda k, v, at: (Op.SET, k, v, 1, at),
        st.sampled_from(KEYS),
        st.text(max_size=20),
        st.sampled_from([None, FAR, FAR + 2]),
    ),
    st.builds(lambda k: (Op.GET, k, "", 0, None), st.sampled_from(KEYS)),
    st.builds(lambda k: Request(Op.DELETE, k), st.sampled_from(KEYS)),
    st.builds(lambda k: Request(Op.TTL, k), st.sampled_from(KEYS)),
    st.builds(lambda k: Request(Op.EXISTS, k), st.sampled_from(KEYS)),
    st.just(Request(Op.KEYS)),
    # A lone surrogate cannot be logged: the op fails alone, the rest of its batch goes on.
    st.just(Request(Op.SET, "bad", "\ud800")),
)


def _normalise(lines: bytes) -> list[dict]:
    # Remaining TTLs depend on the clock of each run; what matters is that both had one.
    out = []
    for line in lines.splitlines():
        reply = orjson.loads(line)
        if reply.get("ttl", -1) > 0:
            reply["ttl"] = "positive"
        out.append(reply)
    return out


def _replayed(path) -> list[tuple[str, str, int | None]]:
    with Store(path=path, background=False) as store:
        return sorted(store.items())


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(_op, max_size=40), cuts=st.lists(st.integers(0, 40), max_size=6))
def test_batches_answer_and_log_exactly_as_one_by_one(tmp_path_factory, ops, cuts):
    folder = tmp_path_factory.mktemp("batch")
    bounds = sorted({0, len(ops), *(c for c in cuts if c <= len(ops))})
    results = {}
    for mode in ("batched", "single"):
        path = folder / f"{mode}.log"
        with Store(path=path, fsync="no", background=False) as store:
            backend = LocalBackend(store)
            out = b""
            if mode == "batched":
                for lo, hi in itertools.pairwise(bounds):
                    out += backend.try_execute_encoded(ops[lo:hi]) or b""
            else:
                for op in ops:
                    out += backend.run_encoded(store, [op])
            memory = sorted(store.items())
        results[mode] = (_normalise(out), memory, _replayed(path))
        assert results[mode][1] == results[mode][2], "replay differs from memory"
    assert results["batched"] == results["single"]


def test_failed_batch_write_is_undone_in_full(tmp_path, monkeypatch):
    # An I/O error cannot be had on demand from a real disk without root; the subprocess tests
    # below do it for real (file size limit, tmpfs). Here: the one write of the batch fails.
    store = Store(path=tmp_path / "kv.log", background=False)
    store.set("ttl", "old", expires_at=FAR)
    store.set("plain", "old")
    store.set("gone", "x")
    store.set("ttl2", "old", expires_at=FAR)
    before = sorted(store.items())
    size = os.path.getsize(tmp_path / "kv.log")
    real_pwrite = os.pwrite

    def failing_pwrite(fd, data, offset):
        real_pwrite(fd, bytes(data)[:7], offset)  # a partial record on disk, then the error
        raise OSError(28, "No space left on device")

    with pytest.raises(StorageError):
        with store.batch() as batch:
            batch.set("ttl", "new")  # drops the expiry
            batch.set("plain", "new", expires_at=FAR + 5)  # adds one
            batch.set("new", "1")
            batch.delete("gone")
            batch.set("new", "2")
            batch.put("ttl2", "put", None)  # the server's path for decoded SETs
            batch.put("plain", "put", None)
            batch.put("fresh", "put", FAR)
            assert batch.get("new") == ("2", None)
            with pytest.raises(BadRequestError):
                batch.set("", "empty key")
            monkeypatch.setattr(os, "pwrite", failing_pwrite)
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    assert sorted(store.items()) == before
    assert store.expires_at("ttl") == FAR and store.expires_at("plain") is None
    assert store.expires_at("ttl2") == FAR
    store.set("after", "ok")
    store.close()
    assert _replayed(tmp_path / "kv.log") == sorted([*before, ("after", "ok", None)])
    assert os.path.getsize(tmp_path / "kv.log") > size


def test_exception_inside_a_batch_undoes_it_and_writes_nothing(tmp_path):
    path = tmp_path / "kv.log"
    with Store(path=path, background=False) as store:
        store.set("a", "1")
        size = os.path.getsize(path)
        with pytest.raises(KeyError), store.batch() as batch:
            batch.set("a", "2")
            batch.delete("a")
            raise KeyError("boom")
        assert store.get("a") == ("1", None)
        assert os.path.getsize(path) == size
        with store.batch() as batch:  # the lock was released
            batch.set("b", "2")
    assert _replayed(path) == [("a", "1", None), ("b", "2", None)]


# Run in a child process: the file size limit (RLIMIT_FSIZE) or a private tmpfs makes the log's
# write fail for real. One server batch holds a write that no longer fits, so it is undone and
# re-run one by one: the small writes succeed, the big one fails with IO_ERROR.
CHILD = textwrap.dedent(
    """
    import json, os, resource, signal, sys
    from yakvs.local import LocalBackend
    from yakvs.protocol import Op, Request
    from yakvs.store import Store

    folder, how = sys.argv[1], sys.argv[2]
    path = os.path.join(folder, "kv.log")
    store = Store(path=path, fsync="no", background=False)
    store.set("pre", "p")
    if how == "rlimit":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + 3000, hard))
    else:
        with open(os.path.join(folder, "filler"), "wb", buffering=0) as f:
            for chunk in (65536, 4096, 1):
                try:
                    while True:
                        f.write(b"x" * chunk)
                except OSError:
                    pass
    backend = LocalBackend(store)
    batch = [
        Request(Op.SET, "a", "1" * 500),
        Request(Op.SET, "big", "x" * 20000),
        Request(Op.GET, "big"),
        Request(Op.DELETE, "pre"),
        Request(Op.GET, "a"),
        Request(Op.GET, "pre"),
    ]
    replies = [json.loads(line) for line in backend.try_execute_encoded(batch).splitlines()]
    memory = sorted(store.items())
    if how != "rlimit":
        os.unlink(os.path.join(folder, "filler"))
    store.close()
    if how == "rlimit":
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    with Store(path=path, background=False) as again:
        replayed = sorted(again.items())
    print(json.dumps({"replies": replies, "memory": memory, "replayed": replayed}))
    """
)


def _check_child(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    codes = [r.get("code", r["status"]) for r in got["replies"]]
    assert codes == ["success", "IO_ERROR", "NOT_FOUND", "success", "success", "NOT_FOUND"]
    assert got["replies"][4]["value"] == "1" * 500
    assert got["memory"] == got["replayed"] == [["a", "1" * 500, None]]


def test_failed_batch_on_a_file_size_limit_is_rerun_one_by_one(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), "rlimit"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    _check_child(proc)


def test_failed_batch_on_a_full_tmpfs_is_rerun_one_by_one(tmp_path):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to mount a private tmpfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = f'mount -t tmpfs -o size=256k yakvs-test {mnt} || exit 77; exec "$0" -c "$1" {mnt} x'
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, sys.executable, CHILD],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode == 77 or "Operation not permitted" in proc.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[:200]}")
    _check_child(proc)


def test_batches_during_rewrites_are_all_in_the_new_log(tmp_path):
    path = tmp_path / "kv.log"
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(3000):
                if stop.is_set():
                    return
                with store.batch() as batch:
                    for j in range(16):
                        batch.put(f"k{(i * 16 + j) % 5000}", f"{i}.{j}", FAR if j % 4 else None)
                    batch.delete(f"k{i % 5000}")
        except BaseException as exc:
            errors.append(exc)

    with Store(path=path, fsync="no", background=False) as store:
        thread = threading.Thread(target=writer)
        thread.start()
        try:
            for _ in range(3):
                store.compact()
        finally:
            thread.join(timeout=60)
            stop.set()
        assert not errors
        assert store.stats["rewrites"] == 3
        memory = sorted(store.items())
    assert _replayed(path) == memory
