"""Property tests of the wire: hostile bytes only ever earn a ProtocolError, and
every supported value round-trips with its exact types."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyisolate import ProtocolError
from pyisolate._wire import Codec, Kind, Limits, decode_header, encode_header

_settings = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
hashables = st.recursive(
    scalars.filter(lambda x: not (isinstance(x, float) and math.isnan(x))),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=5).map(tuple)
        | st.dictionaries(hashables, inner, max_size=5)
        | st.sets(hashables, max_size=5)
        | st.frozensets(hashables, max_size=5)
    ),
    max_leaves=30,
)


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (True is not 1, NaN is NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        keys_b = list(b)
        return all(any(same(k, kb) and same(a[k], b[kb]) for kb in keys_b) for k in a)
    if isinstance(a, (set, frozenset)):
        return a == b and all(any(same(x, y) for y in b) for x in a)
    return bool(a == b)


@_settings
@given(values)
def test_round_trip(value: Any) -> None:
    codec = Codec()
    assert same(codec.decode(codec.encode(value)), value)


@_settings
@given(st.binary(max_size=200))
def test_decode_arbitrary_bytes(data: bytes) -> None:
    try:
        Codec(limits=Limits(max_frame=1000, max_items=50, max_depth=4)).decode(data)
    except ProtocolError:
        pass


@_settings
@given(st.binary(max_size=64))
def test_decode_header_arbitrary_bytes(data: bytes) -> None:
    try:
        header = decode_header(data)
    except ProtocolError:
        return
    assert isinstance(header.kind, Kind)


@_settings
@given(values)
def test_decode_mutated_messages(value: Any) -> None:
    """Flip one byte of a valid message: still ProtocolError or a value."""
    data = bytearray(Codec().encode(value))
    for i in range(0, len(data), max(1, len(data) // 8)):
        mutated = bytearray(data)
        mutated[i] ^= 0xFF
        try:
            Codec().decode(bytes(mutated))
        except ProtocolError:
            pass


@pytest.mark.parametrize("kind", list(Kind))
def test_header_round_trip(kind: Kind) -> None:
    header = decode_header(encode_header(kind, 2**40, 7, 3))
    assert (header.kind, header.call_id, header.peer, header.nfds) == (kind, 2**40, 7, 3)


def test_limits() -> None:
    codec = Codec(limits=Limits(max_frame=100, max_items=10, max_depth=3))
    with pytest.raises(ProtocolError):
        codec.decode(Codec().encode(b"x" * 200))
    with pytest.raises(ProtocolError):
        codec.decode(Codec().encode(list(range(11))))
    nested: Any = 1
    for _ in range(5):
        nested = (nested,)
    with pytest.raises(ProtocolError):
        codec.decode(Codec().encode(nested))
    with pytest.raises(TypeError, match="object"):
        Codec().encode([object()])
