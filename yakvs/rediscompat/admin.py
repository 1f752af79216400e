"""Connection and server commands: INFO, HELLO, CLIENT, COMMAND, CONFIG GET, and the Session.

Enough of them for redis-cli, redis-py and redis-benchmark to connect and report; INFO carries
real figures from the backend's STATUS and this process.
"""

from __future__ import annotations

import itertools
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from yakvs import __version__
from yakvs.protocol import Reply
from yakvs.rediscompat.replies import (
    NIL,
    NOT_INTEGER,
    NULL3,
    OK,
    SYNTAX,
    array,
    backend_error,
    bulk,
    error,
    flat_map,
    integer,
    map_header,
    text,
    verbatim,
    wrong_arity,
)
from yakvs.resp._parse import _string2ll

if TYPE_CHECKING:
    from yakvs.server import Server

# Clients gate features on the server's version; we implement the Redis 7.0 forms of our commands.
REDIS_COMPAT_VERSION = "7.0.0"
_ids = itertools.count(1)
_STARTED = time.time()


@dataclass(eq=False)
class Session:
    """Per-connection state of a RESP client (CLIENT SETNAME/ID/INFO, INFO's client counts)."""

    server: Server | None
    addr: str = "?"
    laddr: str = "?"
    fd: int = -1
    id: int = field(default_factory=lambda: next(_ids))
    name: str | None = None
    created: float = field(default_factory=time.monotonic)
    last_active: float = field(default_factory=time.monotonic)
    last_command: str = "NULL"
    lib_name: str = ""
    lib_ver: str = ""
    resp: int = 2  # the protocol version HELLO chose: replies are RESP2 or RESP3

    @property
    def nil(self) -> bytes:
        return NIL if self.resp == 2 else NULL3

    def describe(self) -> str:
        now = time.monotonic()
        return (
            f"id={self.id} addr={self.addr} laddr={self.laddr} fd={self.fd} "
            f"name={self.name or ''} age={int(now - self.created)} "
            f"idle={int(now - self.last_active)} flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 "
            f"resp={self.resp} lib-name={self.lib_name} lib-ver={self.lib_ver} "
            f"cmd={self.last_command}\n"
        )


def _sessions(session: Session) -> list[Session]:
    server = session.server
    if server is None:
        return [session]
    found = [getattr(c, "session", None) for c in server.connections]
    return [s for s in found if isinstance(s, Session)] or [session]


# --- INFO -----------------------------------------------------------------------------------


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _human(n: int) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n}{unit}" if unit == "B" else f"{n:.2f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def info(reply: Reply, session: Session, sections: list[str]) -> bytes:
    if not reply.ok:
        return backend_error(reply)
    status: dict[str, Any] = reply.info or {}
    server = session.server
    port = server.port if server is not None else 0
    store = status.get("store") or {}
    raft = status.get("mode") == "raft"
    rss = _rss_bytes()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    conns = len(server.connections) if server is not None else 1
    keys = status.get("keys", 0)
    parts: dict[str, list[str]] = {
        "server": [
            f"redis_version:{REDIS_COMPAT_VERSION}",
            f"yakvs_version:{__version__}",
            f"redis_mode:{'cluster' if raft else 'standalone'}",
            f"os:{os.uname().sysname} {os.uname().release} {os.uname().machine}",
            f"process_id:{os.getpid()}",
            f"tcp_port:{port}",
            f"uptime_in_seconds:{int(time.time() - _STARTED)}",
            f"uptime_in_days:{int(time.time() - _STARTED) // 86400}",
        ],
        "clients": [
            f"connected_clients:{conns}",
            f"maxclients:{server.config.max_clients if server is not None else 0}",
            "blocked_clients:0",
        ],
        "memory": [
            f"used_memory:{rss}",
            f"used_memory_human:{_human(rss)}",
            f"used_memory_rss:{rss}",
            f"used_memory_peak:{maxrss}",
            f"used_memory_peak_human:{_human(maxrss)}",
        ],
        "persistence": _persistence(status, store),
        "replication": _replication(status),
        "keyspace": [f"db0:keys={keys},expires={store.get('expires', 0)},avg_ttl=0"]
        if keys
        else [],
    }
    wanted = [s for s in sections if s not in ("all", "everything", "default")]
    names = [s for s in parts if not wanted or s in wanted]
    body = "\r\n".join(
        f"# {name.capitalize()}\r\n" + "".join(line + "\r\n" for line in parts[name])
        for name in names
    )
    return verbatim(body, session.resp)


def _persistence(status: dict[str, Any], store: dict[str, Any]) -> list[str]:
    if status.get("mode") == "raft":
        return [
            "loading:0",
            "aof_enabled:0",
            "rdb_changes_since_last_save:0",
            f"raft_log_len:{status.get('log_len', 0)}",
            f"raft_commit_index:{status.get('commit_index', 0)}",
            f"raft_applied_index:{status.get('applied_index', 0)}",
        ]
    last = store.get("last_rewrite")
    return [
        "loading:0",
        "aof_enabled:1" if store.get("log_path") else "aof_enabled:0",
        f"aof_rewrite_in_progress:{int(bool(store.get('rewrite_in_progress')))}",
        f"aof_last_rewrite_time:{int(last) if last else -1}",
        f"aof_current_size:{store.get('log_bytes', 0)}",
        f"aof_base_size:{store.get('rewrite_base_bytes', 0)}",
        f"aof_fsync_policy:{store.get('fsync', '')}",
        f"aof_rewrites:{store.get('rewrites', 0)}",
        f"aof_write_errors:{store.get('log_errors', 0)}",
    ]


def _replication(status: dict[str, Any]) -> list[str]:
    if status.get("mode") != "raft":
        return ["role:master", "connected_slaves:0"]
    role = status.get("role", "?")
    members = status.get("members") or []
    return [
        f"role:{'master' if role == 'leader' else 'slave'}",
        f"raft_role:{role}",
        f"raft_term:{status.get('term', 0)}",
        f"raft_leader:{status.get('leader') or ''}",
        f"raft_members:{len(members)}",
        f"raft_has_quorum:{int(bool(status.get('has_quorum')))}",
    ]


# --- HELLO, CLIENT, COMMAND, CONFIG ------------------------------------------------------------


def hello(argv: list[bytes], session: Session) -> bytes:
    """HELLO [2|3 [AUTH u p] [SETNAME n]]: switch protocol (only if all else is valid), answer
    the server's description in the new one."""
    version = session.resp
    i = 1
    if len(argv) > 1:
        asked = _string2ll(argv[1])
        if asked is None:
            return error("ERR Protocol version is not an integer or out of range")
        if asked not in (2, 3):
            return error("NOPROTO unsupported protocol version")
        version = asked
        i = 2
    name: str | None = None
    while i < len(argv):
        opt = argv[i].lower()
        if opt == b"auth" and i + 2 < len(argv):
            i += 3  # no users or passwords here: like Redis's default user with nopass
        elif opt == b"setname" and i + 1 < len(argv):
            name = text(argv[i + 1])
            i += 2
        else:
            return error(f"ERR Syntax error in HELLO option '{text(argv[i])}'")
    if name is not None:
        if not _valid_name(name):
            return _BAD_NAME
        session.name = name or None
    session.resp = version
    return flat_map(
        {
            "server": "redis",
            "version": REDIS_COMPAT_VERSION,
            "proto": version,
            "id": session.id,
            "mode": "standalone",
            "role": "master",
            "modules": [],
        },
        version,
    )


_BAD_NAME = error("ERR Client names cannot contain spaces, newlines or special characters.")


def _valid_name(name: str) -> bool:
    return all("!" <= c <= "~" for c in name)


def client(argv: list[bytes], session: Session) -> bytes:
    sub = argv[1].lower()
    n = len(argv)
    if sub == b"setname" and n == 3:
        name = text(argv[2])
        if not _valid_name(name):
            return _BAD_NAME
        session.name = name or None
        return OK
    if sub == b"getname" and n == 2:
        return bulk(session.name) if session.name else session.nil
    if sub == b"id" and n == 2:
        return integer(session.id)
    if sub == b"info" and n == 2:
        return verbatim(session.describe(), session.resp)
    if sub == b"list" and n == 2:
        return verbatim("".join(s.describe() for s in _sessions(session)), session.resp)
    if sub == b"setinfo" and n == 4:
        attr = argv[2].lower()
        if attr == b"lib-name":
            session.lib_name = text(argv[3])
        elif attr == b"lib-ver":
            session.lib_ver = text(argv[3])
        else:
            return error(f"ERR Unrecognized option '{text(argv[2])}'")
        return OK
    if sub in (b"setname", b"getname", b"id", b"info", b"list", b"setinfo"):
        return wrong_arity(f"client|{sub.decode()}")
    return error(f"ERR unknown subcommand '{text(argv[1])}'. Try CLIENT HELP.")


def _command_info(name: bytes, arity: int, resp: int) -> bytes:
    # RESP3 sends the flags, ACL categories, tips, key specs and subcommands as sets (Redis 7.0).
    agg = b"~" if resp == 3 else b"*"
    write = name in (b"set", b"del", b"unlink", b"expire", b"pexpire", b"persist", b"mset")
    flags = [b"write"] if write else [b"readonly"] if name not in _NO_KEYS else [b"fast"]
    first = 0 if name in _NO_KEYS else 1
    last = -1 if name in (b"del", b"unlink", b"exists", b"mget", b"mset") else first
    step = 2 if name == b"mset" else int(first > 0)
    return (
        b"*10\r\n"
        + bulk(name.decode())
        + integer(arity)
        + agg + b"%d\r\n" % len(flags)
        + b"".join(b"+%b\r\n" % f for f in flags)
        + integer(first)
        + integer(last)
        + integer(step)
        + (agg + b"0\r\n") * 4
    )


_NO_KEYS = frozenset(
    {b"ping", b"echo", b"keys", b"scan", b"dbsize", b"flushall", b"flushdb", b"select",
     b"quit", b"info", b"hello", b"client", b"command", b"config"}
)


def command(
    argv: list[bytes], table: dict[bytes, tuple[int, Callable[..., Any]]], resp: int
) -> bytes:
    if len(argv) == 1:
        return b"*%d\r\n" % len(table) + b"".join(
            _command_info(name, arity, resp) for name, (arity, _h) in table.items()
        )
    sub = argv[1].lower()
    if sub == b"count" and len(argv) == 2:
        return integer(len(table))
    if sub == b"docs":
        # An empty map: redis-cli then uses its built-in help, which knows every command here.
        return map_header(0, resp)
    if sub == b"info":
        names = [a.lower() for a in argv[2:]] or list(table)
        missing = NIL if resp == 2 else NULL3  # Redis 7: a null bulk, not a null array
        return b"*%d\r\n" % len(names) + b"".join(
            _command_info(n, table[n][0], resp) if n in table else missing for n in names
        )
    if sub == b"list" and len(argv) == 2:
        return array([name.decode() for name in table])
    if sub == b"count":
        return wrong_arity("command|count")
    return error(f"ERR unknown subcommand '{text(argv[1])}'. Try COMMAND HELP.")


def config(argv: list[bytes], resp: int) -> bytes:
    """CONFIG GET only, for tools that read a few settings (redis-benchmark: save, appendonly)."""
    if argv[1].lower() != b"get":
        if argv[1].lower() in (b"set", b"resetstat", b"rewrite"):
            return error("ERR CONFIG SET/RESETSTAT/REWRITE are not supported by yakvs")
        return error(f"ERR unknown subcommand '{text(argv[1])}'. Try CONFIG HELP.")
    if len(argv) < 3:
        return wrong_arity("config|get")
    known = {"save": "", "appendonly": "yes", "databases": "1"}
    found: dict[str, Any] = {}
    for arg in argv[2:]:
        name = text(arg).lower()
        if name in known:
            found[name] = known[name]
    return flat_map(found, resp)


__all__ = ["NOT_INTEGER", "SYNTAX", "Session", "client", "command", "config", "hello", "info"]
