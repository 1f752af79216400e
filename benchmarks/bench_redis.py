"""redis-benchmark against yakvs-server and redis-server side by side; prints a table of ratios.

    python benchmarks/bench_redis.py            # -n 200000 -c 50 -r 100000 -d 100, P=1 and P=16
    python benchmarks/bench_redis.py -n 50000 --rounds 1
    python benchmarks/bench_redis.py --resp3     # redis-benchmark -3: sessions after HELLO 3

Runs alternate between the two servers (yakvs, redis, yakvs, ...) so background load hits both
alike; each figure is the median of ``--rounds`` runs. Both servers log every write and fsync
once a second: yakvs with its command log (``--fsync everysec``), Redis with its AOF
(``appendonly yes``, ``appendfsync everysec``), RDB snapshots off.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from yakvs.testing.redis import REDIS_BENCHMARK, REDIS_SERVER, run_redis  # noqa: E402
from yakvs.testing.server import spawn_server  # noqa: E402

TARGETS = {1: 0.85, 16: 0.35}


def bench(
    port: int, n: int, clients: int, pipeline: int, resp3: bool = False
) -> dict[str, float]:
    """One redis-benchmark run; requests per second by test name (SET, GET)."""
    assert REDIS_BENCHMARK is not None
    out = subprocess.run(
        [REDIS_BENCHMARK, "-h", "127.0.0.1", "-p", str(port), "-t", "set,get", "-n", str(n),
         "-c", str(clients), "-r", "100000", "-d", "100", "-P", str(pipeline), "--csv",
         *(["-3"] if resp3 else [])],
        capture_output=True, text=True, timeout=1800, check=True,
    ).stdout
    rows = list(csv.reader(io.StringIO(out)))
    return {row[0]: float(row[1]) for row in rows[1:] if len(row) > 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200_000, help="requests per test")
    parser.add_argument("-c", type=int, default=50, help="parallel connections")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pipelines", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--resp3", action="store_true", help="redis-benchmark -3 (RESP3)")
    args = parser.parse_args()
    if REDIS_BENCHMARK is None or REDIS_SERVER is None:
        sys.exit("redis-benchmark and redis-server are needed (apt install redis-server)")
    # The server process must run this checkout's yakvs, whatever is installed.
    path = [str(ROOT), os.environ.get("PYTHONPATH")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
    results: dict[tuple[str, int, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "redis").mkdir()
        aof = ("--appendonly", "yes", "--appendfsync", "everysec")
        with spawn_server(tmp_path / "yakvs.log", fsync="everysec") as yakvs, \
                run_redis(tmp_path / "redis", *aof) as (_, redis_port):
            ports = {"yakvs": yakvs.port, "redis": redis_port}
            for rnd in range(args.rounds):
                for pipeline in args.pipelines:
                    order = ["yakvs", "redis"] if rnd % 2 == 0 else ["redis", "yakvs"]
                    for name in order:
                        started = time.monotonic()
                        found = bench(ports[name], args.n, args.c, pipeline, args.resp3)
                        for test, rps in found.items():
                            results.setdefault((name, pipeline, test), []).append(rps)
                        print(f"round {rnd + 1} P={pipeline:<2} {name:5} done in "
                              f"{time.monotonic() - started:5.1f}s", file=sys.stderr)
    print(f"\nredis-benchmark -t set,get -n {args.n} -c {args.c} -r 100000 -d 100"
          f"{' -3' if args.resp3 else ''}; "
          f"median of {args.rounds}; {os.cpu_count()} CPUs (client and server share them)\n")
    print(f"{'P':>3} {'test':5} {'yakvs rps':>12} {'redis rps':>12} {'ratio':>7} {'target':>7}")
    for pipeline in args.pipelines:
        for test in ("SET", "GET"):
            ours = statistics.median(results[("yakvs", pipeline, test)])
            theirs = statistics.median(results[("redis", pipeline, test)])
            target = TARGETS.get(pipeline)
            print(f"{pipeline:>3} {test:5} {ours:12,.0f} {theirs:12,.0f} {ours / theirs:7.2f} "
                  f"{target if target is not None else '':>7}")


if __name__ == "__main__":
    main()
