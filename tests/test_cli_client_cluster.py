"""yakvs-client against a real 3-node cluster: STATUS names role, leader and members; seeds."""

from __future__ import annotations

import socket
import time

import pytest
from click.testing import CliRunner

from yakvs.cli.client import main
from yakvs.cli.repl.connection import Connection
from yakvs.cli.repl.toolbar import StatusPoller

run_cluster = pytest.importorskip("yakvs.testing.cluster").run_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with run_cluster(tmp_path_factory.mktemp("cluster"), 3) as started:
        yield started


def test_status_on_a_follower_shows_role_leader_and_members(cluster):
    leader = cluster.leader()
    follower = next(n for n in cluster.running() if n is not leader)
    result = CliRunner().invoke(main, ["--addr", follower.tcp, "status"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "follower" in next(line for line in lines if line.startswith("role:"))
    assert next(line for line in lines if line.startswith("leader:")).split()[1] == leader.tcp
    table = lines[lines.index("members:") + 1 :]
    assert table[0].split()[:4] == ["id", "raft", "tcp", "api"]
    rows = {row.split()[0]: row for row in table[1:]}
    assert set(rows) == {node.node_id for node in cluster.nodes}
    assert rows[leader.node_id].endswith("*")
    assert not rows[follower.node_id].endswith("*")


def test_seed_list_skips_a_dead_seed_and_writes_reach_every_node(cluster):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"
    runner = CliRunner()
    first, second, _ = cluster.nodes
    result = runner.invoke(main, ["--addr", dead, "--addr", second.tcp, "set", "seeded", "yes"])
    assert (result.exit_code, result.stdout) == (0, "OK\n"), result.stderr
    # Reads are linearizable by default, so any node answers with the acknowledged write.
    result = runner.invoke(main, ["-addr", first.tcp, "get", "seeded"])
    assert (result.exit_code, result.stdout) == (0, "yes\n"), result.stderr


def test_toolbar_names_role_and_leader(cluster):
    leader = cluster.leader()
    follower = next(n for n in cluster.running() if n is not leader)
    poller = StatusPoller(Connection([follower.tcp], timeout=2.0), interval=0.05)
    poller.start()
    try:
        deadline = time.monotonic() + 10
        while poller.info is None and time.monotonic() < deadline:
            time.sleep(0.02)
        text = poller.text()
        assert text.startswith(f" {follower.tcp} | ")
        assert " follower | " in text and f" | leader {leader.tcp} | " in text
    finally:
        poller.stop()
