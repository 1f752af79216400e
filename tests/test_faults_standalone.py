"""Fault suite, standalone server: kill -9 under load with fsync=always, and a sanity check that
the harness does catch a lost acknowledged write. Histories are judged by the checker."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from yakvs.testing.history import History, Kind, Outcome, WireSession, Workload, execute_recorded
from yakvs.testing.linearizability import Verdict, check
from yakvs.testing.server import ProcessHandle, spawn_server

KEYS = [f"k{i}" for i in range(5)]
FINAL_CLIENT = 99


def final_reads(history: History, addr: str, keys: list[str]) -> None:
    """Read every key once after all clients stopped: linearizability then implies that no
    acknowledged write was lost (the read must agree with a possible final state)."""
    session = WireSession(addr, timeout=5.0)
    session.connect()
    try:
        for key in keys:
            assert execute_recorded(history, session, FINAL_CLIENT, Kind.GET, key) is Outcome.OK
    finally:
        session.close()


def assert_linearizable(history: History, tmp_path: Path) -> None:
    result = check(history.operations(), timeout=60.0)
    print(f"ops {history.counts()}, {result.describe()}")
    if not result.ok:
        history.dump(tmp_path / "history.jsonl")
    assert result.verdict is Verdict.OK, result.describe()


def server_tracebacks(server: ProcessHandle) -> list[str]:
    """Tracebacks in any of this handle's stderr files (one file per start)."""
    found = []
    for path in sorted(server.log_path.parent.glob(f"server-{server.log_path.stem}-*.err")):
        text = path.read_text(errors="replace")
        if "Traceback" in text:
            found.append(f"{path.name}:\n{text[-3000:]}")
    return found


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fsync", "rounds"),
    # "always" is the 30 s run. "everysec", the default, acknowledges before fsync but
    # after write(2): a process crash must still lose nothing, so a shorter run checks that.
    [("always", 12), ("everysec", 3)],
)
def test_kill9_every_two_seconds_loses_no_acknowledged_write(tmp_path, fsync, rounds):
    history = History()
    kills = 0
    with spawn_server(tmp_path, fsync=fsync) as server:
        workload = Workload(
            history, lambda: WireSession(server.addr, timeout=2.0), KEYS, clients=4, seed=1
        )
        workload.start()
        rng = random.Random(2)
        deadline = time.monotonic() + 90.0  # a guard only: 12 rounds take about 32 s
        try:
            for _ in range(rounds):
                time.sleep(rng.uniform(1.5, 2.5))
                server.kill()
                kills += 1
                # Sometimes restart at once, sometimes let clients hit a closed port.
                time.sleep(rng.choice((0.0, 0.2)))
                server.start()
                assert time.monotonic() < deadline, f"restarts too slow: {kills} kills"
        finally:
            workload.stop()
        final_reads(history, server.addr, KEYS)
        tracebacks = server_tracebacks(server)
    counts = history.counts()
    # Enough acknowledged traffic that the verdict means something (tens of thousands in practice).
    assert counts["ok"] >= 300, counts
    assert not tracebacks, tracebacks[0]
    assert_linearizable(history, tmp_path)


def test_harness_detects_a_lost_acknowledged_write(tmp_path):
    """Cut the last record off the log behind the server's back: the final reads must then
    contradict an acknowledged write, and the checker must say so. Proves the kill test above
    can fail."""
    history = History()
    with spawn_server(tmp_path, fsync="always") as server:
        # A generous timeout: an unknown outcome here (fsync stalls on a busy disk) would only
        # weaken the history, never make the loss below undetectable.
        workload = Workload(
            history, lambda: WireSession(server.addr, timeout=30.0), KEYS, clients=2, seed=3,
            mix=(0.7, 0.3, 0.0),
        )
        workload.start()
        time.sleep(0.5)
        workload.stop()
        # The write to lose comes last and alone. Losing a write that overlapped another write
        # of its key would be undetectable: the two could have landed in either order.
        session = WireSession(server.addr, timeout=30.0)
        session.connect()
        assert execute_recorded(history, session, 98, Kind.SET, KEYS[0], "last") is Outcome.OK
        session.close()
        server.kill()
        data = server.log_path.read_bytes()
        # Cut at a line start, so the log is clean and merely missing its last record.
        cut = data.rstrip(b"\n").rfind(b"\n") + 1
        assert 0 < cut < len(data) and b"last" in data[cut:]
        server.log_path.write_bytes(data[:cut])
        server.start()
        final_reads(history, server.addr, KEYS)
    result = check(history.operations())
    assert result.verdict is Verdict.ILLEGAL, result.describe()
    assert f"client {FINAL_CLIENT}: GET {KEYS[0]!r}" in result.describe()
