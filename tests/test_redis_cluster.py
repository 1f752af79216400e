"""redis-py against a live 3-node yakvs cluster, through a follower: writes replicate through Raft,
NX/XX/GET are decided in the replicated apply (concurrent SET NX: exactly one winner), binary
values reach every replica, and answers match a real Redis 7 where it is installed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from yakvs.testing.cluster import NodeProc, run_cluster
from yakvs.testing.redis import REDIS_SERVER, run_redis

pytestmark = pytest.mark.timeout(180)


def _client(node: NodeProc, protocol: int = 2) -> redis.Redis:
    host, _, port = node.tcp.rpartition(":")
    return redis.Redis(host, int(port), protocol=protocol, socket_timeout=10)


SCRIPT: list[tuple[Any, ...]] = [
    ("SET", "k", "v"), ("GET", "k"), ("SET", "k", "v2", "NX"), ("SET", "k", "v3", "XX", "GET"),
    ("SET", "n", "v", "XX"), ("SET", "n", "v", "NX", "GET"), ("MSET", "a", "1", "b", "2"),
    ("MGET", "a", "b", "zz"), ("EXISTS", "a", "b", "zz", "a"), ("DEL", "a", "zz"),
    ("EXPIRE", "b", "100", "NX"), ("EXPIRE", "b", "50", "GT"), ("TTL", "b"), ("PERSIST", "b"),
    ("TTL", "b"), ("PTTL", "zz"),
    ("EXPIRE", "b", "-1"), ("GET", "b"), ("SET", "t", "v", "PX", "100000"), ("PERSIST", "t"),
    ("SET", "t", "v", "EX", "100"), ("SET", "t", "v2", "KEEPTTL"), ("TTL", "t"),
    ("KEYS", "*"), ("DBSIZE",), ("SET", "k", "v", "EX", "0"), ("FOO", "x"), ("GET",),
    ("SET", b"\xff\x00", b"\x80\r\n"), ("GET", b"\xff\x00"), ("FLUSHALL",), ("DBSIZE",),
]


def _run(client: redis.Redis, script: list[tuple[Any, ...]]) -> list[Any]:
    out = []
    for cmd in script:
        try:
            result = client.execute_command(*cmd)
        except redis.ResponseError as exc:
            result = ("error", str(exc))
        out.append(sorted(result) if cmd[0] == "KEYS" else result)
    return out


def test_redis_py_through_a_follower(tmp_path: Path) -> None:
    with run_cluster(tmp_path / "c") as cluster:
        leader = cluster.leader()
        follower = next(n for n in cluster.nodes if n is not leader)
        r = _client(follower)
        assert r.ping()
        ours = _run(r, SCRIPT)
        expected_ttl = [res for cmd, res in zip(SCRIPT, ours, strict=True) if cmd[0] == "TTL"]
        assert expected_ttl[0] in (99, 100) and expected_ttl[1] == -1
        assert expected_ttl[2] in (99, 100)
        # RESP3 (HELLO 3) through the same follower: redis-py reads the same results.
        with _client(follower, protocol=3) as r3:
            ours3 = _run(r3, SCRIPT)
        diffs = [(c, a, b) for c, a, b in zip(SCRIPT, ours, ours3, strict=True)
                 if a != b and c[0] != "TTL"]
        assert not diffs, diffs
        if REDIS_SERVER is not None:
            (tmp_path / "r").mkdir()
            with run_redis(tmp_path / "r") as (host, port):
                real = redis.Redis(host, port, protocol=2, socket_timeout=10)
                theirs = _run(real, SCRIPT)
                real.close()
            # TTLs were checked above: a second boundary may fall between the two runs.
            diffs = [(c, a, b) for c, a, b in zip(SCRIPT, ours, theirs, strict=True)
                     if a != b and c[0] != "TTL"]
            assert not diffs, diffs

        # Writes through the follower are on every replica (stale reads straight from each).
        r.mset({"x": "1", "y": "2"})
        r.set(b"bin\xff", b"\x00\xfe")
        deadline = time.monotonic() + 10
        for node in cluster.nodes:
            while True:
                got = node.request({"op": "GET", "key": "x", "consistency": "stale"})[0]
                if got.get("value") == "1":
                    break
                assert time.monotonic() < deadline, (node.node_id, got)
                time.sleep(0.05)
            assert _client(node).get(b"bin\xff") == b"\x00\xfe"

        info = r.info()
        assert info["redis_mode"] == "cluster" and info["role"] == "slave"
        assert info["raft_role"] == "follower" and info["raft_members"] == 3
        assert _client(leader).info("replication")["role"] == "master"

        # SET NX from many clients on all nodes at once: exactly one wins, everyone agrees.
        async def race() -> list[Any]:
            clients = []
            for node in cluster.nodes:
                host, _, port = node.tcp.rpartition(":")
                clients += [aioredis.Redis(host=host, port=int(port), protocol=2 + i % 2)
                            for i in range(5)]
            try:
                return await asyncio.wait_for(asyncio.gather(*(
                    c.set("lock", f"owner{i}", nx=True, get=True) for i, c in enumerate(clients)
                ), *(c.set("lock2", f"o{i}", nx=True) for i, c in enumerate(clients))), 30)
            finally:
                for c in clients:
                    await c.aclose()

        results = asyncio.run(race())
        getters, plain = results[:15], results[15:]
        assert getters.count(None) == 1  # GET returns the old value: nil only for the winner
        winner = f"owner{getters.index(None)}".encode()
        assert all(g == winner for g in getters if g is not None)
        assert plain.count(True) == 1 and plain.count(None) == 14
        assert r.get("lock") == winner
        # An empty key is refused in the cluster as in standalone (Redis would take it).
        with pytest.raises(redis.ResponseError, match="Key is required"):
            r.mset({"z": "1", "": "v"})
        assert r.exists("z", "") == 0 and r.persist("") is False
        r.close()
