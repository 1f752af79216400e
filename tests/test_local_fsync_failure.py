"""LocalBackend with fsync=always when the fsync itself fails: writes are reported as of unknown
outcome (they are applied in memory), never as success and never as a clean failure."""

from __future__ import annotations

import asyncio
import errno

import yakvs.store as store_module
from yakvs.local import open_local_backend
from yakvs.protocol import Op, Request


def test_failed_group_fsync_reports_unknown_outcome(tmp_path, monkeypatch):
    # An fsync error cannot be produced on demand on a real disk, so the OS call is made to fail;
    # the store, its log file and the backend's group commit are real.
    async def main() -> None:
        backend = open_local_backend(str(tmp_path / "kvs.log"), "always")
        await backend.start()
        try:
            [ok] = await backend.execute([Request(Op.SET, "a", "1")])
            assert ok.ok

            def failing_fsync(fd: int) -> None:
                raise OSError(errno.EIO, "Input/output error")

            monkeypatch.setattr(store_module.os, "fsync", failing_fsync)
            [write, read] = await backend.execute(
                [Request(Op.SET, "b", "2"), Request(Op.GET, "a")]
            )
            assert not write.ok and write.code == "UNKNOWN_OUTCOME", write
            assert read.ok and read.value == "1"
        finally:
            monkeypatch.undo()
            await backend.close()

    asyncio.run(main())
