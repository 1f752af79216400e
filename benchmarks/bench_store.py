"""Store benchmark: append cost, replay time and resident memory, side by side with Redis.

    python benchmarks/bench_store.py [--records 1000000] [--value-size 100] [--no-redis]

Loads the same N SETs (key:0000000.., fixed-size values) into a yakvs log and into
``redis-server --appendonly yes`` (auto AOF rewrite off, so both replay N commands), restarts both
and times spawn-to-ready; RSS is read from /proc after the restart. Prints a table with ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from yakvs.store import Store

REPLAY_CHILD = """
import os, sys, time
t0 = time.perf_counter()
from yakvs.store import Store
t1 = time.perf_counter()
s = Store(path=sys.argv[1], background=False)
t2 = time.perf_counter()
rss = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS'))
cpu = sum(os.times()[:2])
print(len(s), t2 - t1, t1 - t0, rss * 1024, cpu)
"""


def value_for(i: int, size: int) -> str:
    base = f"{i:010d}"
    return (base * (size // len(base) + 1))[:size]


class _Timer:
    """Wall and CPU (user + system) time of a block, per operation, in microseconds."""

    def __init__(self, ops: int) -> None:
        self.ops = ops

    def __enter__(self) -> _Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = (time.perf_counter() - self.wall) / self.ops * 1e6
        self.cpu = (time.process_time() - self.cpu) / self.ops * 1e6


def bench_append(folder: Path, n: int, size: int) -> dict[str, tuple[float, float]]:
    out = {}
    keys = [f"key:{i:07d}" for i in range(n)]
    value = "x" * size
    for label, path in (("memory only", None), ("log, fsync=no", folder / "append.log")):
        with Store(path=path, fsync="no", background=False) as s:
            set_ = s.set
            with _Timer(n) as t:
                for k in keys:
                    set_(k, value)
            out[f"set() {label}"] = (t.wall, t.cpu)
    # The server's path: one batch per read (16 pipelined SETs), one write per batch.
    with Store(path=folder / "append3.log", fsync="no", background=False) as s:
        with _Timer(n) as t:
            for i in range(0, n, 16):
                with s.batch() as b:
                    for k in keys[i : i + 16]:
                        b.set(k, value)
        out["batch.set() log, fsync=no, 16 per batch"] = (t.wall, t.cpu)
        with _Timer(n) as t:
            for i in range(0, n, 16):
                with s.batch() as b:
                    for k in keys[i : i + 16]:
                        b.put(k, value, None)
        out["batch.put() (decoded SET), 16 per batch"] = (t.wall, t.cpu)
    with Store(path=folder / "append2.log", fsync="always", background=False) as s:
        with _Timer(500) as t:
            for k in keys[:500]:
                s.set(k, value)
        out["set() log, fsync=always"] = (t.wall, t.cpu)
        with _Timer(n) as t:
            with s.deferred_sync():
                for k in keys:
                    s.set(k, value)
            s.sync()
        out["set() fsync=always, one group commit"] = (t.wall, t.cpu)
    with Store(background=False) as s:
        for k in keys:
            s.set(k, value)
        get = s.get
        with _Timer(n) as t:
            for k in keys:
                get(k)
        out["get()"] = (t.wall, t.cpu)
    return out


def yakvs_replay(folder: Path, n: int, size: int) -> tuple[float, float, int, float, float]:
    """(spawn-to-ready s, in-process replay s, RSS bytes, log MB, CPU s) for n SETs."""
    log = folder / "replay.log"
    with Store(path=log, fsync="no", background=False, compact_min_size=1 << 62) as s:
        for i in range(n):
            s.set(f"key:{i:07d}", value_for(i, size))
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", REPLAY_CHILD, str(log)], capture_output=True, text=True, check=True
    ).stdout.split()
    wall = time.perf_counter() - t
    assert int(out[0]) == n, out
    return wall, float(out[1]), int(out[3]), log.stat().st_size / 1e6, float(out[4])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
            c.sendall(b"PING\r\n")
            return c.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


def cpu_seconds(pid: int) -> float:
    """user + system CPU of a process so far (fairer than wall time on a busy machine)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_redis(folder: Path, port: int) -> tuple[subprocess.Popen[bytes], float]:
    t = time.perf_counter()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--appendonly",
            "yes",
            "--dir",
            str(folder),
            "--save",
            "",
            "--auto-aof-rewrite-percentage",
            "0",
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not redis_ping(port):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("redis-server did not become ready")
        time.sleep(0.005)
    return proc, time.perf_counter() - t


def stop_redis(proc: subprocess.Popen[bytes], port: int) -> None:
    subprocess.run(["redis-cli", "-p", str(port), "shutdown"], capture_output=True)
    proc.wait(timeout=60)


def redis_replay(folder: Path, n: int, size: int) -> tuple[float, int, float, float]:
    """(spawn-to-ready s, RSS bytes, AOF MB, CPU s) for Redis loading the n SETs from its AOF."""
    port = free_port()
    proc, _ = start_redis(folder, port)
    try:
        resp = folder / "load.resp"
        with open(resp, "wb") as f:
            for i in range(n):
                k, v = f"key:{i:07d}".encode(), value_for(i, size).encode()
                f.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(k), k, len(v), v))
        with open(resp, "rb") as f:
            subprocess.run(
                ["redis-cli", "-p", str(port), "--pipe"], stdin=f, check=True, capture_output=True
            )
        resp.unlink()
    finally:
        stop_redis(proc, port)
    aof = sum(p.stat().st_size for p in folder.rglob("*.aof*")) / 1e6
    proc, wall = start_redis(folder, port)
    try:
        rss, cpu = redis_rss(proc.pid), cpu_seconds(proc.pid)
    finally:
        stop_redis(proc, port)
    return wall, rss, aof, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--append-ops", type=int, default=200_000)
    ap.add_argument("--no-redis", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-store-") as d:
        folder = Path(d)
        print(f"# append cost, {args.append_ops} ops, {args.value_size} B values, us/op")
        print(f"{'':<38} {'wall':>8} {'CPU':>8}")
        for name, (wall, cpu) in bench_append(folder, args.append_ops, args.value_size).items():
            print(f"{name:<38} {wall:8.2f} {cpu:8.2f}")
        for p in folder.iterdir():
            p.unlink()
        n, size = args.records, args.value_size
        print(f"\n# restart with {n} SETs of {size} B values")
        y_wall, y_replay, y_rss, y_mb, y_cpu = yakvs_replay(folder, n, size)
        rows = [
            ("spawn to ready, wall (s)", y_wall),
            ("spawn to ready, CPU (s)", y_cpu),
            ("RSS after restart (MB)", y_rss / 1e6),
            ("log size on disk (MB)", y_mb),
        ]
        if args.no_redis or shutil.which("redis-server") is None:
            for name, y in rows:
                print(f"{name:<28} {y:10.2f}")
            print(f"{'yakvs replay in-process (s)':<28} {y_replay:10.2f}")
            return
        rdir = folder / "redis"
        rdir.mkdir()
        r_wall, r_rss, r_mb, r_cpu = redis_replay(rdir, n, size)
        print(f"{'':<28} {'yakvs':>10} {'redis 7':>10} {'yakvs/redis':>12}")
        for (name, y), r in zip(rows, (r_wall, r_cpu, r_rss / 1e6, r_mb), strict=True):
            print(f"{name:<28} {y:10.2f} {r:10.2f} {y / r:12.2f}")
        print(f"{'yakvs replay in-process (s)':<28} {y_replay:10.2f}")


if __name__ == "__main__":
    main()
