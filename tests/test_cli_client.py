"""yakvs-client one-shot and piped modes through click's CliRunner against a real server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

if not hasattr(pytest.importorskip("yakvs.client"), "Client"):
    pytest.skip("needs the client library", allow_module_level=True)
from yakvs.cli.client import main
from yakvs.testing.server import run_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with run_server(tmp_path_factory.mktemp("server")) as handle:
        yield handle


@pytest.fixture
def run(server):
    runner = CliRunner()

    def invoke(*args: str, stdin: str | bytes | None = None, env: dict[str, str] | None = None):
        return runner.invoke(main, ["--addr", server.addr, *args], input=stdin, env=env)

    return invoke


@pytest.fixture
def dead_addr():
    # A port that was just free: nothing listens there, so connecting is refused at once.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"


def test_every_command_raw(run):
    result = run("set", "greeting", "hello world")
    assert (result.exit_code, result.stdout) == (0, "OK\n")
    assert run("GET", "greeting").stdout == "hello world\n"
    assert run("ttl", "greeting").stdout == "-1\n"
    assert run("exists", "greeting").stdout == "1\n"
    assert "greeting\n" in run("keys").stdout
    assert run("keys", "greet").stdout == "greeting\n"
    assert run("keys", "zzz-no-such-prefix").stdout == ""
    assert run("ping").stdout == "PONG\n"
    assert "mode:" in run("status").stdout
    assert run("del", "greeting").stdout == "OK\n"
    assert run("exists", "greeting").stdout == "0\n"


def test_set_with_ttl_and_negative_looking_value(run):
    assert run("set", "t", "-5", "2.5").exit_code == 0
    assert run("get", "t").stdout == "-5\n"
    ttl = float(run("ttl", "t").stdout)
    assert 0 < ttl <= 2.5


def test_missing_key_exits_1_with_message_on_stderr(run):
    result = run("get", "no-such-key")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "not found" in result.stderr.lower()
    assert run("delete", "no-such-key").exit_code == 1
    assert run("ttl", "no-such-key").exit_code == 1


def test_json_one_object_per_reply(run):
    assert json.loads(run("--json", "set", "j", "v\nw", "100").stdout) == {"status": "success"}
    got = json.loads(run("--json", "get", "j").stdout)
    assert got["status"] == "success" and got["value"] == "v\nw"
    assert 0 < got["ttl"] <= 100 * 10**9
    assert json.loads(run("--json", "exists", "j").stdout) == {"status": "success", "exists": True}
    assert "j" in json.loads(run("--json", "keys", "j").stdout)["keys"]
    assert json.loads(run("--json", "status").stdout)["info"]["mode"] == "standalone"
    missing = run("--json", "get", "no-such-key")
    assert missing.exit_code == 1
    assert json.loads(missing.stdout)["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["fly"], "unknown command 'fly'"),
        (["get"], "syntax: GET key"),
        (["set", "k", "v", "-3"], "ttl_seconds must be a positive number"),
        (["set", "k", "v", "soon"], "syntax: SET key value [ttl_seconds]"),
        (["help", "fly"], "no command 'fly'"),
    ],
)
def test_usage_errors_exit_2(run, args, needle):
    result = run(*args)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert "Traceback" not in result.output


def test_bad_flags_exit_2():
    runner = CliRunner()
    assert runner.invoke(main, ["--addr", "nowhere", "ping"]).exit_code == 2
    assert runner.invoke(main, ["--timeout", "-1", "ping"]).exit_code == 2


def test_dead_server_exits_3(dead_addr):
    result = CliRunner().invoke(main, ["--addr", dead_addr, "ping"])
    assert result.exit_code == 3
    assert f"cannot connect to {dead_addr}" in result.stderr.lower()
    assert "Traceback" not in result.output


def test_dead_server_real_process_exits_3(dead_addr):
    proc = subprocess.run(
        [sys.executable, "-m", "yakvs.cli.client", "-addr", dead_addr, "get", "k"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 3
    assert "cannot connect" in proc.stderr.lower() and "Traceback" not in proc.stderr


def test_silent_server_times_out_with_exit_3():
    # A listener that never answers stands in for a hung server.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        addr = f"127.0.0.1:{listener.getsockname()[1]}"
        result = CliRunner().invoke(main, ["--addr", addr, "--timeout", "0.3", "set", "k", "v"])
    assert result.exit_code == 3
    assert "within 0.3s" in result.stderr
    assert "may or may not have been applied" in result.stderr


def test_piped_commands_one_per_line(run):
    script = "set p1 one\n# a comment\n\nGET p1\nget no-such-key\nexists p1\n"
    result = run(stdin=script)
    assert result.stdout == "OK\none\n1\n"
    assert result.exit_code == 1  # one command failed, the others still ran
    assert run(stdin="set p2 two\nget p2\nquit\nget no-such-key\n").exit_code == 0


def test_piped_bad_line_names_it_and_exits_2(run):
    result = run(stdin='ping\nset k "oops\nping\n')
    assert result.stdout == "PONG\nPONG\n"
    assert "line 2: cannot parse the line: no closing quotation" in result.stderr
    assert result.exit_code == 2


def test_invalid_utf8_is_a_usage_error_not_a_traceback(run):
    result = run(stdin=b"set k \xff\nping\r\n")
    assert result.stdout == "PONG\n"
    assert "line 1: not valid UTF-8" in result.stderr
    assert result.exit_code == 2
    # argv bytes that are not UTF-8 reach Python as lone surrogates.
    result = run("set", "k", "\udcff")
    assert result.exit_code == 2
    assert "not valid UTF-8" in result.stderr and "Traceback" not in result.output


def test_piped_json(run):
    result = run("--json", stdin="set pj 1\nget pj\n")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [{"status": "success"}, {"status": "success", "value": "1", "ttl": -1}]


def test_addr_from_environment_and_seed_list(server, dead_addr):
    runner = CliRunner()
    result = runner.invoke(main, ["ping"], env={"YAKVS_ADDR": server.addr})
    assert (result.exit_code, result.stdout) == (0, "PONG\n")
    # Several seeds, whitespace- or comma-separated: a dead one first must not stop the client.
    result = runner.invoke(main, ["ping"], env={"YAKVS_ADDR": f"{dead_addr} {server.addr}"})
    assert (result.exit_code, result.stdout) == (0, "PONG\n")
    result = runner.invoke(main, ["-server", f"{dead_addr},{server.addr}", "ping"])
    assert (result.exit_code, result.stdout) == (0, "PONG\n")


def test_help_and_version():
    runner = CliRunner()
    text = runner.invoke(main, ["--help"]).stdout
    for syntax in (
        "SET key value [ttl_seconds]",
        "GET key",
        "DELETE key",
        "KEYS [prefix]",
        "STATUS",
    ):
        assert syntax in text
    assert runner.invoke(main, ["help"]).stdout.startswith("Commands")
    assert "0." in runner.invoke(main, ["--version"]).stdout
