"""Fault suite, cluster in network namespaces: the leader is cut off from the other nodes by
iptables DROP rules, then healed, under load. The isolated minority must acknowledge no write
and serve no stale linearizable read; after the heal every replica holds the same data; the whole
history must pass the checker.

Each node runs in its own namespace with a veth into a bridge namespace; the test's clients run
in one more namespace, reached by moving the test's threads there with setns(2). Every address
and every iptables rule lives in a namespace this test creates and deletes. Needs root.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from yakvs.protocol import Consistency, Op, Request
from yakvs.testing.cluster import Cluster, NodeProc
from yakvs.testing.history import History, Kind, Outcome, WireSession, Workload, execute_recorded
from yakvs.testing.linearizability import Verdict, check

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("iptables")),
        reason="needs root, iproute2 and iptables for network namespaces",
    ),
    pytest.mark.timeout(240),
]

KEYS = [f"k{i}" for i in range(5)]
SECRET = "partition-test-secret"  # nodes bind non-loopback addresses, which requires one
_CLONE_NEWNET = 0x40000000


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


class _Net:
    """A bridge namespace plus one namespace per member, each with one address on the bridge."""

    def __init__(self, members: list[str]) -> None:
        self.tag = f"yk{os.getpid()}"
        self.subnet = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
        self.bridge = f"{self.tag}-br"
        self.ns: dict[str, str] = {}
        self.ip: dict[str, str] = {}
        try:
            _sh("ip", "netns", "add", self.bridge)
            _sh("ip", "-n", self.bridge, "link", "add", "br0", "type", "bridge")
            _sh("ip", "-n", self.bridge, "link", "set", "br0", "up")
            for i, name in enumerate(members, start=1):
                ns, peer = f"{self.tag}-{name}", f"p{i}"
                _sh("ip", "netns", "add", ns)
                self.ns[name], self.ip[name] = ns, f"{self.subnet}.{i}"
                _sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth",
                    "peer", "name", peer, "netns", self.bridge)
                _sh("ip", "-n", ns, "addr", "add", f"{self.ip[name]}/24", "dev", "eth0")
                _sh("ip", "-n", ns, "link", "set", "eth0", "up")
                _sh("ip", "-n", ns, "link", "set", "lo", "up")
                _sh("ip", "-n", self.bridge, "link", "set", peer, "master", "br0")
                _sh("ip", "-n", self.bridge, "link", "set", peer, "up")
        except BaseException:
            self.close()
            raise

    def isolate(self, name: str, others: list[str]) -> None:
        """Drop everything between ``name`` and ``others``, both ways (clients still reach it)."""
        for other in others:
            ip = self.ip[other]
            _sh("ip", "netns", "exec", self.ns[name], "iptables", "-w", "-A", "INPUT",
                "-s", ip, "-j", "DROP")
            _sh("ip", "netns", "exec", self.ns[name], "iptables", "-w", "-A", "OUTPUT",
                "-d", ip, "-j", "DROP")

    def heal(self) -> None:
        for ns in self.ns.values():
            _sh("ip", "netns", "exec", ns, "iptables", "-w", "-F")

    def close(self) -> None:
        for ns in [*self.ns.values(), self.bridge]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


class _NsNode(NodeProc):
    """A cluster node started inside its namespace with ``ip netns exec``; the command line is
    the helper's own (NodeProc.start), with only the launcher in front."""

    netns: str = ""

    def start(self, bootstrap: bool = False, join: str | None = None,
              extra: list[str] | None = None) -> None:
        assert not self.alive, f"{self.node_id} is already running"
        self.starts += 1
        args = ["ip", "netns", "exec", self.netns, sys.executable, "-m", "yakvs.cli.raft",
                "--id", self.node_id, "--raft", self.raft, "--tcp", self.tcp, "--api", self.api,
                "--dir", str(self.data_dir), *self.extra_args, *(extra or [])]
        if bootstrap:
            args.append("--bootstrap")
        if join:
            args += ["--join", join]
        env = {**os.environ, "YAKVS_SECRET": SECRET}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)


def _in_netns(netns: str, fn: Callable[[], Any], timeout: float = 200.0) -> Any:
    """Run ``fn`` in a new thread moved into ``netns``; threads it starts inherit the namespace.
    The test's own thread never moves, so nothing else in this process is affected."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def main() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=main, name=f"in-{netns}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"test body in {netns} still running after {timeout} s")
    if errors:
        raise errors[0]
    return result[0]


@contextlib.contextmanager
def _ns_cluster(base_dir: Path) -> Iterator[tuple[Cluster, _Net]]:
    net = _Net(["n1", "n2", "n3", "client"])
    cluster = Cluster(base_dir, size=0, secret=SECRET, extra_args=["--request-timeout", "2"])
    try:
        for name in ("n1", "n2", "n3"):
            ip = net.ip[name]
            node = _NsNode(name, f"{ip}:7000", f"{ip}:8080", f"{ip}:8081", base_dir,
                           secret=SECRET, extra_args=cluster.extra_args)
            node.netns = net.ns[name]
            cluster.nodes.append(node)
        yield cluster, net
    finally:
        cluster.close()
        net.close()


def _probe_isolated(history: History, majority: list[NodeProc], isolated: NodeProc) -> None:
    """Write through the majority, then ask the isolated old leader: it must neither return the
    old value for a linearizable read nor acknowledge a write of its own."""
    value = history.unique_value(200)
    deadline = time.monotonic() + 10
    while True:
        session = WireSession(random.choice(majority).tcp, timeout=5.0)
        with contextlib.suppress(OSError):
            session.connect()
            if execute_recorded(history, session, 200, Kind.SET, "probe", value) is Outcome.OK:
                break
        session.close()
        assert time.monotonic() < deadline, "the majority acknowledged no write"
    session.close()
    minority = WireSession(isolated.tcp, timeout=5.0)
    minority.connect()
    read = minority.execute(Request(Op.GET, "probe", consistency=Consistency.LINEARIZABLE))
    assert not read.ok or read.value == value, f"stale linearizable read from the minority: {read}"
    minority.close()
    minority.connect()
    outcome = execute_recorded(history, minority, 201, Kind.SET, "probe", history.unique_value(201))
    assert outcome is not Outcome.OK, "the isolated minority acknowledged a write"
    minority.close()


def _scenario(cluster: Cluster, net: _Net, history: History) -> dict[str, Any]:
    rng = random.Random(17)
    cluster.start(timeout=60)
    workload = Workload(
        history, lambda: WireSession(rng.choice(cluster.nodes).tcp, timeout=3.0), KEYS,
        clients=4, seed=9,
    )
    workload.start()
    elections = []
    try:
        for _ in range(2):
            time.sleep(2.0)
            old = cluster.leader(timeout=10.0)
            majority = [n for n in cluster.nodes if n is not old]
            net.isolate(old.node_id, [n.node_id for n in majority])
            start = time.monotonic()
            cluster.leader(timeout=10.0, among=majority)
            elections.append(time.monotonic() - start)
            _probe_isolated(history, majority, old)
            net.heal()
            cluster.wait_ready(cluster.nodes, timeout=20)
    finally:
        net.heal()
        workload.stop()
    for n, node in enumerate(cluster.nodes):
        session = WireSession(node.tcp, timeout=10.0)
        session.connect()
        for key in [*KEYS, "probe"]:
            assert execute_recorded(history, session, 100 + n, Kind.GET, key) is Outcome.OK
        session.close()
    views: list[dict[str, str | None]] = []
    for _ in range(50):
        views = []
        for node in cluster.nodes:
            session = WireSession(node.tcp, timeout=5.0)
            session.connect()
            views.append({
                k: session.execute(Request(Op.GET, k, consistency=Consistency.STALE)).value
                for k in [*KEYS, "probe"]
            })
            session.close()
        if all(v == views[0] for v in views):
            break
        time.sleep(0.1)
    return {"elections": elections, "views": views}


@pytest.mark.slow
def test_isolated_leader_acknowledges_nothing_and_replicas_converge(tmp_path):
    history = History()
    with _ns_cluster(tmp_path) as (cluster, net):
        outcome = _in_netns(net.ns["client"], lambda: _scenario(cluster, net, history))
        crashed = [n.node_id for n in cluster.nodes if not n.alive]
        logs = {n.node_id: n.log_path.read_text(errors="replace") for n in cluster.nodes}
    views = outcome["views"]
    assert all(v == views[0] for v in views), views
    assert not crashed, crashed
    tracebacks = [name for name, text in logs.items() if "Traceback" in text]
    assert not tracebacks, logs[tracebacks[0]][-3000:]
    assert max(outcome["elections"]) < 3.0, outcome["elections"]
    counts = history.counts()
    assert counts["ok"] >= 200, counts
    result = check(history.operations(), timeout=60.0)
    print(f"ops {counts}, elections {outcome['elections']}, {result.describe()}")
    if not result.ok:
        history.dump(tmp_path / "history.jsonl")
    assert result.verdict is Verdict.OK, result.describe()
