"""Client and AsyncClient against real servers: every command, pipelines, errors, retries."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Sequence

import pytest

from yakvs.backend import Backend
from yakvs.client import AsyncClient, Client, NoBackoff
from yakvs.errors import (
    BadRequestError,
    ClientTimeoutError,
    ConnectionFailedError,
    KeyNotFoundError,
    NoLeaderError,
    NotLeaderError,
    UnknownOutcomeError,
)
from yakvs.protocol import Op, Reply, Request, error_reply
from yakvs.testing.server import run_server, spawn_server


def test_sync_client_every_command(server):
    with Client(server.addr) as c:
        assert c.ping() == "PONG"
        c.set("a", "1")
        c.set("b", "two words\nand ☃", ttl=60)
        assert c.get("a") == "1"
        assert c.get("b") == "two words\nand ☃"
        assert c.get_with_ttl("a") == ("1", None)
        value, left = c.get_with_ttl("b")
        assert value == "two words\nand ☃" and 50 < left <= 60
        assert c.ttl("a") is None and 50 < c.ttl("b") <= 60
        assert c.exists("a") and not c.exists("zz")
        assert c.keys() == ["a", "b"] and c.keys("b") == ["b"] and c.keys(limit=1) == ["a"]
        assert c.status()["mode"] == "standalone"
        assert c.delete("a") is True and c.delete("a") is False
        with pytest.raises(KeyNotFoundError):
            c.get("a")
        with pytest.raises(KeyNotFoundError):
            c.ttl("a")
        with pytest.raises(ValueError):
            c.set("k", "v", ttl=0)
        with pytest.raises(BadRequestError):
            c.set("", "v")
        raw = c.execute(Request(Op.GET, "a"))
        assert not raw.ok and raw.code == "NOT_FOUND"
        assert c.address == server.addr


def test_ttl_is_honoured(server):
    with Client(server.addr) as c:
        c.set("short", "v", ttl=0.05)
        time.sleep(0.12)
        with pytest.raises(KeyNotFoundError):
            c.get("short")


def test_pipeline(server):
    with Client(server.addr) as c:
        pipe = c.pipeline()
        for i in range(1000):
            pipe.set(f"p{i}", str(i))
        assert len(pipe) == 1000
        assert pipe.execute() == [None] * 1000
        pipe = c.pipeline()
        for i in range(1000):
            pipe.get(f"p{i}")
        assert pipe.execute() == [str(i) for i in range(1000)]
        results = (
            c.pipeline()
            .get("p1")
            .get("missing")
            .delete("p2")
            .exists("p2")
            .execute(raise_on_error=False)
        )
        assert results[0] == "1" and isinstance(results[1], KeyNotFoundError)
        assert results[2:] == [True, False]
        with pytest.raises(KeyNotFoundError):
            c.pipeline().get("missing").ping().execute()


def test_async_client_every_command(server):
    async def main() -> None:
        async with AsyncClient(server.addr) as c:
            assert await c.ping() == "PONG"
            await c.set("a", "1")
            await c.set("b", "2", ttl=30)
            assert await c.get("a") == "1"
            assert (await c.get_with_ttl("a")) == ("1", None)
            assert 20 < await c.ttl("b") <= 30
            assert await c.exists("b")
            assert await c.keys() == ["a", "b"]
            assert (await c.status())["role"] == "standalone"
            assert await c.delete("a") and not await c.delete("a")
            with pytest.raises(KeyNotFoundError):
                await c.get("a")
            pipe = c.pipeline()
            for i in range(500):
                pipe.set(f"q{i}", str(i)).get(f"q{i}")
            results = await pipe.execute()
            assert results[1::2] == [str(i) for i in range(500)]
            # concurrent calls on one client are serialised, never interleaved on the wire
            got = await asyncio.gather(*(c.get(f"q{i}") for i in range(100)))
            assert got == [str(i) for i in range(100)]

    asyncio.run(main())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_raises_after_retries():
    addr = f"127.0.0.1:{_free_port()}"
    start = time.monotonic()
    with pytest.raises(ConnectionFailedError), Client(addr, retries=2, backoff=NoBackoff()) as c:
        c.ping()
    assert time.monotonic() - start < 5

    async def main() -> None:
        async with AsyncClient(addr, retries=1, backoff=NoBackoff()) as c:
            await c.ping()

    with pytest.raises(ConnectionFailedError):
        asyncio.run(main())


def test_request_timeout():
    with socket.socket() as silent:  # accepts (in the kernel backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        addr = f"127.0.0.1:{silent.getsockname()[1]}"
        with Client(addr, request_timeout=0.2) as c:
            start = time.monotonic()
            with pytest.raises(ClientTimeoutError):
                c.get("k")
            assert time.monotonic() - start < 2

        async def main() -> None:
            async with AsyncClient(addr, request_timeout=0.2) as c:
                await c.get("k")

        with pytest.raises(ClientTimeoutError):
            asyncio.run(main())


class _Hangup:
    """A peer that reads one request per connection and hangs up without answering."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.addr = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            conn.settimeout(2)
            try:
                if conn.recv(4096):
                    self.requests += 1
            finally:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def test_lost_reply_unknown_outcome_for_writes_retry_for_reads():
    peer = _Hangup()
    try:
        with Client(peer.addr, retries=2, backoff=NoBackoff()) as c:
            with pytest.raises(UnknownOutcomeError):
                c.delete("k")
            assert peer.requests == 1  # never silently re-sent
            with pytest.raises(UnknownOutcomeError):
                c.set("k", "v")
            assert peer.requests == 2
            with pytest.raises(UnknownOutcomeError):
                c.pipeline().get("a").set("k", "v").execute()
            assert peer.requests == 3
            with pytest.raises(ConnectionFailedError):
                c.get("k")
            assert peer.requests == 6  # a read is retried: 1 + 2 retries

        async def main() -> None:
            async with AsyncClient(peer.addr, retries=1, backoff=NoBackoff()) as c:
                await c.set("k", "v")

        with pytest.raises(UnknownOutcomeError):
            asyncio.run(main())
    finally:
        peer.close()


def test_reconnect_after_server_restart(tmp_path):
    with spawn_server(tmp_path, fsync="always") as srv:
        with Client(srv.addr, backoff=NoBackoff()) as c:
            c.set("a", "1")
            c.set("b", "2")
            srv.restart()  # kill -9 and start again on the same port
            assert c.get("a") == "1"
            srv.restart()
            assert c.delete("b") is True  # a stale connection is noticed before sending

        async def main() -> None:
            async with AsyncClient(srv.addr, backoff=NoBackoff()) as c:
                await c.set("c", "3")
                srv.restart()
                await asyncio.sleep(0.05)
                assert await c.get("c") == "3"

        asyncio.run(main())


def test_address_list_skips_dead_servers(server):
    dead = f"127.0.0.1:{_free_port()}"
    with Client([dead, server.addr], retries=0) as c:
        assert c.ping() == "PONG" and c.address == server.addr
    with Client(f"{dead},{server.addr}", retries=0) as c:
        assert c.ping() == "PONG"


class _Follower(Backend):
    """A node that is not the leader: NO_LEADER for a while, then NOT_LEADER naming the leader."""

    def __init__(self, leader: str, no_leader_replies: int) -> None:
        self.leader = leader
        self.no_leader_left = no_leader_replies

    async def execute(self, requests: Sequence[Request]) -> list[Reply]:
        if self.no_leader_left > 0:
            self.no_leader_left -= 1
            return [error_reply(NoLeaderError())] * len(requests)
        return [error_reply(NotLeaderError(leader=self.leader))] * len(requests)

    async def close(self) -> None:
        pass


def test_follows_not_leader_and_retries_no_leader(tmp_path, server):
    backend = _Follower(server.addr, no_leader_replies=2)
    with run_server(tmp_path / "f", backend=backend) as follower:
        with Client(follower.addr, backoff=NoBackoff()) as c:
            c.set("k", "v")
            assert c.address == server.addr
        with Client(server.addr) as direct:
            assert direct.get("k") == "v"
        backend.no_leader_left = 10
        with (
            Client(follower.addr, retries=2, backoff=NoBackoff()) as c,
            pytest.raises(NoLeaderError),
        ):
            c.get("k")

        async def main() -> str:
            async with AsyncClient(follower.addr, backoff=NoBackoff()) as c:
                await c.set("k2", "v2")
                return c.address

        backend.no_leader_left = 0
        assert asyncio.run(main()) == server.addr
