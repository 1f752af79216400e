"""The server's fast decoding of plain SET/GET must agree with request_from_dict on every input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yakvs.errors import YakvsError
from yakvs.protocol import (
    MAX_EXPIRES_IN_NS,
    Op,
    Reply,
    Request,
    encode_reply,
    encode_value_reply,
    fast_request,
    request_from_dict,
    to_request,
)

NOW = 1_700_000_000_000
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.sampled_from([MAX_EXPIRES_IN_NS, MAX_EXPIRES_IN_NS + 1, 999_999, 1_000_000, 2**70]),
    st.floats(allow_nan=False),
    st.text(max_size=3),
    st.sampled_from(["SET", "GET", "set", "Get", "DELETE", "stale", "linearizable"]),
    st.lists(st.integers(), max_size=1),
)
_obj = st.dictionaries(
    st.sampled_from(["op", "key", "value", "expires_in", "consistency", "prefix", "extra"]),
    _scalar,
)


def _outcome(fn, obj):
    try:
        return to_request(fn(obj, NOW))
    except YakvsError as exc:
        return (type(exc), exc.message)


@settings(max_examples=500, deadline=None)
@given(obj=_obj)
def test_fast_request_agrees_with_request_from_dict(obj):
    assert _outcome(fast_request, obj) == _outcome(request_from_dict, obj)


@pytest.mark.parametrize(
    ("obj", "fast"),
    [
        ({"op": "SET", "key": "k", "value": "v"}, True),
        ({"op": "SET", "key": "k", "value": "v", "expires_in": 1}, True),
        ({"op": "GET", "key": "k"}, True),
        ({"op": "GET", "key": "k", "consistency": "stale"}, False),
        ({"op": "get", "key": "k"}, False),
        ({"op": "DELETE", "key": "k"}, False),
    ],
)
def test_plain_set_and_get_take_the_tuple_form(obj, fast):
    got = fast_request(obj, NOW)
    assert (type(got) is tuple) is fast
    assert to_request(got) == request_from_dict(obj, NOW)


def test_sub_millisecond_ttl_rounds_up_in_the_fast_form():
    got = fast_request({"op": "SET", "key": "k", "value": "v", "expires_in": 1}, NOW)
    assert to_request(got) == Request(Op.SET, "k", "v", 1, expires_at=NOW + 1)


@settings(max_examples=300, deadline=None)
@given(value=st.text(), ttl=st.one_of(st.just(-1), st.integers(1, 2**62)))
def test_value_reply_bytes_equal_the_generic_encoder(value, ttl):
    assert encode_value_reply(value, ttl) == encode_reply(Reply(value=value, ttl=ttl))
