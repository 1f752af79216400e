"""redis-cli against a real yakvs-server process: one-shot commands and ``--pipe`` bulk loading."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from yakvs.resp import encode_command
from yakvs.testing.redis import REDIS_CLI
from yakvs.testing.server import spawn_server

pytestmark = pytest.mark.skipif(REDIS_CLI is None, reason="redis-cli not installed")


def _cli(port: int, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    assert REDIS_CLI is not None
    # The formatted output a terminal would see, unless raw output or a bulk mode is asked for.
    fmt = [] if {"--raw", "--pipe", "--scan"} & set(args) else ["--no-raw"]
    return subprocess.run(
        [REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), *fmt, *args],
        input=stdin, capture_output=True, timeout=60, check=False,
    )


def test_one_shot_commands_and_pipe_bulk_load(tmp_path: Path) -> None:
    with spawn_server(tmp_path) as server:
        port = server.port
        assert _cli(port, "PING").stdout == b"PONG\n"
        assert _cli(port, "SET", "greeting", "hello world").stdout == b"OK\n"
        assert _cli(port, "GET", "greeting").stdout == b'"hello world"\n'
        assert _cli(port, "--raw", "GET", "greeting").stdout == b"hello world\n"
        assert _cli(port, "GET", "missing").stdout == b"(nil)\n"
        assert _cli(port, "SET", "t", "v", "EX", "100").stdout == b"OK\n"
        assert _cli(port, "TTL", "t").stdout in (b"(integer) 100\n", b"(integer) 99\n")
        assert _cli(port, "DEL", "t", "nope").stdout == b"(integer) 1\n"
        assert b"unknown command 'NOPE'" in _cli(port, "NOPE", "x").stdout
        assert b"redis_version:" in _cli(port, "INFO", "server").stdout
        assert _cli(port, "MGET", "greeting", "x").stdout == (
            b'1) "hello world"\n2) (nil)\n'
        )

        # --pipe: 20 000 SETs in raw RESP on stdin, as documented for Redis mass insertion.
        load = b"".join(encode_command("SET", f"bulk:{i}", f"value-{i}") for i in range(20_000))
        piped = _cli(port, "--pipe", stdin=load)
        assert piped.returncode == 0, piped.stderr
        assert b"errors: 0, replies: 20000" in piped.stdout
        assert _cli(port, "DBSIZE").stdout == b"(integer) 20001\n"
        assert _cli(port, "--raw", "GET", "bulk:19999").stdout == b"value-19999\n"
        keys = _cli(port, "--raw", "KEYS", "bulk:1999*").stdout.split()
        assert sorted(keys) == sorted(
            [b"bulk:1999", *(b"bulk:1999%d" % i for i in range(10))]
        )
        assert _cli(port, "FLUSHALL").stdout == b"OK\n"
        assert _cli(port, "DBSIZE").stdout == b"(integer) 0\n"
        # --scan walks SCAN (COUNT 10) to the end
        _cli(port, "MSET", *[f"s:{i}" for i in range(1000) for _ in (0, 1)])
        scanned = _cli(port, "--scan", "--pattern", "s:*").stdout.split()
        assert sorted(scanned) == sorted(b"s:%d" % i for i in range(1000))


@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
def test_interactive_redis_cli_starts_and_runs_commands(tmp_path: Path, resp3: bool) -> None:
    pexpect = pytest.importorskip("pexpect")
    with spawn_server(tmp_path) as server:
        assert REDIS_CLI is not None
        args = ["-p", str(server.port), *(["-3"] if resp3 else [])]
        child = pexpect.spawn(REDIS_CLI, args, timeout=10, encoding="utf-8")
        try:
            prompt = f"127.0.0.1:{server.port}> "
            child.expect_exact(prompt)  # startup (COMMAND DOCS for hints) went through
            child.send("SET k hello\r")  # linenoise takes CR, not LF, as Enter
            child.expect_exact("OK")
            child.expect_exact(prompt)
            child.send("GET k\r")
            child.expect_exact('"hello"')
            child.expect_exact(prompt)
            child.send("GET missing\r")
            child.expect_exact("(nil)")
            child.expect_exact(prompt)
            if resp3:  # a map, as redis-cli -3 shows Redis 7's
                child.send("CONFIG GET save\r")
                child.expect_exact('1# "save" => ""')
                child.expect_exact(prompt)
            child.send("NOPE 1\r")
            child.expect_exact("(error) ERR unknown command 'NOPE', with args beginning with: '1'")
            child.send("QUIT\r")
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
