"""A real redis-server on a free loopback port, for tests comparing yakvs's answers with Redis."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
REDIS_BENCHMARK = shutil.which("redis-benchmark")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def run_redis(workdir: Path, *extra: str, start_timeout: float = 10.0) -> Iterator[tuple[str, int]]:
    """Start redis-server (no persistence) on 127.0.0.1; yield (host, port); stop it on exit."""
    if REDIS_SERVER is None:
        raise RuntimeError("redis-server is not installed")
    for _attempt in range(3):  # the free port can be taken between the probe and the bind
        port = free_port()
        flags = ["--save", "", "--appendonly", "no", *extra]
        proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
             *flags],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + start_timeout
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        if proc.poll() is None and time.monotonic() < deadline:
            try:
                yield ("127.0.0.1", port)
            finally:
                proc.terminate()
                proc.wait(timeout=10)
            return
        proc.kill()
        proc.wait()
    raise RuntimeError("redis-server did not start")
