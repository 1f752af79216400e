"""yakvs-server vs Redis, side by side, with the same load generator (jsonload).

Starts ``yakvs-server`` (fsync=everysec by default) and ``redis-server --save '' --appendonly no``
on free loopback ports, preloads both, then runs jsonload against each alternately, ``--rounds``
times per scenario, and prints medians and ratios. Not a test: run it by hand.

    python benchmarks/bench_server.py [--rounds 3] [--fsync everysec] [--jsonload /tmp/jsonload]

``--baseline DIR`` also runs the yakvs found in DIR (e.g. ``git archive <rev> yakvs | tar -x -C
DIR``) in the same alternation, so a change is measured against the old code under the same
machine load; the table then shows the baseline's ratio to Redis as well.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOL_SRC = Path(__file__).resolve().parents[1].parent / "shared" / "tools" / "jsonload"
SCENARIOS = [  # (op, pipeline, target ratio vs Redis)
    ("set", 16, 0.30),
    ("get", 16, 0.30),
    ("set", 1, 0.85),
    ("get", 1, 0.85),
]
_FIELD = re.compile(r"(\w+)=([\d.]+)")
# --floor: a do-nothing uvloop server answering every line at once. What it reaches is the
# ceiling for any asyncio/uvloop server in Python on this machine, whatever it does per request.
FLOOR_SERVER = """
import asyncio, sys, uvloop
OK = b'{"status":"success"}\\n'
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t
    def data_received(self, data): self.t.write(OK * data.count(b"\\n"))
async def main():
    await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]))
    await asyncio.sleep(3600)
uvloop.run(main()) if hasattr(uvloop, "run") else (uvloop.install(), asyncio.run(main()))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def ensure_jsonload(path: str) -> str:
    if os.path.exists(path):
        return path
    src = os.environ.get("JSONLOAD_SRC", str(TOOL_SRC))
    if not os.path.isdir(src):
        src = "/work/shared/tools/jsonload"
    build = tempfile.mkdtemp(prefix="jsonload-")
    shutil.copytree(src, build, dirs_exist_ok=True)
    subprocess.run(["go", "build", "-o", path, "."], cwd=build, check=True)
    return path


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def jsonload(
    tool: str, port: int, proto: str, op: str, p: int, args: argparse.Namespace, *extra: str,
    pid: int | None = None,
) -> tuple[float, float, float, float]:
    """(rps, p50 ms, p99 ms, server CPU us per request -- measured when ``pid`` is given)."""
    cmd = [
        tool, "-addr", f"127.0.0.1:{port}", "-proto", proto, "-op", op,
        "-c", str(args.c), "-n", str(args.n), "-p", str(p), "-k", str(args.k), "-d", str(args.d),
        *extra,
    ]  # fmt: skip
    cpu_before = cpu_seconds(pid)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    cpu = cpu_seconds(pid) - cpu_before
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
    fields = dict(_FIELD.findall(out.stdout))
    if int(fields.get("errors", "0")) or int(fields.get("misses", "0")):
        print(f"warning: {out.stdout.strip()}", file=sys.stderr)
    done = int(fields.get("done", "0")) or 1
    rps, p50, p99 = float(fields["rps"]), float(fields["p50_ms"]), float(fields["p99_ms"])
    return rps, p50, p99, cpu / done * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fsync", default="everysec", choices=["always", "everysec", "no"])
    ap.add_argument("--jsonload", default="/tmp/jsonload")
    ap.add_argument("-c", type=int, default=50)
    ap.add_argument("-n", type=int, default=4000)
    ap.add_argument("-k", type=int, default=100_000)
    ap.add_argument("-d", type=int, default=100)
    ap.add_argument("--only", help="comma list like set16,get1")
    ap.add_argument("--floor", action="store_true", help="also measure a do-nothing uvloop server")
    ap.add_argument("--baseline", help="folder holding another version's yakvs/ to compare")
    args = ap.parse_args()
    tool = ensure_jsonload(args.jsonload)
    if shutil.which("redis-server") is None:
        print("redis-server not installed", file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="yakvs-bench-")
    yport, rport = free_port(), free_port()
    yakvs = subprocess.Popen(
        [sys.executable, "-m", "yakvs.cli.server", "--addr", f"127.0.0.1:{yport}",
         "--log", os.path.join(workdir, "kvs.log"), "--fsync", args.fsync,
         "--log-level", "warning"],
    )  # fmt: skip
    redis = subprocess.Popen(
        ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    bport = free_port()
    baseline = None
    if args.baseline:
        env = {**os.environ, "PYTHONPATH": os.path.abspath(args.baseline)}
        baseline = subprocess.Popen(
            [sys.executable, "-m", "yakvs.cli.server", "--addr", f"127.0.0.1:{bport}",
             "--log", os.path.join(workdir, "base.log"), "--fsync", args.fsync,
             "--log-level", "warning"],
            env=env, cwd=workdir,
        )  # fmt: skip
    fport = free_port()
    floor = (
        subprocess.Popen([sys.executable, "-c", FLOOR_SERVER, str(fport)]) if args.floor else None
    )
    load_before = os.getloadavg()[0]
    results: dict[tuple[str, int], dict[str, list[tuple[float, float, float, float]]]] = {}
    try:
        if floor is not None:
            wait_port(fport)
        if baseline is not None:
            wait_port(bport)
        wait_port(yport)
        wait_port(rport)
        per_conn = max(1, args.k // args.c)
        preload = [(yport, "json"), (rport, "resp")] + ([(bport, "json")] if baseline else [])
        for port, proto in preload:  # every key exists for GET runs
            jsonload(
                tool,
                port,
                proto,
                "set",
                16,
                argparse.Namespace(**{**vars(args), "n": per_conn}),
                "-seq",
            )
        for op, p, _ in SCENARIOS:
            if args.only and f"{op}{p}" not in args.only.split(","):
                continue
            runs = results.setdefault(
                (op, p), {"yakvs": [], "redis": [], "floor": [], "baseline": []}
            )
            for _ in range(args.rounds):
                if baseline is not None:
                    runs["baseline"].append(
                        jsonload(tool, bport, "json", op, p, args, pid=baseline.pid)
                    )
                runs["yakvs"].append(jsonload(tool, yport, "json", op, p, args, pid=yakvs.pid))
                runs["redis"].append(jsonload(tool, rport, "resp", op, p, args, pid=redis.pid))
                if floor is not None:
                    runs["floor"].append(jsonload(tool, fport, "json", op, p, args, pid=floor.pid))
    finally:
        for proc in (yakvs, redis, floor, baseline):
            if proc is None:
                continue
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)

    load_after = os.getloadavg()[0]
    print(f"\nyakvs-server (fsync={args.fsync}) vs redis-server, jsonload c={args.c} n={args.n} "
          f"k={args.k} d={args.d}, median of {args.rounds} alternating rounds, "
          f"load {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    head = f"{'op':<5}{'P':>3}{'yakvs rps':>12}{'redis rps':>12}{'ratio':>8}{'target':>8}"
    head += f"{'y p50ms':>9}{'y p99ms':>9}{'r p99ms':>9}{'y cpu/req':>11}{'r cpu/req':>11}  ok"
    if args.floor:
        head += f"{'floor/redis':>13}"
    if args.baseline:
        head += f"{'base/redis':>12}{'b p99ms':>9}{'b cpu/req':>11}"
    print(head)
    print("-" * len(head))
    print("(cpu/req: user+system CPU of the server process per request, from /proc: less noisy")
    print(" than rps on a shared machine; the ratio comes down to it when the server is busy)")
    for op, p, target in SCENARIOS:
        if (op, p) not in results:
            continue
        runs = results[(op, p)]
        y = [statistics.median(x) for x in zip(*runs["yakvs"], strict=True)]
        r = [statistics.median(x) for x in zip(*runs["redis"], strict=True)]
        ratio = y[0] / r[0] if r[0] else 0.0
        ok = ratio >= target and (p == 1 or y[2] < 10.0)
        line = (
            f"{op.upper():<5}{p:>3}{y[0]:>12.0f}{r[0]:>12.0f}{ratio:>8.2f}{target:>8.2f}"
            f"{y[1]:>9.2f}{y[2]:>9.2f}{r[2]:>9.2f}{y[3]:>9.2f}us{r[3]:>9.2f}us"
            f"  {'yes' if ok else 'NO '}"
        )
        if runs["floor"]:
            line += f"{statistics.median(x[0] for x in runs['floor']) / r[0]:>13.2f}"
        if runs["baseline"]:
            b_rps = statistics.median(x[0] for x in runs["baseline"])
            b_p99 = statistics.median(x[2] for x in runs["baseline"])
            b_cpu = statistics.median(x[3] for x in runs["baseline"])
            line += f"{b_rps / r[0]:>12.2f}{b_p99:>9.2f}{b_cpu:>9.2f}us"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
