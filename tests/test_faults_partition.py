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
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from yakvs.protocol import Consistency, Op, Reply, Request
from yakvs.testing.cluster import Cluster, NodeProc
from yakvs.testing.history import History, Kind, Outcome, WireSession, Workload, execute_recorded
from yakvs.testing.linearizability import Verdict, check
from yakvs.testing.netns import (
    PREFIX,
    PrivateNet,
    cleanup_leftovers,
    ns_cluster,
    unavailable_reason,
)

_WHY_NOT = unavailable_reason()
pytestmark = [
    pytest.mark.skipif(_WHY_NOT is not None, reason=f"partition nemesis: {_WHY_NOT}"),
    pytest.mark.timeout(180),
]

NODES = ("n1", "n2", "n3")
KEYS = [f"k{i}" for i in range(5)]
SECRET = "partition-test-secret"  # nodes bind non-loopback addresses, which requires one
REQUEST_TIMEOUT = 2.0  # the nodes' --request-timeout: bounds every probe of a cut-off node
ISOLATION = 10.0  # at least; the probes of the cut-off node may stretch it by a few seconds


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
              value: str | None = None) -> Outcome | None:
    """One recorded operation on a fresh connection (an unknown outcome poisons a connection);
    None when the node could not be reached, so nothing was sent."""
    try:
        session = _session(node)
    except OSError:
        return None
    try:
        return execute_recorded(history, session, client, kind, key, value)
    finally:
        session.close()


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


def _probe_minority(history: History, old: NodeProc, key: str,
                    client: int) -> list[Outcome | None]:
    """A linearizable read, a write and a delete sent straight to the cut-off node, recorded."""
    return [
        _recorded(history, old, client, Kind.GET, key),
        _recorded(history, old, client + 1, Kind.SET, f"minority-{key}",
                  history.unique_value(client + 1)),
        _recorded(history, old, client + 1, Kind.DELETE, f"minority-{key}"),
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
    minority_view = _dump(old).get(probe)
    time.sleep(max(0.0, ISOLATION - (time.monotonic() - cut)))
    healed = time.monotonic()
    net.heal()
    cluster.wait_ready(cluster.nodes, timeout=30.0)
    return {"old": old.node_id, "new": new.node_id, "elected": elected, "before": before,
            "window": (cut, healed), "isolated": healed - cut,
            "recovered": time.monotonic() - healed,
            "after": after, "unknown": unknown, "minority_view": minority_view,
            "probes": early + late}


def _final_read(history: History, node: NodeProc, client: int, key: str) -> Outcome | None:
    # A node that rejoins with a higher term forces one more election, and reads caught in it
    # time out; retrying is fine for the checker (reads without an answer are dropped).
    deadline = time.monotonic() + 20.0
    while True:
        outcome = _recorded(history, node, client, Kind.GET, key)
        if outcome is Outcome.OK or time.monotonic() > deadline:
            return outcome
        time.sleep(0.2)


def _converged(cluster: Cluster, history: History, keys: list[str]) -> dict[str, Any]:
    """After the heal: linearizable reads of every key through every node (recorded, so "no
    acknowledged write lost" is part of the checker's verdict) and each node's full local dump,
    polled until all agree (bounded)."""
    start = time.monotonic()
    final = {n.node_id: [_final_read(history, n, 100 + i, key) for key in keys]
             for i, n in enumerate(cluster.nodes)}
    print(f"final reads took {time.monotonic() - start:.1f} s")
    dumps: list[dict[str, str | None]] = []
    for _ in range(50):
        dumps = [_dump(n) for n in cluster.nodes]
        if all(d == dumps[0] for d in dumps):
            break
        time.sleep(0.1)
    return {"final": final, "dumps": dumps}


class _TaggedSession:
    """A WireSession that notes, per request, the node, when it was sent, when its reply came
    and whether the node served it: the workload's own traffic then shows whether a cut-off
    node served."""

    def __init__(self, node: NodeProc, served: list[tuple[str, float, float, bool]]) -> None:
        self._inner = WireSession(node.tcp, timeout=REQUEST_TIMEOUT + 3.0)
        self._node_id = node.node_id
        self._served = served

    def connect(self) -> None:
        self._inner.connect()

    def execute(self, request: Request) -> Reply:
        sent = time.monotonic()
        try:
            reply = self._inner.execute(request)
        except BaseException:
            self._served.append((self._node_id, sent, time.monotonic(), False))
            raise
        # NOT_FOUND is an answer too: an absent key read (or deleted) linearizably.
        ok = reply.ok or reply.code == "NOT_FOUND"
        self._served.append((self._node_id, sent, time.monotonic(), ok))
        return reply

    def close(self) -> None:
        self._inner.close()


def _under_load(cluster: Cluster, history: History, nemesis: Callable[[], Any],
                served: list[tuple[str, float, float, bool]] | None = None) -> Any:
    """Run ``nemesis()`` while 4 clients hit random nodes (the cut-off ones included)."""
    rng = random.Random(23)
    answers = served if served is not None else []
    workload = Workload(history, lambda: _TaggedSession(rng.choice(cluster.nodes), answers),
                        KEYS, clients=4, seed=13)
    workload.start()
    try:
        return nemesis()
    finally:
        workload.stop()


def _check_run(cluster: Cluster, history: History, after: dict[str, Any],
               tmp_path: Path) -> None:
    """What every partition run must show: no crash, no traceback, every node answering,
    identical replicas, a linearizable history."""
    crashed = [n.node_id for n in cluster.nodes if not n.alive]
    assert not crashed, crashed
    logs = {n.node_id: n.log_path.read_text(errors="replace") for n in cluster.nodes}
    tracebacks = [name for name, text in logs.items() if "Traceback" in text]
    assert not tracebacks, logs[tracebacks[0]][-3000:]
    for node_id, outcomes in after["final"].items():
        assert all(o is Outcome.OK for o in outcomes), (node_id, outcomes)
    dumps = after["dumps"]
    assert dumps and dumps[0] and all(d == dumps[0] for d in dumps), dumps
    counts = history.counts()
    assert counts["ok"] >= 100, counts
    verdict = check(history.operations(), timeout=60.0)
    print(f"ops {counts}: {verdict.describe()}")
    if not verdict.ok:
        history.dump(tmp_path / "history.jsonl")
    assert verdict.verdict is Verdict.OK, verdict.describe()


@pytest.mark.slow
def test_isolated_leader_acknowledges_nothing_and_replicas_converge(tmp_path: Path) -> None:
    history = History()
    probes = ["probe0", "probe1"]
    served: list[tuple[str, float, float, bool]] = []
    with _cluster_in_namespaces(tmp_path) as (net, cluster):

        def scenario() -> dict[str, Any]:
            def rounds() -> list[dict[str, Any]]:
                done = []
                for round_no in range(2):
                    time.sleep(2.0)
                    done.append(_isolate_leader_round(net, cluster, history, round_no))
                return done

            done = _under_load(cluster, history, rounds, served)
            return {"rounds": done, **_converged(cluster, history, [*KEYS, *probes])}

        after = net.call("client", scenario, timeout=150.0)
        rounds = after["rounds"]
        print([{k: r[k] for k in ("old", "new", "elected", "isolated", "recovered")}
               for r in rounds])
        for r in rounds:
            # (b) the cut-off minority neither acknowledged a write nor answered a linearizable
            # read, and the cut was real: it never saw the write the majority acknowledged.
            # (Clients are never cut off: a probe that could not connect proves nothing.)
            assert Outcome.OK not in r["probes"] and None not in r["probes"], r
            assert r["minority_view"] != r["after"], f"the cut did not isolate {r['old']}: {r}"
            assert r["elected"] < 5.0, r
            # Nor did it serve any workload request sent after the cut and answered before the
            # heal (every workload read is linearizable, every write needs a quorum). The
            # clients stay on a node until a request fails, so how many of their requests reach
            # the cut-off node is luck; the probes above always do.
            start, end = r["window"]
            answered = [sent - start for node, sent, done, ok in served
                        if ok and node == r["old"] and start <= sent and done < end]
            assert not answered, f"{r['old']} answered requests while cut off, at {answered[:5]}"
        # (c) the acknowledged probe writes are on every (identical) replica; only a write of
        # unknown outcome that landed later may have replaced one.
        for key, r in zip(probes, rounds, strict=True):
            assert after["dumps"][0].get(key) in {r["after"], *r["unknown"]}, (after["dumps"], r)
        # (a) and the rest: no crash, identical replicas, a linearizable history.
        _check_run(cluster, history, after, tmp_path)


@pytest.mark.slow
def test_partial_one_way_cut_and_packet_loss_stay_linearizable(tmp_path: Path) -> None:
    """A non-transitive partition (the leader cannot send to one follower, both still reach the
    third node), 15% loss on every link, flapping links, then a follower cut off (a minority
    without the leader, which must refuse like an isolated leader): one history through all."""
    history = History()
    with _cluster_in_namespaces(tmp_path) as (net, cluster):

        def nemesis() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            time.sleep(1.5)
            lead = cluster.leader(timeout=10.0)
            victim = next(n for n in cluster.nodes if n is not lead)
            net.cut(lead.node_id, victim.node_id)
            seen["one-way"] = f"{lead.node_id} -/-> {victim.node_id}"
            time.sleep(6.0)
            net.heal()
            for node in NODES:
                net.lossy(node, 0.15, [n for n in NODES if n != node])
            time.sleep(6.0)
            net.heal()
            # Flapping: a random node cut off and back, faster than elections settle.
            rng = random.Random(5)
            for _ in range(8):
                cut_off = rng.choice(NODES)
                net.isolate(cut_off, [n for n in NODES if n != cut_off])
                time.sleep(rng.uniform(0.2, 1.0))
                net.heal()
                time.sleep(rng.uniform(0.0, 0.4))
            cluster.wait_ready(cluster.nodes, timeout=30.0)
            lead = cluster.leader(timeout=10.0)
            follower = next(n for n in cluster.nodes if n is not lead)
            net.isolate(follower.node_id, [n.node_id for n in cluster.nodes if n is not follower])
            acked = _write_through(history, [lead], "probe", 300, set())
            seen["follower"] = follower.node_id
            seen["probes"] = _probe_minority(history, follower, "probe", 301)
            seen["follower_view"], seen["acked"] = _dump(follower).get("probe"), acked
            net.heal()
            cluster.wait_ready(cluster.nodes, timeout=30.0)
            return seen

        def scenario() -> dict[str, Any]:
            seen = _under_load(cluster, history, nemesis)
            return {"nemesis": seen, **_converged(cluster, history, [*KEYS, "probe"])}

        after = net.call("client", scenario, timeout=120.0)
        seen = after["nemesis"]
        print(seen)
        assert Outcome.OK not in seen["probes"] and None not in seen["probes"], seen
        assert seen["follower_view"] != seen["acked"], f"the cut did not isolate: {seen}"
        _check_run(cluster, history, after, tmp_path)


def test_private_net_cuts_heals_and_leaves_nothing_behind() -> None:
    """The helper itself: addresses only inside its namespaces, cuts that cut (one way when
    asked), loss, heal, and a teardown that removes everything, dead runs' leftovers included."""
    with PrivateNet(["a", "b", "c"], subnet="10.77.9") as net:
        names = [*net.ns.values(), net.hub]
        root_addrs = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True,
                                    check=True).stdout
        assert "10.77.9." not in root_addrs
        assert net.reaches("a", "b") and net.reaches("b", "a")
        net.cut("a", "b")
        assert not net.reaches("a", "b")
        assert net.reaches("b", "a"), "the cut was not one-way"
        assert net.reaches("c", "b") and net.reaches("a", "c")
        net.heal()
        assert net.rules("a") == [] and net.rules("b") == []
        assert net.reaches("a", "b")
        net.lossy("b", 1.0, ["a"])
        assert not net.reaches("a", "b") and net.reaches("c", "b")
    assert not set(names) & set(_netns_names())
    stale = f"{PREFIX}{_dead_pid()}-0-x"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        assert stale in cleanup_leftovers()
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True)
    assert stale not in _netns_names()


def _netns_names() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid
