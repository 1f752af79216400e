"""Fault suite, network partitions: a 3-node cluster with every node in its own network namespace
(yakvs.testing.netns), cut apart by iptables DROP rules under load, then healed.

While the old leader is isolated it must acknowledge no write and answer no linearizable read
(it may answer stale ones: that is what `stale` means); after the heal every replica holds the
same data, every acknowledged write is there, and the whole history passes the checker. The
test's clients run in their own namespace on the same bridge; nothing here touches a real
interface (the root namespace would route these addresses off the machine: never call the
cluster from the test's own thread).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from yakvs.protocol import Consistency, Op, Request
from yakvs.testing.cluster import Cluster, NodeProc
from yakvs.testing.history import History, Kind, Outcome, WireSession, Workload, execute_recorded
from yakvs.testing.linearizability import Verdict, check
from yakvs.testing.netns import PrivateNet, ns_cluster, unavailable_reason

_WHY_NOT = unavailable_reason()
pytestmark = [
    pytest.mark.skipif(_WHY_NOT is not None, reason=f"partition nemesis: {_WHY_NOT}"),
    pytest.mark.timeout(180),
]

NODES = ("n1", "n2", "n3")
KEYS = [f"k{i}" for i in range(5)]
SECRET = "partition-test-secret"  # nodes bind non-loopback addresses, which requires one
REQUEST_TIMEOUT = 2.0  # the nodes' --request-timeout: bounds every probe of a cut-off node
ISOLATION = 10.0


@contextlib.contextmanager
def _cluster_in_namespaces(tmp_path: Path) -> Iterator[tuple[PrivateNet, Cluster]]:
    with PrivateNet([*NODES, "client"]) as net:
        cluster = ns_cluster(net, tmp_path, NODES, SECRET,
                             ["--request-timeout", str(REQUEST_TIMEOUT)])
        try:
            net.call("client", lambda: cluster.start(timeout=60.0), timeout=90.0)
            yield net, cluster
        finally:
            cluster.close()


def _session(node: NodeProc) -> WireSession:
    # Longer than the node's request timeout: the node answers UNKNOWN_OUTCOME before we give up.
    session = WireSession(node.tcp, timeout=REQUEST_TIMEOUT + 3.0)
    session.connect()
    return session


def _recorded(history: History, node: NodeProc, client: int, kind: Kind, key: str,
              value: str | None = None) -> Outcome:
    """One recorded operation on a fresh connection (an unknown outcome poisons a connection)."""
    try:
        session = _session(node)
    except OSError:
        return Outcome.FAILED  # nothing was sent
    try:
        return execute_recorded(history, session, client, kind, key, value)
    finally:
        session.close()


def _stale_get(node: NodeProc, key: str) -> str | None:
    session = _session(node)
    try:
        reply = session.execute(Request(Op.GET, key, consistency=Consistency.STALE))
    finally:
        session.close()
    return reply.value if reply.ok else None


def _dump(node: NodeProc) -> dict[str, str | None]:
    """Every key and value the node holds locally (stale reads: no quorum involved)."""
    session = _session(node)
    try:
        keys = session.execute(Request(Op.KEYS, consistency=Consistency.STALE, limit=1000))
        assert keys.ok, keys
        names = sorted(keys.keys or ())
        values = [session.execute(Request(Op.GET, k, consistency=Consistency.STALE))
                  for k in names]
    finally:
        session.close()
    return {k: (r.value if r.ok else None) for k, r in zip(names, values, strict=True)}


def _probe_minority(history: History, old: NodeProc, key: str, client: int) -> list[Outcome]:
    """A linearizable read and a write sent straight to the cut-off node, both recorded."""
    return [
        _recorded(history, old, client, Kind.GET, key),
        _recorded(history, old, client + 1, Kind.SET, f"minority-{key}",
                  history.unique_value(client + 1)),
    ]


def _write_through(history: History, nodes: list[NodeProc], key: str, client: int,
                   unknown: set[str]) -> str:
    """SET ``key`` through ``nodes`` until acknowledged; returns the value. Values of attempts
    with an unknown outcome go to ``unknown``: they may still land later."""
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        value = history.unique_value(client)
        outcome = _recorded(history, random.choice(nodes), client, Kind.SET, key, value)
        if outcome is Outcome.OK:
            return value
        if outcome is Outcome.UNKNOWN:
            unknown.add(value)
        time.sleep(0.1)
    raise AssertionError(f"the majority acknowledged no write of {key} in 10 s")


def _isolate_leader_round(net: PrivateNet, cluster: Cluster, history: History,
                          round_no: int) -> dict[str, Any]:
    old = cluster.leader(timeout=10.0)
    majority = [n for n in cluster.nodes if n is not old]
    probe = f"probe{round_no}"
    unknown: set[str] = set()
    before = _write_through(history, cluster.nodes, probe, 200 + 10 * round_no, unknown)
    net.isolate(old.node_id, [n.node_id for n in majority])
    cut = time.monotonic()
    # Right after the cut the old leader still believes it leads: the classic stale-read window.
    # Probe it then, while the majority elects a new leader.
    with ThreadPoolExecutor(1) as pool:
        early_probes = pool.submit(_probe_minority, history, old, probe, 201 + 10 * round_no)
        new = cluster.leader(timeout=10.0, among=majority)
        elected = time.monotonic() - cut
        early = early_probes.result(timeout=30.0)
    after = _write_through(history, majority, probe, 203 + 10 * round_no, unknown)
    late = _probe_minority(history, old, probe, 204 + 10 * round_no)
    # The cut is real: the isolated node never saw the write the majority acknowledged.
    minority_view = _stale_get(old, probe)
    time.sleep(max(0.0, ISOLATION - (time.monotonic() - cut)))
    net.heal()
    cluster.wait_ready(cluster.nodes, timeout=30.0)
    return {"old": old.node_id, "new": new.node_id, "elected": elected, "before": before,
            "after": after, "unknown": unknown, "minority_view": minority_view,
            "probes": early + late}


def _scenario(net: PrivateNet, cluster: Cluster, history: History) -> dict[str, Any]:
    rng = random.Random(23)
    workload = Workload(history, lambda: WireSession(rng.choice(cluster.nodes).tcp, timeout=5.0),
                        KEYS, clients=4, seed=13)
    workload.start()
    rounds = []
    try:
        for round_no in range(2):
            time.sleep(2.0)
            rounds.append(_isolate_leader_round(net, cluster, history, round_no))
    finally:
        net.heal()
        workload.stop()
    # Linearizable final reads through every node put "no acknowledged write lost" in the verdict.
    final = {n.node_id: [_recorded(history, n, 100 + i, Kind.GET, key)
                         for key in [*KEYS, "probe0", "probe1"]]
             for i, n in enumerate(cluster.nodes)}
    dumps: list[dict[str, str | None]] = []
    for _ in range(50):
        dumps = [_dump(n) for n in cluster.nodes]
        if all(d == dumps[0] for d in dumps):
            break
        time.sleep(0.1)
    return {"rounds": rounds, "final": final, "dumps": dumps}


@pytest.mark.slow
def test_isolated_leader_acknowledges_nothing_and_replicas_converge(tmp_path: Path) -> None:
    history = History()
    with _cluster_in_namespaces(tmp_path) as (net, cluster):
        result = net.call("client", lambda: _scenario(net, cluster, history), timeout=150.0)
        crashed = [n.node_id for n in cluster.nodes if not n.alive]
        logs = {n.node_id: n.log_path.read_text(errors="replace") for n in cluster.nodes}
    rounds, dumps = result["rounds"], result["dumps"]
    summary = [{k: r[k] for k in ("old", "new", "elected", "probes")} for r in rounds]
    print(f"ops {history.counts()}, rounds {summary}")
    assert not crashed, crashed
    tracebacks = [name for name, text in logs.items() if "Traceback" in text]
    assert not tracebacks, logs[tracebacks[0]][-3000:]
    for r in rounds:
        # (b) the cut-off minority neither acknowledged a write nor answered a linearizable read.
        assert Outcome.OK not in r["probes"], r
        assert r["minority_view"] != r["after"], f"the cut did not isolate {r['old']}: {r}"
        assert r["elected"] < 5.0, r
    # (c) every node answers, and every replica holds exactly the same data.
    for node_id, outcomes in result["final"].items():
        assert all(o is Outcome.OK for o in outcomes), (node_id, outcomes)
    assert dumps and all(d == dumps[0] for d in dumps), dumps
    for n, r in enumerate(rounds):
        # Only a write of unknown outcome that landed later may replace the acknowledged one.
        assert dumps[0].get(f"probe{n}") in {r["after"], *r["unknown"]}, (dumps[0], r)
    counts = history.counts()
    assert counts["ok"] >= 100, counts
    # (a) the history, minority probes and final reads included, is linearizable.
    verdict = check(history.operations(), timeout=60.0)
    print(verdict.describe())
    if not verdict.ok:
        history.dump(tmp_path / "history.jsonl")
    assert verdict.verdict is Verdict.OK, verdict.describe()
