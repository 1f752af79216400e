"""yakvs-server's command line: flags, aliases, env vars, exit codes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

from click.testing import CliRunner

from yakvs import __version__
from yakvs.cli._common import EXIT_UNAVAILABLE
from yakvs.cli.server import main
from yakvs.testing.server import Wire


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 20):
    return subprocess.run(
        [sys.executable, "-m", "yakvs.cli.server", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_help_and_version():
    runner = CliRunner()
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for flag in (
        "--addr",
        "--log",
        "--fsync",
        "--max-clients",
        "--max-request-size",
        "--repair-log",
    ):
        assert flag in result.output
    assert "--log-level" in result.output
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_usage_errors_exit_2():
    runner = CliRunner()
    assert runner.invoke(main, ["--addr", "nonsense"]).exit_code == 2
    assert runner.invoke(main, ["--fsync", "sometimes"]).exit_code == 2
    assert runner.invoke(main, ["--max-clients", "0"]).exit_code == 2
    assert runner.invoke(main, [], env={"YAKVS_FSYNC": "sometimes"}).exit_code == 2


def test_port_in_use_exits_3_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run("--addr", f"127.0.0.1:{port}", "--log", str(tmp_path / "a.log"))
        assert result.returncode == EXIT_UNAVAILABLE
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("yakvs-server: cannot start:") and str(port) in last
        assert "Traceback" not in result.stderr
        # the same through the environment: YAKVS_ADDR is read
        result = _run("--log", str(tmp_path / "b.log"), env={"YAKVS_ADDR": f"127.0.0.1:{port}"})
        assert result.returncode == EXIT_UNAVAILABLE and str(port) in result.stderr


def test_corrupt_or_unreadable_log_exits_3(tmp_path):
    bad = tmp_path / "bad.log"
    bad.write_bytes(b"this is no yakvs log\n" * 10)
    result = _run("--addr", "127.0.0.1:0", "--log", str(bad))
    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    assert "cannot start" in result.stderr and "Traceback" not in result.stderr
    result = _run("--addr", "127.0.0.1:0", "--log", str(tmp_path))  # a directory
    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    assert "cannot start" in result.stderr and "Traceback" not in result.stderr


def test_original_single_dash_spellings(tmp_path):
    log = tmp_path / "kvs.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "yakvs.cli.server", "-addr", "127.0.0.1:0", "-log", str(log)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = ""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if "listening on" in line or not line:
                break
        found = re.search(r"listening on (\S+):(\d+)", line)
        assert found, line
        w = Wire(f"127.0.0.1:{found.group(2)}")
        assert w.call({"op": "SET", "key": "a", "value": "b"})["status"] == "success"
        w.close()
        proc.terminate()
        assert proc.wait(15) == 0
        assert log.exists() and log.stat().st_size > 0
    finally:
        proc.kill()
        proc.wait(5)


def test_repair_log_flag(tmp_path):
    from yakvs.testing.server import spawn_server

    log = tmp_path / "kvs.log"
    with spawn_server(log, fsync="always") as srv:
        w = Wire(srv.addr)
        for i in range(20):
            assert w.call({"op": "SET", "key": f"k{i}", "value": "v" * 50})["status"] == "success"
        w.close()
        assert srv.terminate() == 0
    data = bytearray(log.read_bytes())
    middle = len(data) // 2
    data[middle] ^= 0xFF  # one flipped byte in a record in the middle of the log
    log.write_bytes(bytes(data))
    result = _run("--addr", "127.0.0.1:0", "--log", str(log))
    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    assert "cannot start" in result.stderr and "Traceback" not in result.stderr
    with spawn_server(log, repair_log=True) as srv:
        w = Wire(srv.addr)
        info = w.call({"op": "STATUS"})["info"]
        assert 0 < info["keys"] < 20  # the good prefix survived, the rest was moved aside
        assert w.call({"op": "GET", "key": "k0"})["value"] == "v" * 50
        w.close()
