"""Clustered mode with real yakvs-raft processes on 127.0.0.1: the README flow, failover,
whole-cluster restart, TTL through the log."""

from __future__ import annotations

import time

import pytest

from yakvs.testing.cluster import Cluster, NodeProc, free_ports, run_cluster

pytestmark = pytest.mark.timeout(180)


def put(node: NodeProc, key: str, value: str, **extra) -> dict:
    return node.request({"op": "SET", "key": key, "value": value, **extra})[0]


def get(node: NodeProc, key: str, consistency: str | None = None) -> dict:
    req = {"op": "GET", "key": key}
    if consistency:
        req["consistency"] = consistency
    return node.request(req)[0]


def put_anywhere(nodes: list[NodeProc], key: str, value: str, deadline: float) -> float:
    """SET through any node until one acknowledges it; returns the time of the ack.

    Only a success counts as written. UNKNOWN_OUTCOME is neither: the key is written again,
    which is harmless because the value is the same.
    """
    while True:
        for node in nodes:
            try:
                reply = put(node, key, value)
            except OSError:
                continue
            if reply["status"] == "success":
                return time.monotonic()
            assert reply["code"] in ("NO_LEADER", "UNKNOWN_OUTCOME", "UNAVAILABLE"), reply
        assert time.monotonic() < deadline, f"no node acknowledged {key}"
        time.sleep(0.02)


def dump(node: NodeProc) -> dict[str, str]:
    """Every live key and value of one replica, read linearizably through that node."""
    keys = node.request({"op": "KEYS", "prefix": "", "limit": 100000})[0]["keys"]
    replies = node.request(*({"op": "GET", "key": k} for k in keys)) if keys else []
    return {k: r["value"] for k, r in zip(keys, replies, strict=True) if r["status"] == "success"}


def test_readme_flow_three_nodes(tmp_path):
    with run_cluster(tmp_path) as cluster:
        leader = cluster.leader()
        followers = [n for n in cluster.nodes if n is not leader]
        assert put(followers[0], "greeting", "hello world\nwith newline") == {"status": "success"}
        # Linearizable read on another node right after the ack: never stale.
        for node in (followers[1], leader):
            assert get(node, "greeting")["value"] == "hello world\nwith newline"
        # A pipeline mixing writes and reads keeps its order.
        replies = followers[1].request(
            {"op": "SET", "key": "p", "value": "1"}, {"op": "GET", "key": "p"},
            {"op": "DELETE", "key": "p"}, {"op": "GET", "key": "p"},
            {"op": "DELETE", "key": "p"})
        assert [r["status"] for r in replies] == ["success", "success", "success", "error", "error"]
        assert replies[1]["value"] == "1" and replies[4]["code"] == "NOT_FOUND"
        roles = {}
        for node in cluster.nodes:
            info = node.request({"op": "STATUS"})[0]["info"]
            roles[node.node_id] = info["role"]
            assert info["mode"] == "raft"
            assert info["leader"] == leader.tcp  # the client address, not the raft one
            assert {m["id"] for m in info["members"]} == {"n1", "n2", "n3"}
            assert info["applied_index"] <= info["commit_index"]
        assert sorted(roles.values()) == ["follower", "follower", "leader"]
        assert get(followers[0], "missing") ["code"] == "NOT_FOUND"
        assert get(followers[0], "greeting", consistency="stale")["status"] == "success"


@pytest.mark.slow
def test_kill_leader_five_times(tmp_path):
    """kill -9 of the leader, five times: new leader < 3 s, next ack < 2 s, nothing lost,
    the old leader catches up after a restart with its folder."""
    acked: dict[str, str] = {}
    with run_cluster(tmp_path) as cluster:
        for round_no in range(5):
            for i in range(10):
                key = f"r{round_no}-k{i}"
                put_anywhere(cluster.running(), key, f"v{i}", time.monotonic() + 10)
                acked[key] = f"v{i}"
            old = cluster.leader()
            old.kill()
            killed_at = time.monotonic()
            survivors = cluster.running()
            new = cluster.leader(timeout=3.0, among=survivors)
            elected = time.monotonic() - killed_at
            acked_at = put_anywhere(survivors, f"after-{round_no}", "x", killed_at + 10)
            acked[f"after-{round_no}"] = "x"
            print(f"round {round_no}: leader {old.node_id} -> {new.node_id} "
                  f"elected {elected:.2f}s, next ack {acked_at - killed_at:.2f}s")
            assert elected < 3.0
            assert acked_at - killed_at < 2.0
            old.start()
            cluster.wait_ready([old])
            # The restarted node serves every acknowledged write, stale reads included,
            # once a linearizable read through it has caught it up.
            reply = get(old, f"after-{round_no}")
            assert reply.get("value") == "x", reply
            assert all(get(old, k, "stale").get("value") == v for k, v in acked.items())
        for node in cluster.nodes:
            assert dump(node) == acked


def test_kill_all_and_restart(tmp_path):
    with run_cluster(tmp_path) as cluster:
        acked = {}
        nodes = cluster.nodes
        for i in range(60):
            assert put(nodes[i % 3], f"k{i}", f"v{i}")["status"] == "success"
            acked[f"k{i}"] = f"v{i}"
        # Compaction writes a full dump; entries after it must come back from the journal.
        assert nodes[1].http("POST", "/snapshot")[0] == 200
        for i in range(60, 80):
            assert put(nodes[i % 3], f"k{i}", f"v{i}")["status"] == "success"
            acked[f"k{i}"] = f"v{i}"
        for node in nodes:
            node.kill()
        # n3 comes back on another client port: the registry (STATUS, redirects) follows.
        nodes[2].tcp = f"127.0.0.1:{free_ports(1)[0]}"
        for node in nodes:
            node.start(bootstrap=True)  # ignored: the folder has data
        cluster.wait_ready()
        for node in nodes:
            assert dump(node) == acked
        deadline = time.monotonic() + 10
        while {m["id"]: m["tcp"] for m in nodes[0].status()["members"]}.get("n3") != nodes[2].tcp:
            assert time.monotonic() < deadline, nodes[0].status()["members"]
            time.sleep(0.05)
        assert {m["id"] for m in nodes[2].status()["members"]} == {"n1", "n2", "n3"}


def test_ttl_through_the_log_and_identical_replicas(tmp_path):
    with run_cluster(tmp_path) as cluster:
        _, n2, n3 = cluster.nodes
        expected = {}
        for i in range(30):
            node = cluster.nodes[i % 3]
            if i % 2:
                assert put(node, f"t{i}", "gone", expires_in=800_000_000)["status"] == "success"
            else:
                assert put(node, f"p{i}", f"v{i}")["status"] == "success"
                expected[f"p{i}"] = f"v{i}"
        # A refreshed key keeps only its newest expiry: the leader's old proposal must not win.
        assert put(n2, "t1", "kept")["status"] == "success"
        expected["t1"] = "kept"
        ttl = n3.request({"op": "TTL", "key": "t3"})[0]
        assert 0 < ttl["ttl"] <= 800_000_000
        time.sleep(1.0)
        # Hidden at once by every replica's own clock, stale reads included.
        for node in cluster.nodes:
            assert get(node, "t3", "stale")["code"] == "NOT_FOUND"
        # Removed through the log: the key count converges on every node.
        deadline = time.monotonic() + 5
        while any(n.status().get("keys") != len(expected) for n in cluster.nodes):
            assert time.monotonic() < deadline, [n.status().get("keys") for n in cluster.nodes]
            time.sleep(0.05)
        # Churn: a restart of a follower and of the leader, more writes and deletes.
        follower = cluster.followers()[0]
        follower.kill()
        assert put(cluster.leader(), "during", "restart")["status"] == "success"
        expected["during"] = "restart"
        follower.start()
        cluster.wait_ready([follower])
        lead = cluster.leader()
        lead.kill()
        survivors = cluster.running()
        put_anywhere(survivors, "p0", "changed", time.monotonic() + 10)
        expected["p0"] = "changed"
        assert survivors[0].request({"op": "DELETE", "key": "p2"})[0]["status"] == "success"
        del expected["p2"]
        lead.start()
        cluster.wait_ready()
        dumps = [dump(node) for node in cluster.nodes]
        assert dumps[0] == expected
        assert dumps[1] == dumps[0] and dumps[2] == dumps[0]
        assert all(n.status()["keys"] == len(expected) for n in cluster.nodes)


def test_startup_failures_exit_3(tmp_path):
    cluster = Cluster(tmp_path, size=1)
    node = cluster.nodes[0]
    try:
        # No data and neither --bootstrap nor --join.
        node.start()
        assert node.proc.wait(15) == 3
        assert "--bootstrap or --join" in node.log_path.read_text()
        # Refuses a non-loopback address without a secret, before binding anything.
        node.start(extra=["--raft", "0.0.0.0:1", "--bootstrap"])
        assert node.proc.wait(15) == 3
        assert "without --secret" in node.log_path.read_text()
        # Joining through an address nobody serves (retried until --join-timeout).
        node.start(join="127.0.0.1:1", extra=["--join-timeout", "1"])
        assert node.proc.wait(15) == 3
        assert "gave up after 1 s" in node.log_tail()
        # A second process on a folder in use (other ports, same --dir and --id).
        node.start(bootstrap=True)
        cluster.wait_ready([node])
        twin = cluster.new_node()
        twin.node_id = node.node_id
        twin.start(bootstrap=True)
        assert twin.proc.wait(15) == 3
        assert "in use" in twin.log_tail()
        assert node.ready()
    finally:
        cluster.close()


def test_lagging_follower_catches_up_from_a_snapshot(tmp_path):
    with run_cluster(tmp_path, secret="s3cret") as cluster:
        leader = cluster.leader()
        lagging = next(n for n in cluster.nodes if n is not leader)
        lagging.kill()
        expected = {}
        for i in range(100):
            ttl = {"expires_in": 3600 * 10**9} if i % 2 else {}
            assert put(leader, f"k{i}", f"v{i}", **ttl)["status"] == "success"
            expected[f"k{i}"] = f"v{i}"
        assert leader.http("POST", "/snapshot")[0] == 200
        deadline = time.monotonic() + 10
        while leader.status()["log_len"] > 10:  # compacted: the follower's next entry is gone
            assert time.monotonic() < deadline
            time.sleep(0.05)
        lagging.start()
        cluster.wait_ready([lagging])
        assert dump(lagging) == expected
        assert 0 < lagging.request({"op": "TTL", "key": "k1"})[0]["ttl"] <= 3600 * 10**9
        lagging.kill()  # and it keeps the snapshot it was sent
        lagging.start()
        cluster.wait_ready([lagging])
        assert lagging.status()["keys"] == 100
