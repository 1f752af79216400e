"""Key iteration shared by both backends: Redis glob patterns and a SCAN cursor.

Kept free of any store so the standalone store and the replicated state answer KEYS and SCAN the
same way.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable
from functools import lru_cache
from zlib import crc32

__all__ = ["expire_allowed", "glob_to_regex", "key_matches", "scan_keys"]


def expire_allowed(flag: str, current: int | None, at: int) -> bool:
    """EXPIRE's NX/XX/GT/LT condition; ``current`` None = no expiry (infinite, for GT/LT)."""
    if not flag:
        return True
    if flag == "NX":
        return current is None
    if flag == "XX":
        return current is not None
    if flag == "GT":
        return current is not None and at > current
    if flag == "XXLT":
        return current is not None and at < current
    return current is None or at < current  # LT


@lru_cache(maxsize=256)
def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Redis's ``stringmatchlen`` as a regex: ``*``, ``?``, ``[abc]``, ``[^a-z]``, ``\\x``."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            while i + 1 < n and pattern[i + 1] == "*":
                i += 1
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            i, cls = _char_class(pattern, i + 1)
            out.append(cls)
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _char_class(pattern: str, i: int) -> tuple[int, str]:
    """Parse a ``[...]`` class starting after the ``[``; Redis treats an unclosed one as ending."""
    n = len(pattern)
    negate = i < n and pattern[i] == "^"
    if negate:
        i += 1
    parts: list[str] = []
    while i < n and pattern[i] != "]":
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            i += 1
            parts.append(re.escape(pattern[i]))
        elif i + 2 < n and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            lo, hi = sorted((c, pattern[i + 2]))  # Redis accepts reversed ranges
            parts.append(f"{re.escape(lo)}-{re.escape(hi)}")
            i += 2
        else:
            parts.append(re.escape(c))
        i += 1
    body = "".join(parts)
    if not body:
        return i + 1, "[^\\s\\S]" if not negate else "[\\s\\S]"
    return i + 1, f"[{'^' if negate else ''}{body}]"


def key_matches(pattern: str | None, key: str) -> bool:
    return pattern is None or pattern == "*" or glob_to_regex(pattern).fullmatch(key) is not None


def _position(key: str) -> int:
    # A stable position per key (the same in every process and on every replica): the cursor is
    # a position, so keys added or removed during a scan never make it skip a key that was there
    # all along (Redis's guarantee). CRC-32 is ~10x cheaper than a cryptographic hash; keys that
    # collide share a position and are always returned together.
    return crc32(key.encode("utf-8", "surrogateescape")) + 1


def scan_keys(
    keys: Iterable[str], cursor: int, pattern: str | None, count: int
) -> tuple[int, list[str]]:
    """One SCAN step over ``keys``: (next cursor, 0 when done; the matching keys of this step).

    Visits about ``count`` keys in position order from ``cursor``. O(n) per call (three passes,
    no sort): SCAN, like KEYS, is for admin use.
    """
    ahead = [(p, k) for k in keys if (p := _position(k)) >= cursor]
    nxt = 0
    if len(ahead) > count:
        last = heapq.nsmallest(count, ahead)[-1][0]
        later = [p for p, _ in ahead if p > last]
        nxt = min(later) if later else 0
        ahead = [(p, k) for p, k in ahead if p <= last]
    return nxt, [k for _, k in ahead if key_matches(pattern, k)]
