"""Membership over the admin API with real processes: join through a follower, repeated and
bogus joins, remove, leave by the leader, readyz when quorum is lost, refusal to come back."""

from __future__ import annotations

import time

import pytest

from yakvs.testing.cluster import free_ports, run_cluster

pytestmark = pytest.mark.timeout(180)


def member_ids(node) -> set[str]:
    code, body = node.http("GET", "/members")
    assert code == 200, body
    return {m["id"] for m in body["members"]}


def wait_until(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_join_leave_remove_and_readyz(tmp_path):
    with run_cluster(tmp_path) as cluster:
        leader = cluster.leader()
        follower = next(n for n in cluster.nodes if n is not leader)

        # A fourth node joins through a follower's API (forwarded to the leader).
        n4 = cluster.new_node()
        n4.start(join=follower.api)
        cluster.wait_ready([n4])
        assert member_ids(leader) == {"n1", "n2", "n3", "n4"}
        assert n4.request({"op": "SET", "key": "from-n4", "value": "1"})[0]["status"] == "success"
        assert leader.request({"op": "GET", "key": "from-n4"})[0]["value"] == "1"

        # Repeating the join is harmless, through the leader or a follower.
        body = {"id": "n4", "raft": n4.raft, "tcp": n4.tcp, "api": n4.api}
        for via in (leader, follower):
            code, reply = via.http("POST", "/join", body)
            assert code == 200 and reply["already_member"] is True, reply
        assert len(leader.status()["raft_peers"]) == 3

        # Refused without touching the membership: nobody on that raft port, an id that
        # exists with another address, and malformed bodies.
        dead = free_ports(1)[0]
        bogus = {"id": "n9", "raft": f"127.0.0.1:{dead}", "tcp": "127.0.0.1:1",
                 "api": "127.0.0.1:2"}
        code, reply = follower.http("POST", "/join", bogus)
        assert code == 422, reply
        code, reply = leader.http("POST", "/join", {**body, "raft": leader.raft})
        assert code == 409, reply
        for bad in ({}, {"id": "x"}, {"id": "x", "raft": "nope", "tcp": "a:1", "api": "b:2"}):
            code, reply = leader.http("POST", "/join", bad)
            assert code == 400 and "error" in reply, (bad, reply)
        code, reply = leader.http("DELETE", "/members/nobody")
        assert code == 404, reply
        assert member_ids(follower) == {"n1", "n2", "n3", "n4"}
        assert len(leader.status()["raft_peers"]) == 3

        # Remove n4 through a follower; the removed node may not come back with its data.
        code, reply = follower.http("DELETE", "/members/n4")
        assert code == 200, reply
        wait_until(lambda: member_ids(leader) == {"n1", "n2", "n3"}, what="n4 removed")
        assert len(leader.status()["raft_peers"]) == 2
        assert n4.proc.wait(10) == 0  # it learnt of its removal from the log and stopped
        n4.start()
        assert n4.proc.wait(15) == 3
        assert "removed" in n4.log_tail()

        # A follower leaves by itself: answered, removed, exits 0.
        n5 = cluster.new_node()
        n5.start(join=leader.api)
        cluster.wait_ready([n5])
        code, reply = n5.http("POST", "/leave")
        assert code == 200 and reply == {"left": "n5"}, reply
        assert n5.proc.wait(15) == 0
        assert member_ids(leader) == {"n1", "n2", "n3"}

        # The leader leaves: leadership moves first, then it is removed and exits.
        code, reply = leader.http("POST", "/leave")
        assert code == 200, reply
        assert leader.proc.wait(15) == 0
        rest = cluster.running()
        new_leader = cluster.leader(among=rest)
        assert new_leader is not leader
        wait_until(lambda: member_ids(new_leader) == {m.node_id for m in rest},
                   what="leaver removed")
        assert new_leader.request({"op": "SET", "key": "k", "value": "v"})[0]["status"] == "success"
        leader.start()
        assert leader.proc.wait(15) == 3  # left: refuses to start with its old data

        # Two members left; losing one loses the quorum and readiness.
        other = next(n for n in rest if n is not new_leader)
        assert other.ready()
        new_leader.kill()
        wait_until(lambda: other.http("GET", "/readyz")[0] == 503, what="readyz 503")
        assert other.http("GET", "/livez")[0] == 200
        reply = other.request({"op": "SET", "key": "k", "value": "w"}, timeout=15)[0]
        assert reply["code"] == "NO_LEADER"
        new_leader.start()
        cluster.wait_ready([other, new_leader])
        assert other.request({"op": "GET", "key": "k"})[0]["value"] == "v"
