"""Turn replies into text: styled fragments for a terminal, raw text for pipes, JSON lines.

Rendering returns prompt_toolkit-style ``(style, text)`` fragments; :func:`plain` joins them for
pipes and tests, so the two outputs never drift apart. No I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from yakvs.protocol import Op, Reply

from .commands import NS_PER_SECOND, Command

Fragments = list[tuple[str, str]]

# Class names used by the REPL's style sheet (see session.STYLE).
OK, VALUE, DIM, ERROR, KEY, LABEL = (
    "class:ok", "class:value", "class:dim", "class:error", "class:key", "class:label"
)

# STATUS fields shown first, in this order; the rest follow alphabetically.
_STATUS_ORDER = ("mode", "role", "leader", "id", "version", "keys", "term", "commit_index")
_MEMBER_ORDER = ("id", "raft", "tcp", "api")


def plain(fragments: Iterable[tuple[str, str]]) -> str:
    return "".join(text for _, text in fragments)


def format_duration(ns: int) -> str:
    """Nanoseconds -> ``"850ms"``, ``"12.5s"``, ``"4m 59s"``, ``"2h 0m 5s"``."""
    seconds = ns / NS_PER_SECOND
    if seconds < 1:
        return f"{ns // 1_000_000}ms"
    if seconds < 60:
        return f"{seconds:.1f}s".replace(".0s", "s")
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    return f"{minutes}m {secs}s"


def format_seconds(ns: int) -> str:
    """Raw TTL: seconds with millisecond precision, ``-1`` for no expiry (as redis-cli)."""
    if ns < 0:
        return "-1"
    return f"{ns / NS_PER_SECOND:.3f}".rstrip("0").rstrip(".")


def quote(value: str) -> str:
    """A value as a terminal user should see it: quoted, newlines and NULs made visible."""
    return json.dumps(value, ensure_ascii=False)


def render_reply(command: Command, reply: Reply, *, pretty: bool) -> Fragments:
    """The answer to a successful reply; errors go through :func:`render_error`."""
    op = command.spec.op
    if op is Op.GET:
        return _render_get(reply, pretty)
    if op is Op.TTL:
        ttl = reply.ttl if reply.ttl is not None else -1
        if not pretty:
            return [("", format_seconds(ttl))]
        return [(DIM, "no expiry")] if ttl < 0 else [(VALUE, format_duration(ttl))]
    if op is Op.EXISTS:
        if not pretty:
            return [("", "1" if reply.exists else "0")]
        return [(OK, "yes")] if reply.exists else [(DIM, "no")]
    if op is Op.KEYS:
        return _render_keys(reply.keys or (), pretty)
    if op is Op.STATUS:
        return render_status(reply.info or {}, pretty=pretty)
    if op is Op.PING:
        return [(OK, reply.value or "PONG")]
    return [(OK, "OK")]


def _render_get(reply: Reply, pretty: bool) -> Fragments:
    value = reply.value if reply.value is not None else ""
    if not pretty:
        return [("", value)]
    ttl = reply.ttl if reply.ttl is not None else -1
    expiry = "no expiry" if ttl < 0 else f"expires in {format_duration(ttl)}"
    return [(VALUE, quote(value)), (DIM, f"  ({expiry})")]


def _render_keys(keys: Sequence[str], pretty: bool) -> Fragments:
    if not pretty:
        return [("", "\n".join(keys))] if keys else []
    if not keys:
        return [(DIM, "(no keys)")]
    width = len(str(len(keys)))
    fragments: Fragments = []
    for number, key in enumerate(keys, 1):
        if fragments:
            fragments.append(("", "\n"))
        fragments += [(DIM, f"{number:>{width}}) "), (KEY, quote(key))]
    return fragments


def render_status(info: Mapping[str, Any], *, pretty: bool) -> Fragments:
    """``key: value`` lines in a stable order, then the member table of a cluster."""
    names = [name for name in _STATUS_ORDER if name in info]
    names += sorted(name for name in info if name not in names and name != "members")
    width = max((len(n) for n in names if not isinstance(info[n], dict)), default=0)
    lines: Fragments = []
    for name in names:
        value = info[name]
        if isinstance(value, dict) and value:
            # Nested sections (a store's counters, say) read better as an indented block.
            lines += [(LABEL, f"{name}:"), ("", "\n")]
            inner = max(len(str(k)) for k in value)
            for key in sorted(value, key=str):
                lines += [(DIM, f"  {str(key) + ':':<{inner + 1}} "), ("", _scalar(value[key]))]
                lines.append(("", "\n"))
            continue
        lines += [(LABEL, f"{name + ':':<{width + 1}} "), ("", _scalar(value)), ("", "\n")]
    members = info.get("members")
    if isinstance(members, list) and members:
        lines += [(LABEL, "members:"), ("", "\n")]
        lines += _member_table(members, info.get("leader"))
    text = lines[:-1] if lines and lines[-1] == ("", "\n") else lines
    return text if pretty else [("", plain(text))]


def _member_table(members: list[Any], leader: Any) -> Fragments:
    dicts = [m if isinstance(m, dict) else {"id": m} for m in members]
    columns = [c for c in _MEMBER_ORDER if any(c in m for m in dicts)]
    columns += sorted({c for m in dicts for c in m} - set(columns))
    rows = [[_scalar(m.get(c, "")) for c in columns] for m in dicts]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    out: Fragments = [(DIM, _row(columns, widths))]
    for member, row in zip(dicts, rows, strict=True):
        # Mark the leader by its client address: that is what STATUS names as "leader".
        is_leader = leader is not None and leader in (member.get("tcp"), member.get("id"))
        line = _row(row, widths)
        out += [("", "\n"), (OK, line + "  *") if is_leader else ("", line)]
    out.append(("", "\n"))
    return out


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return ("  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))).rstrip()


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def render_error(reply: Reply, *, pretty: bool) -> Fragments:
    """One line for an error reply: the server's message, plus the leader when it named one."""
    message = reply.message or reply.code or "error"
    if reply.leader:
        message += f" (leader: {reply.leader})"
    return [(ERROR, f"(error) {message}" if pretty else f"error: {message}")]


def reply_to_json(reply: Reply) -> str:
    """One reply as one JSON line, shaped like the wire reply (absent fields left out)."""
    data: dict[str, Any] = {"status": "success" if reply.ok else "error"}
    for name in ("value", "ttl", "exists", "keys", "info", "code", "message", "leader"):
        field = getattr(reply, name)
        if field is not None:
            data[name] = list(field) if name == "keys" else field
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
