"""Benchmark a 3-node yakvs cluster on this machine and print a table.

    python benchmarks/bench_raft.py [--jsonload /tmp/jsonload] [--n 2000] [--secret s3cret]

Starts three real ``yakvs-raft`` processes (secret set, as in production), then runs jsonload
(/work/shared/tools/jsonload; build: ``cd a-copy && go build -o /tmp/jsonload .``): SET c=50 via
the leader and via a follower, linearizable GET c=50 via the leader, SET c=1 for latency, and
kill -9 failover trials (kill the leader, time until a SET through a survivor is acknowledged).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from yakvs.testing.cluster import Cluster, NodeProc

_FIELD = re.compile(r"(\w+)=(\S+)")


def jsonload(binary: str, node: NodeProc, op: str, c: int, n: int, extra: list[str]) -> dict:
    cmd = [binary, "-addr", node.tcp, "-proto", "json", "-op", op, "-c", str(c), "-n", str(n),
           "-d", "100", *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    line = (out.stdout.strip().splitlines() or [out.stderr.strip()])[-1]
    return dict(_FIELD.findall(line)) | {"raw": line}


def cpu_seconds(node: NodeProc) -> float:
    """utime + stime of a node process: CPU per op is steadier than ops/s on a shared box."""
    assert node.proc is not None
    fields = Path(f"/proc/{node.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def failover(cluster: Cluster) -> float:
    old = cluster.leader()
    survivors = [n for n in cluster.running() if n is not old]
    old.kill()
    killed = time.monotonic()
    deadline = killed + 20
    while time.monotonic() < deadline:
        for node in survivors:
            try:
                reply = node.request({"op": "SET", "key": "failover", "value": "x"}, timeout=5)[0]
            except OSError:
                continue
            if reply["status"] == "success":
                took = time.monotonic() - killed
                old.start()
                cluster.wait_ready([old], timeout=30)
                return took
        time.sleep(0.01)
    raise TimeoutError("no acknowledged write after the leader was killed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jsonload", default="/tmp/jsonload")
    parser.add_argument("--n", type=int, default=2000, help="requests per connection at c=50")
    parser.add_argument("--secret", default="bench-secret")
    parser.add_argument("--failovers", type=int, default=5)
    args = parser.parse_args()
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="yakvs-bench-") as tmp:
        cluster = Cluster(Path(tmp), size=3, secret=args.secret,
                          extra_args=["--log-level", "warning"])
        try:
            cluster.start()
            leader = cluster.leader()
            follower = next(n for n in cluster.nodes if n is not leader)
            runs = [
                ("SET c=50 via leader", leader, "set", 50, args.n, []),
                ("SET c=50 via follower", follower, "set", 50, args.n, []),
                ("preload 50k keys", leader, "set", 50, 1000, ["-seq", "-k", "50000"]),
                ("GET c=50 linearizable, leader", leader, "get", 50, args.n, ["-k", "50000"]),
                ("GET c=50 linearizable, follower", follower, "get", 50, args.n, ["-k", "50000"]),
                ("SET c=1 via leader", leader, "set", 1, 3000, []),
            ]
            for name, node, op, c, n, extra in runs:
                before = {x.node_id: cpu_seconds(x) for x in cluster.nodes}
                res = jsonload(args.jsonload, node, op, c, n, extra)
                done = max(1, int(res.get("done", 0)))
                used = {x.node_id: cpu_seconds(x) - before[x.node_id] for x in cluster.nodes}
                entry = used[node.node_id] * 1e6 / done
                lead = used[leader.node_id] * 1e6 / done
                rest = sum(v for k, v in used.items() if k != leader.node_id) * 1e6 / done
                rows.append((name, res.get("rps", "?"), res.get("p50_ms", "?"),
                             res.get("p99_ms", "?"), res.get("errors", res["raw"]),
                             f"{entry:.0f}/{lead:.0f}/{rest:.0f}"))
            times = [failover(cluster) for _ in range(args.failovers)]
            rows.append((f"failover x{len(times)} (s to next ack)",
                         " ".join(f"{t:.2f}" for t in times), "-", "-", f"max {max(times):.2f}",
                         "-"))
        finally:
            cluster.close()
    header = ("run", "ops/s", "p50 ms", "p99 ms", "errors",
              "CPU us/op: entry node / leader / followers")
    widths = [max(len(str(r[i])) for r in [*rows, header]) for i in range(len(header))]
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (2 cores, shared)")
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
