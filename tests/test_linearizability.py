"""The linearizability checker: known-bad histories rejected, tricky good ones accepted."""

from __future__ import annotations

import math
import random
import time

import pytest

from yakvs.testing.history import Kind, Operation, Outcome, make_op
from yakvs.testing.linearizability import Verdict, check, check_key

INF = math.inf


class _H:
    """Terse builder for hand-written histories: h.set("a", 0, 1) is SET k=a over [0, 1]."""

    def __init__(self, key: str = "k") -> None:
        self.key = key
        self.ops: list[Operation] = []

    def _add(self, kind, value, t0, t1, outcome=Outcome.OK, found=None, key=None) -> Operation:
        op = make_op(len(self.ops), kind, key or self.key, value, t0, t1, outcome, found=found)
        self.ops.append(op)
        return op

    def set(self, value, t0, t1=INF, outcome=Outcome.OK, key=None) -> Operation:
        return self._add(Kind.SET, value, t0, t1, outcome, key=key)

    def get(self, value, t0, t1, outcome=Outcome.OK, key=None) -> Operation:
        return self._add(Kind.GET, value, t0, t1, outcome, key=key)

    def delete(self, t0, t1=INF, found=None, outcome=Outcome.OK, key=None) -> Operation:
        return self._add(Kind.DELETE, None, t0, t1, outcome, found=found, key=key)


def assert_ok(ops) -> None:
    result = check(ops)
    assert result.verdict is Verdict.OK, result.describe()


def assert_illegal(ops, *fragments: str) -> str:
    result = check(ops)
    assert result.verdict is Verdict.ILLEGAL, result.describe()
    message = result.describe()
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- known-bad histories --------------------------------------------------------------------


def test_stale_read_after_acknowledged_write():
    h = _H()
    h.set("a", 0, 1)
    h.set("b", 2, 3)
    h.get("a", 4, 5)
    assert_illegal(h.ops, "GET 'k' -> 'a'", "held 'b'")


def test_read_going_back_in_time():
    h = _H()
    h.set("a", 0, 1)
    h.set("b", 2, 10)  # still in flight while both reads run
    h.get("b", 3, 4)
    h.get("a", 5, 6)
    assert_illegal(h.ops, "GET 'k' -> 'a'")


def test_deleted_key_coming_back():
    h = _H()
    h.set("a", 0, 1)
    h.delete(2, 3, found=True)
    h.get("a", 4, 5)
    assert_illegal(h.ops, "GET 'k' -> 'a'", "<absent>")


def test_value_never_written():
    h = _H()
    h.set("a", 0, 1)
    h.get("zzz", 2, 3)
    assert_illegal(h.ops, "never written", "'zzz'")


def test_acknowledged_write_lost():
    h = _H()
    h.set("a", 0, 1)
    h.get(None, 2, 3)
    assert_illegal(h.ops, "GET 'k' -> <absent>")


def test_read_of_a_value_whose_write_failed():
    h = _H()
    h.set("a", 0, 1, outcome=Outcome.FAILED)
    h.get("a", 2, 3)
    assert_illegal(h.ops, "definitely failed")


def test_read_before_the_write_was_invoked():
    h = _H()
    h.get("a", 0, 1)
    h.set("a", 2, 3)
    assert_illegal(h.ops, "before it was written")


def test_unknown_write_seen_then_gone():
    # An unknown write may land late or never, but not land and then un-land.
    h = _H()
    h.set("x", 0, outcome=Outcome.UNKNOWN)
    h.get("x", 1, 2)
    h.get(None, 3, 4)
    assert_illegal(h.ops, "<absent>")


def test_concurrent_writes_cannot_be_seen_flip_flopping():
    h = _H()
    h.set("a", 0, 10)
    h.set("b", 0, 10)
    h.get("a", 1, 2)
    h.get("b", 3, 4)
    h.get("a", 5, 6)
    assert_illegal(h.ops)


def test_delete_reports_not_found_on_present_key():
    h = _H()
    h.set("a", 0, 1)
    h.delete(2, 3, found=False)
    assert_illegal(h.ops, "DELETE 'k' -> not found")


def test_delete_reports_deleted_on_absent_key():
    h = _H()
    h.delete(0, 1, found=True)
    assert_illegal(h.ops, "DELETE 'k' -> deleted")


def test_violation_is_reported_under_its_own_key():
    h = _H()
    h.set("a", 0, 1, key="good")
    h.get("a", 2, 3, key="good")
    h.set("b", 0, 1, key="bad")
    h.set("c", 2, 3, key="bad")
    h.get("b", 4, 5, key="bad")
    result = check(h.ops)
    assert result.verdict is Verdict.ILLEGAL
    assert result.keys["good"].verdict is Verdict.OK
    assert result.keys["bad"].verdict is Verdict.ILLEGAL
    assert [op.value for op in result.keys["bad"].stuck][:1] == ["b"]
    assert "'good'" not in result.describe()


# --- tricky good histories ------------------------------------------------------------------


def test_empty_and_trivial():
    assert_ok([])
    h = _H()
    h.get(None, 0, 1)
    h.set("a", 2, 3)
    h.get("a", 4, 5)
    assert_ok(h.ops)


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_concurrent_writes_read_in_either_order(order):
    h = _H()
    h.set("a", 0, 10)
    h.set("b", 0, 10)
    h.get(order[0], 1, 2)
    h.get(order[1], 3, 4)
    assert_ok(h.ops)


def test_read_concurrent_with_write_sees_old_or_new():
    for seen in ("a", "b"):
        h = _H()
        h.set("a", 0, 1)
        h.set("b", 2, 5)
        h.get(seen, 3, 4)
        h.get("b", 6, 7)
        assert_ok(h.ops)


def test_unknown_write_appears_late():
    h = _H()
    h.set("late", 0, outcome=Outcome.UNKNOWN)
    h.set("b", 1, 2)
    h.get("b", 3, 4)
    h.get("late", 100, 101)
    assert_ok(h.ops)


def test_unknown_write_never_appears():
    h = _H()
    h.set("a", 0, 1)
    h.set("lost", 2, outcome=Outcome.UNKNOWN)
    h.delete(3, outcome=Outcome.UNKNOWN)
    h.get("a", 4, 5)
    h.get("a", 50, 51)
    assert_ok(h.ops)


def test_unknown_delete_may_land_late():
    h = _H()
    h.set("a", 0, 1)
    h.delete(2, outcome=Outcome.UNKNOWN)
    h.get("a", 3, 4)
    h.get(None, 10, 11)
    assert_ok(h.ops)


def test_failed_ops_and_unknown_reads_are_dropped():
    h = _H()
    h.set("a", 0, 1, outcome=Outcome.FAILED)
    h.delete(0, 1, outcome=Outcome.FAILED)
    h.get("garbage", 0, 1, outcome=Outcome.UNKNOWN)
    h.get(None, 2, 3)
    assert_ok(h.ops)


def test_unread_unknown_write_needed_by_a_delete():
    # The quick pass leaves the unread unknown SET out and then cannot explain "deleted";
    # the full pass must find that the SET landed.
    h = _H()
    h.set("u", 0, outcome=Outcome.UNKNOWN)
    h.delete(1, 2, found=True)
    h.get(None, 3, 4)
    assert_ok(h.ops)


def test_budget_gives_undecided_not_a_hang():
    rng = random.Random(7)
    ops = _sequential_history(rng, 300, keys=("k",), width=40.0, unknown_rate=0.3)
    result = check_key("k", [op for op in ops if op.key == "k"], max_steps=50)
    assert result.verdict is Verdict.UNDECIDED
    assert "budget" in result.message


# --- generated histories ----------------------------------------------------------------------


def _sequential_history(
    rng: random.Random,
    n: int,
    keys: tuple[str, ...] = ("a", "b", "c"),
    width: float = 3.0,
    unknown_rate: float = 0.02,
    failed_rate: float = 0.02,
) -> list[Operation]:
    """Run a real sequential register per key and give each op an interval around its
    linearization point (point i at time i): always linearizable by construction."""
    state: dict[str, str | None] = dict.fromkeys(keys)
    ops: list[Operation] = []
    for i in range(n):
        t = float(i)
        t0, t1 = t - rng.uniform(0, width), t + rng.uniform(0, width)
        key = rng.choice(keys)
        kind = rng.choice((Kind.SET, Kind.SET, Kind.GET, Kind.GET, Kind.GET, Kind.DELETE))
        roll = rng.random()
        outcome = Outcome.OK
        if kind is not Kind.GET and roll < unknown_rate:
            outcome = Outcome.UNKNOWN
        elif roll < unknown_rate + failed_rate:
            outcome = Outcome.FAILED
        applied = outcome is not Outcome.FAILED and not (
            outcome is Outcome.UNKNOWN and rng.random() < 0.5
        )
        if kind is Kind.SET:
            value = f"v{i}"
            if applied:
                state[key] = value
            ops.append(make_op(i, kind, key, value, t0, t1, outcome, client=i % 5))
        elif kind is Kind.GET:
            value = state[key] if outcome is Outcome.OK else "junk"
            ops.append(make_op(i, kind, key, value, t0, t1, outcome, client=i % 5))
        else:
            found = state[key] is not None if outcome is Outcome.OK else None
            if applied:
                state[key] = None
            ops.append(make_op(i, kind, key, None, t0, t1, outcome, client=i % 5, found=found))
    return ops


def test_generated_histories_of_thousands_of_ops_check_fast():
    rng = random.Random(1)
    ops = _sequential_history(rng, 3000, keys=("a", "b", "c", "d", "e"))
    start = time.monotonic()
    result = check(ops)
    elapsed = time.monotonic() - start
    assert result.verdict is Verdict.OK, result.describe()
    # The budget in the brief is 1 s; leave headroom for a loaded 2-core CI machine.
    assert elapsed < 3.0, f"{elapsed:.2f} s"


def test_open_unknown_writes_do_not_multiply_the_search():
    # Twenty writes of unknown outcome stay open to the end. Tried at every point they would
    # make the search exponential; used only right before an op that needs them, they cost
    # next to nothing -- whether the history is good or bad.
    def history(last_read: str) -> list[Operation]:
        h = _H()
        h.set("a", 0, 1)
        h.delete(2, 3, found=True)
        for i in range(10):
            h.set(f"u{i}", 4 + i, outcome=Outcome.UNKNOWN)
            h.delete(4 + i, outcome=Outcome.UNKNOWN)
        h.delete(20, 21, found=True)  # needs one of the unknown SETs to have landed
        h.set("b", 22, 23)
        h.get(None, 24, 25)  # needs an unknown DELETE after "b"
        h.get(last_read, 26, 27)
        return h.ops

    good = check_key("k", history(None))
    assert good.verdict is Verdict.OK and good.steps < 100, good
    bad = check_key("k", history("a"))
    assert bad.verdict is Verdict.ILLEGAL and bad.steps < 1000, bad
    assert "GET 'k' -> 'a'" in bad.message
