"""Real-process faults: SIGKILL during fsync=always writes, and a disk that fills up."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from yakvs.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from store_child import crash_op, group_size

CHILD = str(Path(__file__).parent / "store_child.py")
ROUNDS = 20


def run_until_killed(log: Path, start: int, mode: str, rng: random.Random) -> list[int]:
    """Start the writer, SIGKILL it at a random moment, return the indexes it acknowledged."""
    proc = subprocess.Popen(
        [sys.executable, CHILD, "crash", str(log), str(start), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # wait until it is writing, then pick a moment
        assert first.startswith(b"A "), first + proc.stderr.read()  # type: ignore[union-attr]
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()  # everything printed before the kill was acknowledged
    finally:
        proc.kill()
        proc.wait(timeout=10)
    acked = [int(line.split()[1]) for line in (first + rest).splitlines()]
    assert acked == list(range(start, start + len(acked)))
    return acked


def apply_op(model: dict[str, str], i: int) -> None:
    kind, key, value = crash_op(i)
    if kind == "set":
        assert value is not None
        model[key] = value
    else:
        model.pop(key, None)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["single", "group"])
def test_sigkill_never_loses_an_acknowledged_write(tmp_path, mode):
    log = tmp_path / "kv.log"
    rng = random.Random(int(os.environ.get("YAKVS_CRASH_SEED", "7")))
    model: dict[str, str] = {}
    start = 0
    total_acked = 0
    for _ in range(ROUNDS):
        acked = run_until_killed(log, start, mode, rng)
        total_acked += len(acked)
        for i in acked:
            apply_op(model, i)
        # Any prefix of the batch in flight at the kill may have made it; nothing else may differ.
        first = start + len(acked)
        candidates = [dict(model)]
        for i in range(first, first + group_size(first, mode)):
            apply_op(model, i)
            candidates.append(dict(model))
        with Store(path=log, background=False) as store:
            got = {k: v for k, v, _ in store.items()}
        assert got in candidates
        model = got
        start = first + group_size(first, mode)
    assert total_acked >= ROUNDS
    assert sorted(os.listdir(tmp_path)) == ["kv.log"]  # a half-done rewrite is cleaned up


def test_disk_full_on_tiny_tmpfs(tmp_path):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to mount a private tmpfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = (
        f"mount -t tmpfs -o size=256k yakvs-test {mnt} || exit 77; "
        f"exec {sys.executable} {CHILD} diskfull {mnt}"
    )
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        timeout=60,
        text=True,
    )
    if proc.returncode == 77 or "Operation not permitted" in proc.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"] is True
    assert result["acked_before_full"] > 50
    assert result["errors_counted"] >= 4
