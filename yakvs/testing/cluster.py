"""Real multi-process yakvs clusters for tests: ``Cluster`` starts N ``yakvs-raft`` processes on
ephemeral 127.0.0.1 ports (bootstrap + joins, as the README does), finds the leader, and can
kill -9, stop, pause and restart nodes with their data folders.

Talks to nodes with plain sockets and urllib so it depends on nothing it is meant to test.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_ports(count: int) -> list[int]:
    """Ports the kernel says are free; all held open together so they are distinct."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class NodeProc:
    """One ``yakvs-raft`` child process and the addresses it keeps across restarts."""

    node_id: str
    raft: str
    tcp: str
    api: str
    data_dir: Path
    secret: str | None = None
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.node_id}.{self.starts}.log"

    def start(self, bootstrap: bool = False, join: str | None = None,
              extra: list[str] | None = None) -> None:
        assert not self.alive, f"{self.node_id} is already running"
        self.starts += 1
        args = [sys.executable, "-m", "yakvs.cli.raft", "--id", self.node_id, "--raft", self.raft,
                "--tcp", self.tcp, "--api", self.api, "--dir", str(self.data_dir),
                *self.extra_args, *(extra or [])]
        if bootstrap:
            args.append("--bootstrap")
        if join:
            args += ["--join", join]
        env = dict(os.environ)
        env.pop("YAKVS_SECRET", None)
        if self.secret:
            env["YAKVS_SECRET"] = self.secret
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: the process dies mid-flight, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in ``timeout``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.resume()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def pause(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)

    # -- talking to the node -----------------------------------------------------------------

    def http(self, method: str, path: str, body: dict[str, Any] | None = None,
             token: str | None = None, timeout: float = 10.0) -> tuple[int, Any]:
        """(status, decoded JSON or text) from the admin API; connection errors -> (0, str)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://{self.api}{path}", data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        token = token if token is not None else self.secret
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, _decode(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _decode(exc.read())
        except (OSError, urllib.error.URLError) as exc:
            return 0, str(exc)

    def status(self) -> dict[str, Any]:
        code, body = self.http("GET", "/status", timeout=3.0)
        return body if code == 200 and isinstance(body, dict) else {}

    def ready(self) -> bool:
        return self.http("GET", "/readyz", timeout=2.0)[0] == 200

    def request(self, *reqs: dict[str, Any], timeout: float = 10.0) -> list[dict[str, Any]]:
        """Send JSON-lines requests pipelined on one connection; returns the decoded replies."""
        host, port = self.tcp.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in reqs))
            buf = b""
            while buf.count(b"\n") < len(reqs):
                chunk = sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionError(f"{self.node_id} closed the connection")
                buf += chunk
        return [json.loads(line) for line in buf.splitlines()[: len(reqs)]]


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


class Cluster:
    """N ``yakvs-raft`` nodes on 127.0.0.1: ``n1`` bootstraps, the others join through it."""

    def __init__(self, base_dir: Path, size: int = 3, secret: str | None = None,
                 extra_args: list[str] | None = None) -> None:
        self.base_dir = Path(base_dir)
        self.secret = secret
        self.extra_args = list(extra_args or [])
        self.nodes: list[NodeProc] = []
        for _ in range(size):
            self.new_node()

    def new_node(self) -> NodeProc:
        """A node with fresh ports, not started (``start_node`` / ``join`` it)."""
        raft, tcp, api = (f"127.0.0.1:{p}" for p in free_ports(3))
        node = NodeProc(f"n{len(self.nodes) + 1}", raft, tcp, api, self.base_dir,
                        secret=self.secret, extra_args=self.extra_args)
        self.nodes.append(node)
        return node

    def __getitem__(self, node_id: str) -> NodeProc:
        return next(n for n in self.nodes if n.node_id == node_id)

    def start(self, timeout: float = 20.0) -> Cluster:
        first, *rest = self.nodes
        first.start(bootstrap=True)
        self.wait_ready([first], timeout)
        for node in rest:
            node.start(join=first.api)
        self.wait_ready(self.nodes, timeout)
        return self

    def wait_ready(self, nodes: list[NodeProc] | None = None, timeout: float = 20.0) -> None:
        """Until every node's /readyz says 200; raises with the log tail of a node that died."""
        deadline = time.monotonic() + timeout
        pending = list(nodes if nodes is not None else self.running())
        while pending:
            for node in list(pending):
                if not node.alive:
                    raise RuntimeError(f"{node.node_id} exited:\n{node.log_tail()}")
                if node.ready():
                    pending.remove(node)
            if pending and time.monotonic() > deadline:
                names = [n.node_id for n in pending]
                raise TimeoutError(f"not ready: {names}\n{pending[0].log_tail()}")
            if pending:
                time.sleep(0.05)

    def running(self) -> list[NodeProc]:
        return [n for n in self.nodes if n.alive]

    def leader(self, timeout: float = 10.0, among: list[NodeProc] | None = None) -> NodeProc:
        """The node that says it leads and that a majority of running nodes follow."""
        deadline = time.monotonic() + timeout
        while True:
            candidates = among if among is not None else self.running()
            views = {n.node_id: n.status() for n in candidates}
            leaders = [n for n in candidates if views[n.node_id].get("role") == "leader"
                       and views[n.node_id].get("has_quorum")]
            for node in leaders:
                agree = sum(1 for v in views.values() if v.get("leader_id") == node.node_id)
                if agree * 2 > len(self.nodes_in_config(views)):
                    return node
            if time.monotonic() > deadline:
                raise TimeoutError(f"no leader; views: {views}")
            time.sleep(0.05)

    @staticmethod
    def nodes_in_config(views: dict[str, dict[str, Any]]) -> list[str]:
        for view in views.values():
            if view.get("members"):
                return [m["id"] for m in view["members"]]
        return list(views)

    def followers(self) -> list[NodeProc]:
        lead = self.leader()
        return [n for n in self.running() if n is not lead]

    def close(self) -> None:
        for node in self.nodes:
            node.kill()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def run_cluster(base_dir: Path, size: int = 3, secret: str | None = None,
                extra_args: list[str] | None = None) -> Iterator[Cluster]:
    """A started cluster, killed on exit whatever happens."""
    cluster = Cluster(base_dir, size, secret, extra_args)
    try:
        yield cluster.start()
    finally:
        cluster.close()
