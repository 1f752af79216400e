"""Fault suite: the standalone server's disk fills up under it.

The log lives on a small tmpfs mounted in a private mount namespace (``unshare -m``) that a
``sleep`` process keeps alive, so the server can be killed and restarted onto the same "disk";
the test reaches the namespace's files through ``/proc/<pid>/root``. Needs root.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from yakvs.protocol import Op, Request
from yakvs.testing.history import History, Kind, Outcome, WireSession, execute_recorded
from yakvs.testing.linearizability import Verdict, check

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("nsenter")),
    reason="needs root and unshare/nsenter (util-linux) for a private tmpfs mount",
)

KEYS = [f"k{i}" for i in range(5)]
BIG = "x" * 8192  # more than a page: cannot fit in the slack of the log's last tmpfs page


class _Disk:
    """A 512 KiB tmpfs at ``mountpoint`` inside a mount namespace held open by ``holder``."""

    def __init__(self, mountpoint: Path) -> None:
        mountpoint.mkdir()
        self.mountpoint = mountpoint
        self.holder = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             'mount -t tmpfs -o size=512k yakvs-test "$0" && echo mounted && exec sleep 600',
             str(mountpoint)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        line = self.holder.stdout.readline()  # type: ignore[union-attr]
        if line.strip() != b"mounted":
            self.holder.kill()
            pytest.skip(f"cannot mount a tmpfs in a private namespace: {self.holder.stderr.read()}")  # type: ignore[union-attr]

    def path(self, name: str) -> Path:
        """A file on the tmpfs as seen from outside the namespace."""
        return Path(f"/proc/{self.holder.pid}/root") / self.mountpoint.relative_to("/") / name

    def fill(self) -> int:
        """Fill the tmpfs to the last byte; returns how much was written."""
        written = 0
        with open(self.path("filler"), "wb", buffering=0) as f:
            for size in (65536, 4096, 1):
                chunk = b"\0" * size
                while True:
                    try:
                        n = f.write(chunk)
                    except OSError as exc:
                        assert exc.errno == errno.ENOSPC, exc
                        break
                    written += n or 0
                    if not n:
                        break
        return written

    def free(self) -> None:
        self.path("filler").unlink()

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait(10)


class _Server:
    """yakvs-server run inside the disk's namespace by ``nsenter``; restartable on one port."""

    def __init__(self, disk: _Disk, stderr_dir: Path) -> None:
        self.disk = disk
        self.stderr_dir = stderr_dir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_files: list[Path] = []

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        err_path = self.stderr_dir / f"server-{len(self.stderr_files)}.err"
        self.stderr_files.append(err_path)
        cmd = [
            "nsenter", f"--mount=/proc/{self.disk.holder.pid}/ns/mnt", "--",
            sys.executable, "-m", "yakvs.cli.server", "--addr", f"127.0.0.1:{self.port}",
            "--log", str(self.disk.mountpoint / "kvs.log"), "--fsync", "always",
        ]
        with open(err_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            found = re.search(r"listening on \S+:(\d+)", err_path.read_text(errors="replace"))
            if found:
                self.port = int(found.group(1))
                return
            assert self.proc.poll() is None, err_path.read_text(errors="replace")
            time.sleep(0.02)
        raise AssertionError("server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def tracebacks(self) -> list[str]:
        return [p.read_text() for p in self.stderr_files if "Traceback" in p.read_text()]


@pytest.fixture
def disk_server(tmp_path) -> Iterator[_Server]:
    disk = _Disk(tmp_path / "disk")
    server = _Server(disk, tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.kill()
        disk.close()


def test_disk_full_fails_writes_keeps_reads_and_loses_nothing(disk_server):
    history = History()
    session = WireSession(disk_server.addr, timeout=5.0)
    session.connect()

    def run(kind: Kind, key: str, value: str | None = None) -> Outcome:
        return execute_recorded(history, session, 0, kind, key, value)

    for key in KEYS:
        assert run(Kind.SET, key, history.unique_value(0)) is Outcome.OK
    assert run(Kind.DELETE, KEYS[0]) is Outcome.OK

    assert disk_server.disk.fill() > 0
    for i in range(10):
        key = KEYS[i % len(KEYS)]
        reply = session.execute(Request(Op.SET, key, BIG))
        assert reply.code == "IO_ERROR", reply
        # The same failure, recorded: the checker then rejects any later read of this value.
        assert run(Kind.SET, key, history.unique_value(0) + BIG) is Outcome.FAILED
    for key in KEYS:
        assert run(Kind.GET, key) is Outcome.OK  # reads keep working, with the old values

    disk_server.disk.free()
    for key in KEYS[:3]:
        assert run(Kind.SET, key, history.unique_value(0) + BIG) is Outcome.OK
    session.close()

    # Everything acknowledged must come back from the log, and nothing that failed.
    disk_server.kill()
    disk_server.start()
    session = WireSession(disk_server.addr, timeout=5.0)
    session.connect()
    for key in KEYS:
        assert run(Kind.GET, key) is Outcome.OK
    session.close()

    assert history.counts() == {"ok": 19, "failed": 10, "unknown": 0}
    result = check(history.operations())
    assert result.verdict is Verdict.OK, result.describe()
    assert not disk_server.tracebacks()
