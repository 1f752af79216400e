"""Benchmark a 3-node yakvs cluster on this machine and print a table.

    python benchmarks/bench_raft.py [--jsonload /tmp/jsonload] [--n 2000] [--repeat 3]
                                    [--failovers 5] [--secret s3cret]

Starts three real ``yakvs-raft`` processes (secret set, as in production), then runs jsonload
(/work/shared/tools/jsonload; build: ``cd a-copy && go build -o /tmp/jsonload .``): SET c=50 via
the leader and via a follower, linearizable GET c=50 via the leader and a follower, SET c=1 for
latency, and kill -9 failover trials (kill the leader, time until a SET through a survivor is
acknowledged). With ``--repeat N`` every load run is done N times in turn and the table shows
medians (the machine is shared and noisy; CPU microseconds per op are the steadier figure).
The last columns come from the leader's /metrics: client writes per replicated batch, reads per
barrier, and the share of commit-only append-entries the leader never had to send.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def metrics(node: NodeProc) -> dict[str, float]:
    status, text = node.http("GET", "/metrics")
    if status != 200 or not isinstance(text, str):
        return {}
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("yakvs_") and value:
            out[name.removeprefix("yakvs_raft_")] = float(value)
    return out


def ratio(after: dict[str, float], before: dict[str, float], num: str, den: str) -> float | None:
    if num not in after or den not in after:
        return None
    d = after[den] - before.get(den, 0)
    return (after[num] - before.get(num, 0)) / d if d else None


def measure(binary: str, cluster: Cluster, leader: NodeProc, node: NodeProc, op: str, c: int,
            n: int, extra: list[str]) -> dict[str, Any]:
    before = {x.node_id: cpu_seconds(x) for x in cluster.nodes}
    # Batches and barriers are counted where requests enter; commit notices on the leader.
    m0, l0 = metrics(node), metrics(leader)
    res = jsonload(binary, node, op, c, n, extra)
    m1, l1 = metrics(node), metrics(leader)
    done = max(1, int(res.get("done", 0)))
    used = {x.node_id: cpu_seconds(x) - before[x.node_id] for x in cluster.nodes}
    deferred = ratio(l1, l0, "commit_notices_saved_total", "commit_notices_deferred_total")
    return {
        "rps": float(res.get("rps", 0)), "p50": float(res.get("p50_ms", 0)),
        "p99": float(res.get("p99_ms", 0)), "errors": res.get("errors", res["raw"]),
        "entry": used[node.node_id] * 1e6 / done, "leader": used[leader.node_id] * 1e6 / done,
        "rest": sum(v for k, v in used.items() if k != leader.node_id) * 1e6 / done,
        "batch": ratio(m1, m0, "writes_total", "write_batches_total"),
        "barrier": (done / (m1["barriers_total"] - m0["barriers_total"])
                    if op == "get" and m1.get("barriers_total", 0) > m0.get("barriers_total", 0)
                    else None),
        "saved": deferred,
    }


def _median(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    med = statistics.median(vals)
    return f"{med:.0f}" if med >= 10 else f"{med:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jsonload", default="/tmp/jsonload")
    parser.add_argument("--n", type=int, default=2000, help="requests per connection at c=50")
    parser.add_argument("--secret", default="bench-secret")
    parser.add_argument("--failovers", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each load (medians)")
    args = parser.parse_args()
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="yakvs-bench-") as tmp:
        cluster = Cluster(Path(tmp), size=3, secret=args.secret,
                          extra_args=["--log-level", "warning"])
        try:
            cluster.start()
            leader = cluster.leader()
            follower = next(n for n in cluster.nodes if n is not leader)
            jsonload(args.jsonload, leader, "set", 50, 1000, ["-seq", "-k", "50000"])  # preload
            runs = [
                ("SET c=50 via leader", leader, "set", 50, args.n, []),
                ("SET c=50 via follower", follower, "set", 50, args.n, []),
                ("GET c=50 linearizable, leader", leader, "get", 50, args.n, ["-k", "50000"]),
                ("GET c=50 linearizable, follower", follower, "get", 50, args.n, ["-k", "50000"]),
                ("SET c=1 via leader", leader, "set", 1, 3000, []),
            ]
            results: dict[str, list[dict[str, Any]]] = {r[0]: [] for r in runs}
            for _ in range(args.repeat):
                for name, node, op, c, n, extra in runs:
                    results[name].append(
                        measure(args.jsonload, cluster, leader, node, op, c, n, extra))
            for name, res in results.items():
                col = {k: _median([r[k] for r in res]) for k in
                       ("rps", "p50", "p99", "entry", "leader", "rest", "batch", "barrier",
                        "saved")}
                errors = ",".join(sorted({str(r["errors"]) for r in res}))
                rows.append((name, col["rps"], col["p50"], col["p99"], errors,
                             f"{col['entry']}/{col['leader']}/{col['rest']}",
                             col["batch"], col["barrier"], col["saved"]))
            times = [failover(cluster) for _ in range(args.failovers)]
            if times:
                rows.append((f"failover x{len(times)} (s to next ack)",
                             " ".join(f"{t:.2f}" for t in times), "-", "-",
                             f"max {max(times):.2f}", "-", "-", "-", "-"))
        finally:
            cluster.close()
    header = ("run", "ops/s", "p50 ms", "p99 ms", "errors",
              "CPU us/op: entry node / leader / followers", "writes/batch", "reads/barrier",
              "notices saved")
    widths = [max(len(str(r[i])) for r in [*rows, header]) for i in range(len(header))]
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (2 cores, shared); "
          f"medians of {args.repeat}")
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
