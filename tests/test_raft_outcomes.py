"""What a client is told: unknown outcomes are never reported as success or clean failure, and
read consistency follows the server flag unless the request asks otherwise."""

from __future__ import annotations

import re
import time

import pytest

from yakvs.testing.cluster import run_cluster

pytestmark = pytest.mark.timeout(120)


def barriers(node) -> int:
    code, text = node.http("GET", "/metrics")
    assert code == 200
    return int(re.search(r"^yakvs_raft_barriers_total (\d+)$", text, re.M).group(1))


def test_unknown_outcome_and_read_consistency(tmp_path):
    args = ["--request-timeout", "1", "--read-consistency", "stale"]
    with run_cluster(tmp_path, extra_args=args) as cluster:
        leader = cluster.leader()
        followers = [n for n in cluster.nodes if n is not leader]
        assert leader.request({"op": "SET", "key": "k", "value": "v"})[0]["status"] == "success"

        # --read-consistency stale: no barrier unless the request asks for one.
        before = barriers(followers[0])
        assert followers[0].request({"op": "GET", "key": "k"})[0]["value"] == "v"
        assert barriers(followers[0]) == before
        lin = {"op": "GET", "key": "k", "consistency": "linearizable"}
        assert followers[0].request(lin)[0]["value"] == "v"
        assert barriers(followers[0]) == before + 1

        # The followers freeze with their connections open: the leader still believes it has
        # a quorum, appends the write, and cannot commit it within the timeout.
        for node in followers:
            node.pause()
        try:
            reply = leader.request({"op": "SET", "key": "maybe", "value": "1"}, timeout=10)[0]
        finally:
            for node in followers:
                node.resume()
        assert reply["status"] == "error" and reply["code"] == "UNKNOWN_OUTCOME", reply

        # Whichever way it went, every replica ends up agreeing on it.
        cluster.wait_ready(timeout=20)
        seen = set()
        for node in cluster.nodes:
            deadline = time.monotonic() + 10
            while True:
                got = node.request({"op": "GET", "key": "maybe", "consistency": "linearizable"})[0]
                if got["status"] == "success" or got["code"] == "NOT_FOUND":
                    break
                assert time.monotonic() < deadline, got
                time.sleep(0.05)
            seen.add(got.get("value"))
        assert len(seen) == 1, seen
