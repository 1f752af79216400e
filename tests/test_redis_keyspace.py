"""Protocol-tier tests of the Redis layer: glob patterns, the SCAN cursor, protocol sniffing,
command planning, and the replicated apply step, all without sockets."""

from __future__ import annotations

import fnmatch

from hypothesis import given, settings
from hypothesis import strategies as st

from yakvs.protocol import Op, Request
from yakvs.raft.state import KVState
from yakvs.rediscompat import raft as redis_ops
from yakvs.rediscompat.admin import Session
from yakvs.rediscompat.commands import Call, dispatch
from yakvs.rediscompat.fast import split_arrays, split_one
from yakvs.rediscompat.keyspace import key_matches, scan_keys
from yakvs.rediscompat.sniff import sniff
from yakvs.resp import RespParser, encode_command

_names = st.text(alphabet="abc*?[]^-\\", max_size=8)


@settings(max_examples=300, deadline=None)
@given(pattern=st.text(alphabet="abc*?", max_size=6), key=st.text(alphabet="abc", max_size=6))
def test_glob_agrees_with_fnmatch_on_star_and_question(pattern: str, key: str) -> None:
    assert key_matches(pattern, key) == fnmatch.fnmatchcase(key, pattern)


@given(pattern=_names, key=st.text(alphabet="abc*?[]^-\\\n", max_size=8))
def test_any_pattern_compiles_and_answers(pattern: str, key: str) -> None:
    assert key_matches(pattern, key) in (True, False)


@settings(max_examples=100, deadline=None)
@given(
    keys=st.sets(st.text(min_size=1, max_size=6), max_size=60),
    churn=st.lists(st.tuples(st.booleans(), st.text(min_size=1, max_size=6)), max_size=40),
    count=st.integers(1, 12),
)
def test_scan_returns_every_key_present_throughout(
    keys: set[str], churn: list[tuple[bool, str]], count: int
) -> None:
    live = set(keys)
    stable = set(keys)
    seen: set[str] = set()
    cursor, steps = 0, 0
    changes = iter(churn)
    while True:
        cursor, batch = scan_keys(live, cursor, None, count)
        seen.update(batch)
        steps += 1
        assert steps <= len(keys) + len(churn) + 2
        change = next(changes, None)
        if change is not None:  # add or remove a key between steps
            add, key = change
            if add:
                live.add(key)
            else:
                live.discard(key)
                stable.discard(key)
        if cursor == 0:
            break
    assert stable <= seen


def test_sniff() -> None:
    assert sniff(b"*1\r\n$4\r\nPING\r\n") == "resp"
    assert sniff(b"PING\r\n") == "resp"
    assert sniff(b"GET key\r\n") == "resp"
    assert sniff(b"GET / HTTP/1.1\r\n") == "http"
    assert sniff(b"GET /x") is None  # wait for the request line
    assert sniff(b"PI") is None
    assert sniff(b'{"op":"PING"}\n') == "json"
    assert sniff(b'  {"op":"PING"}\n') == "json"


def test_planning_builds_requests_with_redis_errors() -> None:
    session = Session(None)
    plan = dispatch([b"SET", b"k", b"\xff", b"NX", b"GET", b"PX", b"1000"], session)
    assert isinstance(plan, Call)
    req = plan.request
    assert req.op is Op.RSET and req.args == ("NX", True, False) and req.expires_at is not None
    assert req.value == "\udcff"
    assert dispatch([b"get"], session) == b"-ERR wrong number of arguments for 'get' command\r\n"
    assert dispatch([b"SET", b"k", b"v", b"XX", b"NX"], session) == b"-ERR syntax error\r\n"
    assert dispatch([b"PING", b"x"], session) == b"$1\r\nx\r\n"


def test_replicated_apply_decides_nx_xx_get_and_expiry() -> None:
    state = KVState()
    now = 1_000_000

    def run(req: Request) -> object:
        return redis_ops.apply(state, redis_ops.command(req, now))

    assert run(Request(Op.RSET, "k", "v1", args=("NX", True, False))) == (True, None)
    assert run(Request(Op.RSET, "k", "v2", args=("NX", True, False))) == (False, "v1")
    assert run(Request(Op.RSET, "k", "v3", expires_at=now + 50, args=("XX", True, False))) == (
        True, "v1")
    assert run(Request(Op.RSET, "k", "v4", args=("", False, True))) == (True, "v3")
    assert state.get("k", now) == ("v4", now + 50)  # KEEPTTL kept it
    assert run(Request(Op.PEXPIREAT, "k")) == 1 and state.get("k", now) == ("v4", None)
    assert run(Request(Op.PEXPIREAT, "k", expires_at=now + 90, args=("GT",))) == 0
    assert run(Request(Op.PEXPIREAT, "k", expires_at=now + 90, args=("XXLT",))) == 0
    assert run(Request(Op.PEXPIREAT, "k", expires_at=now + 90, args=("LT",))) == 1
    assert run(Request(Op.PEXPIREAT, "k", expires_at=now + 80, args=("NX",))) == 0
    assert run(Request(Op.PEXPIREAT, "k", expires_at=now + 95, args=("GT",))) == 1
    assert state.get("k", now) == ("v4", now + 95)
    assert run(Request(Op.PEXPIREAT, "k")) == 1  # PERSIST
    assert run(Request(Op.PEXPIREAT, "k")) == 0  # nothing left to persist
    assert run(Request(Op.PEXPIREAT, "k", expires_at=now)) == 1 and state.get("k", now) is None
    assert run(Request(Op.MSET, args=("a", "1", "b", "2"))) is True
    assert run(Request(Op.DEL, args=("a", "zz", "a"))) == 1
    assert redis_ops.read(state, Request(Op.MGET, args=("a", "b")), now).result == [None, "2"]
    assert run(Request(Op.FLUSH)) is True and state.live_count() == 0


_arg = st.binary(max_size=12) | st.sampled_from([b"\r\n", b"$3", b"*2", b"a\r\n$1\r\nb"])


@settings(max_examples=400, deadline=None)
@given(commands=st.lists(st.lists(_arg, min_size=1, max_size=4), min_size=1, max_size=6),
       tail=st.sampled_from([b"", b"*", b"*1\r\n", b"\r\n", b"x"]))
def test_fast_split_agrees_with_the_parser(commands: list[list[bytes]], tail: bytes) -> None:
    data = b"".join(encode_command(*argv) for argv in commands) + tail
    split = split_arrays(data, 1 << 20, 1 << 20)
    if split is None:
        return  # the general parser decides
    parser = RespParser()
    parser.feed(data)
    parsed = []
    while (argv := parser.next_command()) is not None:
        parsed.append(argv)
    assert split == parsed and parser.idle


_word = st.sampled_from([b"GET", b"get", b"Get", b"SET", b"set", b"gEt", b"DEL", b"", b"GE"])


@settings(max_examples=400, deadline=None)
@given(
    argv=st.tuples(_word, _arg).map(list) | st.tuples(_word, _arg, _arg).map(list),
    tail=st.sampled_from([b"", b"*", b"*1\r\n", b"\r\n", b"x"]),
    cut=st.integers(0, 3),
)
def test_single_command_split_agrees_with_the_parser(
    argv: list[bytes], tail: bytes, cut: int
) -> None:
    data = encode_command(*argv) + tail
    data = data[: len(data) - cut] if cut else data
    split = split_one(data, 1 << 20)
    parser = RespParser()
    parser.feed(data)
    try:
        parsed = [argv for argv in iter(parser.next_command, None)]
    except Exception:
        parsed = None
    if split is None:
        # The general parser decides; but a clean plain GET/SET must take the fast path.
        plain = argv[0] in (b"GET", b"get", b"Get", b"SET", b"set", b"Set") and len(argv) == (
            2 if argv[0].upper() == b"GET" else 3
        )
        clean = not tail and not cut and argv[1] and b"\r\n" not in b"".join(argv)
        assert not (plain and clean), argv
        return
    assert split == parsed and parser.idle


def test_single_command_split_refuses_lookalikes() -> None:
    assert split_one(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", 10) == [[b"GET", b"k"]]
    assert split_one(b"*2\r\n$3\r\nGET\r\n$01\r\nk\r\n", 10) is None  # not canonical
    assert split_one(b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n", 10) is None  # empty key
    assert split_one(b"*2\r\n$3\r\nGET\r\n$5\r\nk\r\nab\r\n", 10) is None  # CRLF in it
    assert split_one(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$11\r\nvvvvvvvvvvv\r\n", 10) is None
    assert split_one(b"*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n", 10) is None
