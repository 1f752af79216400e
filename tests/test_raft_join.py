"""A node told to ``--join`` is patient but bounded: it waits for a seed that is not up yet,
gives up with one clear line when ``--join-timeout`` runs out, and stops at once on a final
refusal."""

from __future__ import annotations

import asyncio
import time

import pytest

from yakvs.raft.config import StartupError
from yakvs.raft.membership import MembershipError
from yakvs.raft.startup import _patiently
from yakvs.testing.cluster import Cluster, NodeProc, free_ports

pytestmark = pytest.mark.timeout(120)


def wait_for_log(node: NodeProc, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in node.log_path.read_text(errors="replace"):
        assert node.alive, f"{node.node_id} exited:\n{node.log_tail()}"
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{node.log_tail()}"
        time.sleep(0.05)


def stderr_lines(node: NodeProc) -> list[str]:
    return [ln for ln in node.log_path.read_text().splitlines() if ln.startswith("yakvs-raft:")]


def test_joiner_started_before_its_seed_waits_then_joins(tmp_path):
    cluster = Cluster(tmp_path, size=2)
    seed, joiner = cluster.nodes
    try:
        joiner.start(join=seed.api, extra=["--log-level", "info"])
        # It has found nobody at the seed's address at least twice and is still waiting.
        wait_for_log(joiner, "attempt 2 failed", timeout=20)
        seed.start(bootstrap=True)
        cluster.wait_ready(timeout=60)
        for node in cluster.nodes:
            code, body = node.http("GET", "/members")
            assert code == 200 and {m["id"] for m in body["members"]} == {"n1", "n2"}
        assert joiner.request({"op": "SET", "key": "k", "value": "v"})[0]["status"] == "success"
        assert seed.request({"op": "GET", "key": "k"})[0]["value"] == "v"
        # A final refusal (its id belongs to a member with another raft address) is not
        # retried: the impostor exits at once with the reason.
        raft, tcp, api = (f"127.0.0.1:{p}" for p in free_ports(3))
        impostor = NodeProc("n2", raft, tcp, api, tmp_path / "impostor")
        cluster.nodes.append(impostor)  # killed by cluster.close() whatever happens
        started = time.monotonic()
        impostor.start(join=seed.api, extra=["--join-timeout", "60"])
        assert impostor.proc.wait(30) == 3
        assert time.monotonic() - started < 30
        assert any("refused" in ln and "n2 is a member" in ln for ln in stderr_lines(impostor))
        assert seed.ready() and joiner.ready()
    finally:
        cluster.close()


def test_joiner_gives_up_when_the_seed_never_comes_up(tmp_path):
    cluster = Cluster(tmp_path, size=1)
    node = cluster.nodes[0]
    nobody = f"127.0.0.1:{free_ports(1)[0]}"
    try:
        started = time.monotonic()
        node.start(join=nobody, extra=["--join-timeout", "3"])
        code = node.proc.wait(30)
        elapsed = time.monotonic() - started
        assert code == 3, node.log_tail()
        # It waited the whole timeout (retrying), and not much longer.
        assert 3.0 <= elapsed < 15.0, elapsed
        lines = stderr_lines(node)
        assert len(lines) == 1, node.log_tail()
        assert f"join via {nobody} gave up after 3 s" in lines[0]
        assert "--join-timeout" in lines[0] and "cannot reach" in lines[0]
        # Its folder holds no half-joined state: a later start is a fresh one.
        assert not (tmp_path / "n1" / "node.json").exists()
    finally:
        cluster.close()


def test_retry_classification_of_admin_answers():
    """5xx, 421 and unreachable are waited out; 4xx refusals end the start at once; the time
    budget is kept."""
    async def run(answers: list, budget: float):
        calls = []

        async def attempt(timeout: float) -> str:
            assert 0 < timeout <= budget + 0.1
            calls.append(timeout)
            answer = answers[min(len(calls), len(answers)) - 1]
            if isinstance(answer, Exception):
                raise answer
            return answer

        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            return await _patiently("join via x", attempt, started + budget, budget), calls
        finally:
            assert loop.time() - started < budget + 1.0

    flaky = [MembershipError(502, "cannot reach x"), MembershipError(503, "no leader"),
             MembershipError(421, "not the leader"), MembershipError(504, "timed out"), "ok"]
    result, calls = asyncio.run(run(flaky, 10.0))
    assert result == "ok" and len(calls) == 5
    for status in (400, 401, 404, 409):
        with pytest.raises(StartupError, match="refused: nope"):
            asyncio.run(run([MembershipError(status, "nope")], 10.0))
    with pytest.raises(StartupError, match=r"gave up after 0\.5 s .*: still down"):
        asyncio.run(run([MembershipError(502, "still down")], 0.5))
