"""Fault suite: hostile slow clients. Thousands of connections that dribble one byte at a time
(a request line that never ends, or ends after many seconds), and clients that pipeline requests
and never read the replies. A probe client must keep its latency, the server's memory must stay
bounded, and the dribblers must get TOO_LARGE and a close once past the line limit."""

from __future__ import annotations

import resource
import socket
import statistics
import threading
import time
from pathlib import Path

import pytest

from yakvs.protocol import Op, Request
from yakvs.testing.history import WireSession
from yakvs.testing.server import spawn_server

DRIBBLERS = 2000
MAX_LINE = 4096


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _probe(addr: str, seconds: float) -> list[float]:
    """SET + GET round trips for ``seconds``; returns each round trip's latency in seconds."""
    session = WireSession(addr, timeout=10.0)
    session.connect()
    latencies = []
    deadline = time.monotonic() + seconds
    i = 0
    try:
        while time.monotonic() < deadline:
            start = time.monotonic()
            assert session.execute(Request(Op.SET, "probe", str(i))).ok
            assert session.execute(Request(Op.GET, "probe")).value == str(i)
            latencies.append(time.monotonic() - start)
            i += 1
            time.sleep(0.005)
    finally:
        session.close()
    return latencies


@pytest.mark.timeout(120)
def test_dribbling_and_non_reading_clients_do_not_hurt_a_probe(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < DRIBBLERS + 500:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} too low")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, DRIBBLERS + 1000)), hard))
    socks: list[socket.socket] = []
    stop = threading.Event()
    try:
        with spawn_server(tmp_path, max_request_size=MAX_LINE) as server:
            assert server.proc is not None
            baseline = _probe(server.addr, 1.0)
            rss_before = _rss_kib(server.proc.pid)
            for _ in range(DRIBBLERS):
                s = socket.create_connection((server.host, server.port), timeout=10)
                s.sendall(b'{"op":"SET","key":"slow","value":"')
                socks.append(s)
            # Ten greedy clients: 20k pipelined requests each, replies never read.
            greedy = [socket.create_connection((server.host, server.port), timeout=10)
                      for _ in range(10)]
            burst = b'{"op":"GET","key":"probe"}\n' * 20000
            for g in greedy:
                g.setblocking(False)
                try:
                    g.send(burst)
                except BlockingIOError:
                    pass  # the server stopped reading us: that is the point

            def dribble() -> None:
                # One byte per connection per round, about one round a second.
                while not stop.is_set():
                    for s in socks:
                        try:
                            s.send(b"x")
                        except OSError:
                            pass  # closed by the server after TOO_LARGE: expected later
                    stop.wait(1.0)

            dribbler = threading.Thread(target=dribble, daemon=True)
            dribbler.start()
            loaded = _probe(server.addr, 4.0)
            rss_after = _rss_kib(server.proc.pid)
            stop.set()
            dribbler.join(10)
            # Past the limit, a dribbler gets TOO_LARGE and a close (sample a few).
            for s in socks[:5]:
                s.setblocking(True)
                s.settimeout(10)
                s.sendall(b"x" * MAX_LINE)
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                assert b"TOO_LARGE" in data, data[:200]
            for g in greedy:
                g.close()
            alive = server.proc.poll() is None
            stderr = server.stderr()
    finally:
        stop.set()
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert alive
    assert "Traceback" not in stderr, stderr[-3000:]
    p50 = statistics.median(loaded)
    p99 = sorted(loaded)[int(len(loaded) * 0.99)]
    print(f"probe baseline p50 {statistics.median(baseline) * 1e3:.2f} ms; under slow clients "
          f"p50 {p50 * 1e3:.2f} ms p99 {p99 * 1e3:.2f} ms; RSS {rss_before} -> {rss_after} KiB")
    # Generous bounds: the machine is shared, but a server stalled by slow clients would show
    # seconds here, not milliseconds.
    assert p50 < 0.05 and p99 < 0.5, (p50, p99)
    # 2000 half-lines of a few bytes plus bounded per-connection buffers: well under 100 MiB.
    assert rss_after - rss_before < 100 * 1024, (rss_before, rss_after)
