"""Command parsing for the client: a line (or argv words) -> a :class:`Command`, and the help text.

No I/O here: the REPL, the one-shot mode and the tests all go through :func:`parse_line` or
:func:`parse_words`, so a typo gets the same one-line answer everywhere.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from yakvs.protocol import Op, Request

NS_PER_SECOND = 1_000_000_000


class CommandUsageError(ValueError):
    """The line cannot be run as typed; ``str()`` is one line naming the problem and the syntax."""


@dataclass(frozen=True, slots=True)
class Spec:
    """One entry of the command table; ``op`` None means the client handles it (HELP, QUIT)."""

    name: str
    syntax: str
    summary: str
    min_args: int
    max_args: int
    op: Op | None = None
    aliases: tuple[str, ...] = ()


SPECS: tuple[Spec, ...] = (
    Spec("SET", "SET key value [ttl_seconds]",
         "Store value; it expires after ttl_seconds (fractions ok).", 2, 3, Op.SET),
    Spec("GET", "GET key", "Print the value and its remaining time to live.", 1, 1, Op.GET),
    Spec("DELETE", "DELETE key", "Remove key (alias DEL).", 1, 1, Op.DELETE, ("DEL",)),
    Spec("TTL", "TTL key", "Print the remaining time to live of key.", 1, 1, Op.TTL),
    Spec("EXISTS", "EXISTS key", "Say whether key exists.", 1, 1, Op.EXISTS),
    Spec("KEYS", "KEYS [prefix]", "List the keys, or those starting with prefix.", 0, 1, Op.KEYS),
    Spec("PING", "PING", "Check that the server answers.", 0, 0, Op.PING),
    Spec("STATUS", "STATUS",
         "Show mode and role; in a cluster the leader and members.", 0, 0, Op.STATUS),
    Spec("HELP", "HELP [command]", "List the commands, or explain one.", 0, 1),
    Spec("QUIT", "QUIT", "Leave (alias EXIT; Ctrl-D works too).", 0, 0,
         aliases=("EXIT",)),
)

# Every spelling a user may type, upper-cased, to its spec.
_BY_NAME: dict[str, Spec] = {
    name: spec for spec in SPECS for name in (spec.name, *spec.aliases)
}

COMMAND_NAMES: tuple[str, ...] = tuple(sorted(_BY_NAME))


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed line: the spec it matched, its words, and the request to send (None for local)."""

    spec: Spec
    args: tuple[str, ...]
    request: Request | None

    @property
    def name(self) -> str:
        return self.spec.name


def find_spec(name: str) -> Spec | None:
    return _BY_NAME.get(name.upper())


def split_line(line: str) -> list[str]:
    """Split like a shell (quotes, backslashes); unbalanced quotes raise CommandUsageError."""
    try:
        return shlex.split(line, posix=True)
    except ValueError as exc:
        # shlex says "No closing quotation" / "No escaped character": say it our way.
        raise CommandUsageError(f"cannot parse the line: {str(exc).lower()}") from None


def parse_line(line: str) -> Command | None:
    """Parse one typed line; None for a blank line or a ``#`` comment."""
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    return parse_words(split_line(line))


def parse_words(words: Sequence[str]) -> Command:
    """Parse already-split words (argv in one-shot mode, or a split line)."""
    if not words:
        raise CommandUsageError("no command given; type HELP for the list")
    spec = find_spec(words[0])
    if spec is None:
        raise CommandUsageError(f"unknown command {words[0]!r}; type HELP for the list")
    args = tuple(words[1:])
    for word in args:
        try:
            word.encode("utf-8")
        except UnicodeEncodeError:
            # argv bytes that are not UTF-8 arrive as lone surrogates; the wire carries UTF-8 only.
            raw = word.encode("utf-8", "surrogateescape")
            raise CommandUsageError(f"argument {raw!r} is not valid UTF-8") from None
    if not spec.min_args <= len(args) <= spec.max_args:
        problem = "missing arguments" if len(args) < spec.min_args else "too many arguments"
        raise CommandUsageError(f"{problem} for {spec.name}; syntax: {spec.syntax}")
    if spec.op is not None and spec.min_args and not args[0]:
        raise CommandUsageError(f"the key must not be empty; syntax: {spec.syntax}")
    if spec.name == "HELP" and args and find_spec(args[0]) is None:
        raise CommandUsageError(f"no command {args[0]!r}; type HELP for the list")
    return Command(spec, args, _request(spec, args))


def parse_ttl(text: str, syntax: str = "SET key value [ttl_seconds]") -> int:
    """Seconds (maybe fractional) -> nanoseconds; anything else is a usage error."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise CommandUsageError(
            f"ttl_seconds must be a positive number, got {text!r}; syntax: {syntax}"
        )
    # Sub-nanosecond TTLs would round to 0, which the wire reads as "no expiry": keep at least 1.
    return max(1, round(seconds * NS_PER_SECOND))


def _request(spec: Spec, args: tuple[str, ...]) -> Request | None:
    if spec.op is None:
        return None
    if spec.op is Op.SET:
        expires_in = parse_ttl(args[2], spec.syntax) if len(args) == 3 else 0
        return Request(op=Op.SET, key=args[0], value=args[1], expires_in=expires_in)
    if spec.op is Op.KEYS:
        return Request(op=Op.KEYS, prefix=args[0] if args else "")
    return Request(op=spec.op, key=args[0] if args else "")


def help_text(name: str | None = None) -> str:
    """HELP for every command, or for one; the same text backs ``--help``."""
    if name:
        spec = find_spec(name)
        if spec is None:
            raise CommandUsageError(f"no command {name!r}; type HELP for the list")
        alias = f" (alias {', '.join(spec.aliases)})" if spec.aliases else ""
        return f"{spec.syntax}{alias}\n  {spec.summary}"
    width = max(len(spec.syntax) for spec in SPECS)
    lines = ["Commands (case-insensitive; quote arguments like a shell):"]
    lines += [f"  {spec.syntax:<{width}}  {spec.summary}" for spec in SPECS]
    return "\n".join(lines)
