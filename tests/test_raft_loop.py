"""pysyncobj driven from the event loop: the deferred commit notice saves raft messages under
load, and followers still learn every commit, serve linearizable reads and compact their logs."""

from __future__ import annotations

import asyncio

import pytest

from yakvs.protocol import Op, Request
from yakvs.raft.backend import RaftBackend
from yakvs.raft.config import RaftConfig
from yakvs.raft.node import RaftNode
from yakvs.raft.startup import bring_up
from yakvs.testing.cluster import free_ports

pytestmark = pytest.mark.timeout(60)


async def _until(check, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_commit_notice_under_load_keeps_followers_exact(tmp_path):
    async def main():
        addrs = [f"127.0.0.1:{p}" for p in free_ports(6)]
        a = RaftNode(RaftConfig("a", *addrs[:3], data_dir=tmp_path, bootstrap=True,
                                secret="s3cret"))
        b = RaftNode(RaftConfig("b", *addrs[3:], data_dir=tmp_path, secret="s3cret"))
        try:
            await bring_up(a, a.membership)
            b.start_sync([a.raft_addr])
            await a.join("b", *addrs[3:])
            await b.wait_leader(5)
            leader, follower = RaftBackend(a), RaftBackend(b)
            assert a.commit_notice is not None
            # 50 clients writing one key after another: while one batch is in flight the
            # next is queued, so the commit-only append-entries waits for the next batch's.
            async def client(c: int) -> None:
                for n in range(5):
                    for i in range(c, 200, 50):
                        reply = await leader.execute([Request(Op.SET, f"k{i}", f"v{n}")])
                        assert reply[0].ok
                        # Staggered, as clients over a network are: writes keep arriving
                        # while a batch is in flight.
                        await asyncio.sleep(0.0005 * (c % 4))

            await asyncio.gather(*(client(c) for c in range(50)))
            assert a.commit_notice.deferred > 0 and a.commit_notice.saved > 0
            assert a.writes.batches < 100
            # The follower learned every commit: its linearizable reads see the last wave,
            # and a lone write through it (nothing queued: the notice goes out at once) lands.
            reads = await asyncio.gather(*(
                follower.execute([Request(Op.GET, f"k{i}")]) for i in range(200)))
            assert [r[0].value for r in reads] == ["v4"] * 200
            assert (await follower.execute([Request(Op.SET, "lone", "x")]))[0].ok
            assert (await leader.execute([Request(Op.GET, "lone")]))[0].value == "x"
            await _until(lambda: b.state.dump() == a.state.dump(), timeout=5)
            # The wrappers must stay out of SyncObj's full dump, or compaction fails.
            a.snapshot()
            await _until(lambda: a.sync.getStatus()["log_len"] < 10)
        finally:
            await b.close()
            await a.close()

    asyncio.run(main())


def test_light_compression_interoperates_with_zlib():
    import zlib

    import pysyncobj.tcp_connection

    from yakvs.raft.loop import COMPRESS_ABOVE, install_light_compression

    install_light_compression()
    light = pysyncobj.tcp_connection.zlib
    for data in (b"", b"x", bytes(range(256)) * 20, b"y" * (COMPRESS_ABOVE + 1)):
        # Ours decodes with plain zlib (a peer without it) and the reverse.
        assert zlib.decompress(light.compress(data, 3)) == data
        assert light.decompress(zlib.compress(data, 3)) == data
    small = bytes(range(256)) * 20
    assert len(light.compress(small, 3)) > len(small)  # stored, not deflated: cheap
    assert len(light.compress(b"y" * (COMPRESS_ABOVE + 1), 3)) < 1000  # big ones still shrink
