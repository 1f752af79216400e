"""RESP codec throughput: pure-Python parser vs hiredis-accelerated parser vs bare hiredis.Reader.

Run: python benchmarks/bench_resp_codec.py [--seconds 1.0]
Prints commands per CPU second (best of 3 rounds) for pipelined SET batches of 16, single GETs
(one command per feed, as with a non-pipelining client), single SETs with a 100 B value, and
reply encoding.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from yakvs.resp import RespParser, encode_bulk, encode_command, encode_simple

try:
    import hiredis
except ImportError:  # the table just loses its hiredis rows
    hiredis = None

KEY = b"key:000000001234"
VALUE = b"x" * 100
SET = encode_command(b"SET", KEY, VALUE)
GET = encode_command(b"GET", KEY)
BATCH = SET * 16
INLINE_GET = b"GET " + KEY + b"\r\n"


def rate(fn: Callable[[], int], seconds: float) -> float:
    """Commands per CPU second of fn (which returns how many commands it handled), best of 3.

    CPU time, not wall time: the machine is shared, and a parser's cost is its CPU time.
    """
    best = 0.0
    for _ in range(3):
        done, start = 0, time.process_time()
        deadline = start + seconds / 3
        while (now := time.process_time()) < deadline:
            for _ in range(50):
                done += fn()
        best = max(best, done / (now - start))
    return best


def parser_cases(use_hiredis: bool) -> dict[str, Callable[[], int]]:
    parser = RespParser(use_hiredis=use_hiredis)

    def feed_and_drain(data: bytes) -> int:
        parser.feed(data)
        count = 0
        while parser.next_command() is not None:
            count += 1
        return count

    return {
        "SET pipeline x16": lambda: feed_and_drain(BATCH),
        "single GET": lambda: feed_and_drain(GET),
        "single SET 100B": lambda: feed_and_drain(SET),
        "inline GET": lambda: feed_and_drain(INLINE_GET),
    }


def bare_hiredis_cases() -> dict[str, Callable[[], int]]:
    reader = hiredis.Reader()

    def feed_and_drain(data: bytes) -> int:
        reader.feed(data)
        count = 0
        while reader.gets() is not False:
            count += 1
        return count

    return {
        "SET pipeline x16": lambda: feed_and_drain(BATCH),
        "single GET": lambda: feed_and_drain(GET),
        "single SET 100B": lambda: feed_and_drain(SET),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="time per cell")
    args = ap.parse_args()
    columns: dict[str, dict[str, Callable[[], int]]] = {"pure Python": parser_cases(False)}
    if hiredis is not None:
        columns["RespParser+hiredis"] = parser_cases(True)
        columns["bare hiredis.Reader*"] = bare_hiredis_cases()
    rows = list(next(iter(columns.values())))
    print(f"{'case':<20}" + "".join(f"{name:>22}" for name in columns))
    for row in rows:
        cells = [
            f"{rate(cases[row], args.seconds) / 1e3:>18.0f} k/s" if row in cases else f"{'n/a':>22}"
            for cases in columns.values()
        ]
        print(f"{row:<20}" + "".join(cells))
    enc = rate(lambda: len(encode_bulk(VALUE)) and 1, args.seconds)
    ok = rate(lambda: len(encode_simple("OK")) and 1, args.seconds)
    print(f"\nencode_bulk(100 B): {enc / 1e3:.0f} k/s   encode_simple('OK'): {ok / 1e3:.0f} k/s")
    if hiredis is not None:
        print("* no limits, no Redis semantics, no inline commands: an upper bound only")


if __name__ == "__main__":
    main()
