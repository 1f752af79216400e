"""A node's data folder: the lock, ``node.json`` (what a restart needs), the LEFT marker and
pysyncobj's journal and dump files."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from yakvs.raft.config import StartupError

META_FILE = "node.json"
LEFT_FILE = "LEFT"
# pysyncobj's files; a folder without META_FILE holds them only from a join that never
# completed (no acknowledged data), and they are removed before starting afresh.
JOURNAL_FILE = "journal.bin"
DUMP_FILE = "dump.bin"
_PARTIAL = (JOURNAL_FILE, JOURNAL_FILE + ".meta", DUMP_FILE, DUMP_FILE + ".tmp")


class NodeFolder:
    """``<data_dir>/<node_id>/``; one process at a time (see :meth:`lock`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None

    @property
    def journal_file(self) -> str:
        return str(self.path / JOURNAL_FILE)

    @property
    def dump_file(self) -> str:
        return str(self.path / DUMP_FILE)

    def lock(self) -> None:
        """Create and lock the folder; idempotent. Two processes on one folder would
        interleave their journals: the second is refused."""
        if self._lock_fd is not None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StartupError(f"{self.path} is in use by another yakvs-raft process") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def has_data(self) -> bool:
        return (self.path / META_FILE).exists()

    def remove_partial(self) -> None:
        if not self.has_data():
            for name in _PARTIAL:
                (self.path / name).unlink(missing_ok=True)

    def read_meta(self, node_id: str) -> dict[str, Any]:
        if (self.path / LEFT_FILE).exists():
            raise StartupError(
                f"node {node_id} left or was removed from its cluster; "
                f"wipe {self.path} to join again"
            )
        try:
            meta: dict[str, Any] = json.loads((self.path / META_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise StartupError(f"cannot read {self.path / META_FILE}: {exc}") from exc
        return meta

    def write_meta(self, meta: dict[str, Any]) -> None:
        # Atomic: a crash mid-write leaves the previous version.
        tmp = self.path / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, self.path / META_FILE)

    def mark_left(self) -> None:
        (self.path / LEFT_FILE).write_text("left the cluster\n")
