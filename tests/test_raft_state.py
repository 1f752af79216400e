"""The replicated state machine and the batching, in-process: apply functions are deterministic,
expiry is conditional, and one node serves writes and reads through RaftBackend."""

from __future__ import annotations

import asyncio

import pytest

from yakvs.protocol import Consistency, Op, Request
from yakvs.raft.backend import RaftBackend
from yakvs.raft.config import RaftConfig, is_loopback
from yakvs.raft.membership import Membership
from yakvs.raft.node import RaftNode, now_ms
from yakvs.raft.startup import bring_up
from yakvs.raft.state import KVState
from yakvs.testing.cluster import free_ports

pytestmark = pytest.mark.timeout(60)


def apply(state: KVState, *cmds):
    # The undecorated path pysyncobj takes when it applies a committed entry.
    return state.apply_batch(list(cmds), _doApply=True)


def test_apply_is_deterministic_and_expiry_conditional():
    a, b = KVState(), KVState()
    cmds = [("set", "k", "v", 1000), ("set", "p", "q", None), ("del", "p", 500),
            ("del", "nope", 500), ("set", "k", "v2", 2000), ("expire", "k", 1000),
            ("set", "e", "x", 100), ("del", "e", 200)]
    ra, rb = apply(a, *cmds), apply(b, *cmds)
    assert ra == rb == [True, True, True, False, True, False, True, False]
    assert a.dump() == b.dump()
    # The stale expiry (1000) lost to the refresh; the current one removes the key.
    assert a.get("k", 1500) == ("v2", 2000)
    assert apply(a, ("expire", "k", 2000)) == [True]
    assert a.get("k", 0) is None
    # Reads hide an expired key by the caller's clock, before any removal is proposed.
    apply(a, ("set", "t", "x", 100))
    assert a.get("t", 99) == ("x", 100) and a.get("t", 100) is None
    assert ("t", 100) in a.expired_sample(100, budget=10)
    assert apply(a, ("bogus",)) == [False]


def test_expired_sample_is_incremental():
    state = KVState()
    apply(state, *[("set", f"k{i}", "v", 10 + i) for i in range(25)])
    apply(state, ("set", "k0", "refreshed", 1000), ("del", "k1", 0))
    assert state.expired_sample(5, budget=10) == []
    first = state.expired_sample(50, budget=10)
    assert first == [(f"k{i}", 10 + i) for i in range(2, 12)]
    rest = state.expired_sample(50, budget=100)
    assert rest == [(f"k{i}", 10 + i) for i in range(12, 25)]
    # A failed removal is handed back; a key refreshed meanwhile is not.
    state.requeue("k2", 12)
    apply(state, ("set", "k3", "new", None))
    state.requeue("k3", 13)
    assert state.expired_sample(50, budget=100) == [("k2", 12)]
    # The index is local: rebuilt from the replicated data after a snapshot load.
    copy = KVState()
    copy._deserialize(state._serialize())
    assert "_expiry_heap" not in state._serialize()
    expected = sorted((e, k) for k, e in state._expiry.items())
    assert copy.expired_sample(2000, budget=100) == [(k, e) for e, k in expected]


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("127.9.9.9") and is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("x.org")


def test_single_node_backend_batches_and_serves(tmp_path):
    async def main():
        raft, tcp, api = (f"127.0.0.1:{p}" for p in free_ports(3))
        node = RaftNode(RaftConfig("solo", raft, tcp, api, data_dir=tmp_path, bootstrap=True))
        await bring_up(node, Membership(node))
        backend = RaftBackend(node)
        try:
            replies = await backend.execute([
                Request(Op.SET, "a", "1"), Request(Op.SET, "t", "x", expires_in=60_000_000_000),
                Request(Op.GET, "a"), Request(Op.TTL, "t"), Request(Op.SET, ""),
                Request(Op.DELETE, "a"), Request(Op.DELETE, "a"), Request(Op.EXISTS, "t"),
                Request(Op.GET, "a", consistency=Consistency.STALE), Request(Op.PING)])
            assert [r.ok for r in replies] == [True, True, True, True, False, True, False, True,
                                               False, True]
            assert replies[2].value == "1" and 0 < replies[3].ttl <= 60_000_000_000
            assert replies[4].code == "BAD_REQUEST" and replies[6].code == "NOT_FOUND"
            batches = node.writes.batches
            # 200 concurrent writers share a handful of log entries.
            results = await asyncio.gather(*(
                backend.execute([Request(Op.SET, f"k{i}", "v")]) for i in range(200)))
            assert all(r[0].ok for r in results)
            assert node.writes.batches - batches <= 5
            assert node.state.live_count() == 201
            # Reads arriving while writes wait ride on the write batch, not on a barrier,
            # and still see every write acknowledged before they arrived.
            rounds = node.barrier.rounds
            mixed = await asyncio.gather(*(
                backend.execute([Request(Op.SET, f"m{i}", "w")] if i % 2 else
                                [Request(Op.GET, f"k{i}")]) for i in range(100)))
            assert all(r[0].ok for r in mixed)
            assert all(r[0].value == "v" for i, r in enumerate(mixed) if i % 2 == 0)
            assert node.barrier.rides >= 40 and node.barrier.rounds - rounds <= 2
            info = (await backend.execute([Request(Op.STATUS)]))[0].info
            assert info["role"] == "leader" and info["keys"] == 251
            assert info["members"] == [{"id": "solo", "raft": raft, "tcp": tcp, "api": api}]
            assert now_ms() > 0
        finally:
            await node.close()

    asyncio.run(main())


def test_embedding_api_two_nodes_in_one_loop(tmp_path):
    """Two nodes driven by one event loop: join, replicate, state, snapshot, remove."""

    async def main():
        ports = free_ports(6)
        addrs = [f"127.0.0.1:{p}" for p in ports]
        a = RaftNode(RaftConfig("a", *addrs[:3], data_dir=tmp_path, bootstrap=True))
        b = RaftNode(RaftConfig("b", *addrs[3:], data_dir=tmp_path))
        try:
            await bring_up(a, a.membership)
            b.start_sync([a.raft_addr])
            reply = await a.join("b", *addrs[3:])
            assert reply == {"joined": "b", "already_member": False}
            assert (await a.join("b", *addrs[3:]))["already_member"] is True
            await b.wait_leader(5)
            backend_b = RaftBackend(b)
            assert (await backend_b.execute([Request(Op.SET, "x", "1")]))[0].ok
            assert (await RaftBackend(a).execute([Request(Op.GET, "x")]))[0].value == "1"
            state = b.cluster_state()
            assert state["role"] == "follower" and state["leader_id"] == "a"
            assert {m["id"] for m in state["members"]} == {"a", "b"}
            assert a.snapshot() >= state["applied_index"] - 1
            assert await a.remove("b") == {"removed": "b"}
            assert set(a.state.members()) == {"a"} and a.peers() == []
        finally:
            await b.close()
            await a.close()

    asyncio.run(main())


def test_aead_encryptor_authenticates_and_never_repeats_a_nonce():
    from yakvs.raft.crypto import AeadEncryptor, InvalidToken

    a, b = AeadEncryptor("secret"), AeadEncryptor("secret")
    tokens = [a.encrypt_at_time(b"message", 7) for _ in range(3)]
    assert len({t[8:32] for t in tokens}) == 3  # salt + counter differ per token
    assert all(b.extract_timestamp(t) == 7 and b.decrypt(t) == b"message" for t in tokens)
    tampered = bytearray(tokens[0])
    tampered[3] ^= 1  # the timestamp is authenticated too
    for bad in (bytes(tampered), tokens[0][:-1], b"short"):
        with pytest.raises(InvalidToken):
            b.decrypt(bad)
    with pytest.raises(InvalidToken):
        AeadEncryptor("other").decrypt(tokens[1])


def test_expiry_index_never_loses_a_key():
    """Random writes against the leader's sample/propose/apply cycle: every key whose expiry
    has passed is found, whatever refreshes, deletes and failed removals came between."""
    import random

    rng = random.Random(5)
    for _ in range(20):
        state = KVState()
        now = 0
        in_flight: list[tuple[str, int]] = []
        for _ in range(300):
            now += rng.randint(0, 3)
            key = f"k{rng.randint(0, 15)}"
            roll = rng.random()
            if roll < 0.6:
                expiry = None if rng.random() < 0.1 else now + rng.randint(1, 40)
                apply(state, ("set", key, "v", expiry))
            elif roll < 0.7:
                apply(state, ("del", key, now))
            else:
                # Proposals from earlier samples land now (some fail and are handed back).
                for k, e in in_flight:
                    if rng.random() < 0.2:
                        state.requeue(k, e)
                    else:
                        apply(state, ("expire", k, e))
                in_flight = state.expired_sample(now, budget=rng.randint(1, 5))
        for k, e in in_flight:
            state.requeue(k, e)
        end = now + 100
        while found := state.expired_sample(end, budget=3):
            apply(state, *[("expire", k, e) for k, e in found])
        assert state.dump()["expiry"] == {}
