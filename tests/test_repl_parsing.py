"""Command parsing, rendering, completion and history paths, on strings alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from yakvs.cli.repl.commands import (
    COMMAND_NAMES,
    SPECS,
    CommandUsageError,
    help_text,
    parse_line,
    parse_words,
)
from yakvs.cli.repl.completer import KeyMemory, YakvsCompleter
from yakvs.cli.repl.history import history_path
from yakvs.cli.repl.lexer import lex_line
from yakvs.cli.repl.render import (
    format_duration,
    format_seconds,
    plain,
    render_error,
    render_reply,
    render_status,
    reply_to_json,
)
from yakvs.cli.repl.toolbar import toolbar_text
from yakvs.protocol import Op, Reply, Request

S = 1_000_000_000


# --- parsing ---------------------------------------------------------------------------------


def test_set_with_quoted_value_and_ttl():
    cmd = parse_line('SET greeting "hello world" 300')
    assert cmd is not None
    assert cmd.request == Request(
        op=Op.SET, key="greeting", value="hello world", expires_in=300 * S
    )


def test_set_without_ttl_never_expires():
    cmd = parse_line("set k v")
    assert cmd is not None and cmd.request == Request(op=Op.SET, key="k", value="v")


def test_fractional_ttl_in_nanoseconds():
    cmd = parse_line("SET k v 0.25")
    assert cmd is not None and cmd.request is not None
    assert cmd.request.expires_in == S // 4


@pytest.mark.parametrize("ttl", ["-1", "0", "abc", "nan", "inf", "1e400"])
def test_bad_ttl_names_the_syntax(ttl):
    with pytest.raises(CommandUsageError) as info:
        parse_line(f"SET k v {ttl}")
    message = str(info.value)
    assert "ttl_seconds" in message and "SET key value [ttl_seconds]" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("line", "op", "key"),
    [
        ("get foo", Op.GET, "foo"),
        ("GeT foo", Op.GET, "foo"),
        ("DELETE foo", Op.DELETE, "foo"),
        ("del foo", Op.DELETE, "foo"),
        ("ttl foo", Op.TTL, "foo"),
        ("exists 'a b'", Op.EXISTS, "a b"),
        ("ping", Op.PING, ""),
        ("STATUS", Op.STATUS, ""),
    ],
)
def test_commands_case_insensitive_and_aliases(line, op, key):
    cmd = parse_line(line)
    assert cmd is not None and cmd.request == Request(op=op, key=key)


def test_keys_prefix_optional():
    assert parse_words(["KEYS"]).request == Request(op=Op.KEYS)
    assert parse_words(["keys", "user:"]).request == Request(op=Op.KEYS, prefix="user:")


def test_shell_quoting_keeps_escapes_and_empty_value():
    cmd = parse_line(r"SET 'it''s' 'a\nb' ")
    assert cmd is not None and cmd.args == ("its", "a\\nb")
    cmd = parse_line('SET k ""')
    assert cmd is not None and cmd.request == Request(op=Op.SET, key="k", value="")


def test_help_quit_exit_are_local():
    for line in ("help", "HELP get", "quit", "EXIT"):
        cmd = parse_line(line)
        assert cmd is not None and cmd.request is None
    assert parse_line("exit") is not None and parse_line("exit").name == "QUIT"  # type: ignore[union-attr]


@pytest.mark.parametrize("line", ["", "   ", "# a comment"])
def test_blank_and_comment_lines(line):
    assert parse_line(line) is None


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('SET k "unterminated', "no closing quotation"),
        ("GET", "missing arguments for GET; syntax: GET key"),
        ("GET a b", "too many arguments for GET; syntax: GET key"),
        ("SET k", "syntax: SET key value [ttl_seconds]"),
        ("FLY away", "unknown command 'FLY'"),
        ("HELP fly", "no command 'fly'"),
        ("GET ''", "key must not be empty"),
        ("PING x", "too many arguments"),
    ],
)
def test_bad_lines_give_one_clear_line(line, needle):
    with pytest.raises(CommandUsageError) as info:
        parse_line(line)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_help_lists_every_command_with_syntax():
    text = help_text()
    for spec in SPECS:
        assert spec.syntax in text
    assert "alias DEL" in help_text("del")
    assert help_text("set").startswith("SET key value [ttl_seconds]")


# --- rendering -------------------------------------------------------------------------------


def _render(line: str, reply: Reply, pretty: bool) -> str:
    cmd = parse_line(line)
    assert cmd is not None
    return plain(render_reply(cmd, reply, pretty=pretty))


def test_get_raw_is_just_the_value():
    reply = Reply(value="hello\nworld", ttl=-1)
    assert _render("GET k", reply, pretty=False) == "hello\nworld"


def test_get_pretty_quotes_value_and_shows_ttl():
    assert _render("GET k", Reply(value="a b", ttl=-1), True) == '"a b"  (no expiry)'
    assert _render("GET k", Reply(value="x\n", ttl=299 * S), True) == '"x\\n"  (expires in 4m 59s)'


def test_ttl_raw_and_pretty():
    assert _render("TTL k", Reply(ttl=-1), False) == "-1"
    assert _render("TTL k", Reply(ttl=1_500_000_000), False) == "1.5"
    assert _render("TTL k", Reply(ttl=12 * S), False) == "12"
    assert _render("TTL k", Reply(ttl=-1), True) == "no expiry"
    assert _render("TTL k", Reply(ttl=12_500_000_000), True) == "12.5s"


def test_exists_keys_ping_set():
    assert _render("EXISTS k", Reply(exists=True), False) == "1"
    assert _render("EXISTS k", Reply(exists=False), False) == "0"
    assert _render("EXISTS k", Reply(exists=True), True) == "yes"
    assert _render("KEYS", Reply(keys=("a", "b c")), False) == "a\nb c"
    assert _render("KEYS", Reply(keys=("a", "b c")), True) == '1) "a"\n2) "b c"'
    assert _render("KEYS", Reply(keys=()), True) == "(no keys)"
    assert _render("KEYS", Reply(keys=()), False) == ""
    assert _render("PING", Reply(value="PONG"), False) == "PONG"
    assert _render("SET k v", Reply(), False) == "OK"
    assert _render("DEL k", Reply(), True) == "OK"


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (5_000_000, "5ms"),
        (S, "1s"),
        (61 * S, "1m 1s"),
        (3600 * S, "1h 0m 0s"),
        (90000 * S, "1d 1h 0m"),
    ],
)
def test_format_duration(ns, text):
    assert format_duration(ns) == text


def test_format_seconds_keeps_milliseconds():
    assert format_seconds(1_234_567_890) == "1.235"


def test_status_standalone_and_cluster():
    text = plain(render_status({"mode": "standalone", "version": "0.1.0", "keys": 3}, pretty=False))
    assert text.splitlines() == ["mode:    standalone", "version: 0.1.0", "keys:    3"]
    info = {
        "mode": "cluster",
        "role": "follower",
        "leader": "127.0.0.1:8082",
        "term": 4,
        "members": [
            {
                "id": "n1",
                "raft": "127.0.0.1:7001",
                "tcp": "127.0.0.1:8081",
                "api": "127.0.0.1:9001",
            },
            {
                "id": "n2",
                "raft": "127.0.0.1:7002",
                "tcp": "127.0.0.1:8082",
                "api": "127.0.0.1:9002",
            },
        ],
    }
    lines = plain(render_status(info, pretty=True)).splitlines()
    assert lines[:3] == ["mode:   cluster", "role:   follower", "leader: 127.0.0.1:8082"]
    assert lines[4] == "members:"
    assert lines[5].split() == ["id", "raft", "tcp", "api"]
    assert lines[6].split()[0] == "n1" and not lines[6].endswith("*")
    assert lines[7].split()[0] == "n2" and lines[7].endswith("*")


def test_errors_one_line_with_leader():
    reply = Reply(ok=False, code="NOT_FOUND", message="Key not found")
    assert plain(render_error(reply, pretty=True)) == "(error) Key not found"
    assert plain(render_error(reply, pretty=False)) == "error: Key not found"
    redirect = Reply(ok=False, code="NOT_LEADER", message="Not the leader", leader="h:1")
    assert plain(render_error(redirect, pretty=False)) == "error: Not the leader (leader: h:1)"


def test_json_lines_look_like_the_wire():
    assert json.loads(reply_to_json(Reply(value="v\x00", ttl=-1))) == {
        "status": "success",
        "value": "v\x00",
        "ttl": -1,
    }
    err = json.loads(reply_to_json(Reply(ok=False, code="NOT_FOUND", message="Key not found")))
    assert err == {"status": "error", "code": "NOT_FOUND", "message": "Key not found"}
    assert json.loads(reply_to_json(Reply(keys=("a",))))["keys"] == ["a"]
    assert "\n" not in reply_to_json(Reply(value="a\nb"))


# --- completion, history, toolbar ------------------------------------------------------------


def _complete(completer: YakvsCompleter, text: str) -> list[str]:
    return [c.text for c in completer.get_completions(Document(text), CompleteEvent())]


def test_complete_command_names_in_the_users_case():
    completer = YakvsCompleter(KeyMemory())
    assert _complete(completer, "st") == ["status"]
    assert _complete(completer, "DE") == ["DEL", "DELETE"]
    assert len(_complete(completer, "")) == len(COMMAND_NAMES)
    assert _complete(completer, "help ge") == ["get"]


def test_complete_recent_keys_most_recent_first_and_quoted():
    keys = KeyMemory(limit=3)
    keys.remember(["user:1", "user:2", "other"])
    keys.remember(["user two"])  # evicts the oldest: user:1
    completer = YakvsCompleter(keys)
    assert _complete(completer, "get us") == ["'user two'", "user:2"]
    assert _complete(completer, "GET 'user t") == ["'user two'"]
    assert _complete(completer, "ping ") == []
    assert _complete(completer, "set user:2 val") == []  # values are not keys
    keys.forget("user:2")
    assert _complete(completer, "del user:") == []
    assert len(keys) == 2


def test_history_path_precedence(tmp_path: Path):
    env = {"HOME": str(tmp_path)}
    assert history_path(env) == tmp_path / ".local/share/yakvs/history"
    env["XDG_DATA_HOME"] = "relative/ignored"
    assert history_path(env) == tmp_path / ".local/share/yakvs/history"
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    assert history_path(env) == tmp_path / "xdg/yakvs/history"
    env["YAKVS_HISTORY_FILE"] = str(tmp_path / "h")
    assert history_path(env) == tmp_path / "h"


def test_toolbar_text():
    assert toolbar_text("h:1", {"mode": "standalone"}, True).startswith(" h:1 | standalone | ")
    follower = {"mode": "raft", "role": "follower", "leader": "h:2", "members": []}
    assert toolbar_text("h:1", follower, True).startswith(" h:1 | raft follower | leader h:2 | ")
    leader = {"mode": "raft", "role": "leader", "leader": "h:1", "members": []}
    assert toolbar_text("h:1", leader, True).startswith(" h:1 | raft leader | HELP")
    lost = {"mode": "raft", "role": "candidate", "leader": None, "members": []}
    assert "| leader unknown |" in toolbar_text("h:1", lost, True)
    assert "disconnected" in toolbar_text("h:1", None, False)


@pytest.mark.parametrize(
    "line",
    ["", "get k", "  SET  'a b' \"c d\"  10 ", "fly away", 'set k "unterminated va', "GET\tk"],
)
def test_lexer_gives_the_line_back(line):
    assert "".join(text for _, text in lex_line(line)) == line


def test_lexer_styles_command_and_quoted_words():
    assert lex_line("get 'a b'") == [("class:command", "get"), ("", " "), ("class:string", "'a b'")]
    assert lex_line("fly")[0] == ("class:unknown", "fly")
    assert lex_line('set k "open')[-1] == ("class:string", '"open')
