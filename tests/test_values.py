"""Values at the edges of what msgpack holds (issue 8, item 13).

* An int msgpack cannot hold (beyond 64 bits) raises TypeError in the
  caller, naming the range, before anything is sent; from an actor's
  result, the caller gets that TypeError as the call's error.
* numpy scalars travel and arrive as the same numpy scalar type (the
  receiver of one can import numpy: it was sent one by a process that has it).
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from value_actors import Values

from pyisolate._wire import Codec, EncodeContext

np = pytest.importorskip("numpy")

pytestmark = pytest.mark.anyio

TOO_BIG = [2**64, -(2**64), 2**70, -(2**63) - 1]
EDGES = [2**64 - 1, -(2**63), 0, -1]


# -- codec level -------------------------------------------------------------------


@pytest.mark.parametrize("n", TOO_BIG, ids=str)
def test_an_int_beyond_64_bits_is_a_type_error_naming_the_range(n: int) -> None:
    with pytest.raises(TypeError, match="integers must fit in 64 bits") as info:
        Codec().encode({"nested": [1, (n,)]})
    assert str(n) in str(info.value)  # it names the culprit


@pytest.mark.parametrize("n", EDGES, ids=str)
def test_ints_at_the_edges_of_64_bits_travel(n: int) -> None:
    codec = Codec()
    assert codec.decode(codec.encode([n])) == [n]


def test_the_codec_works_again_after_an_overflow() -> None:
    codec = Codec()
    with pytest.raises(TypeError):
        codec.encode([1, 2**70])
    assert codec.decode(codec.encode([1, 2])) == [1, 2]


# -- through actors ----------------------------------------------------------------


async def test_a_huge_int_argument_raises_in_the_caller_and_sends_nothing(rt: Any) -> None:
    actor = await rt.spawn(Values)
    with anyio.fail_after(30):
        for n in TOO_BIG:
            with pytest.raises(TypeError, match="integers must fit in 64 bits"):
                await actor.echo(n)
        assert await actor.count() == 0  # none of those calls was sent
        # positive control: the largest ints msgpack holds go through
        assert await actor.echo(EDGES) == EDGES
        assert await actor.count() == 1


async def test_a_huge_int_result_is_a_type_error_for_the_caller(rt: Any) -> None:
    actor = await rt.spawn(Values)
    with anyio.fail_after(30):
        with pytest.raises(TypeError, match="integers must fit in 64 bits"):
            await actor.make_int(70)
        assert await actor.make_int(63) == 2**63  # the actor lives on


SCALARS = [
    np.float32(1.5),
    np.int64(3),
    np.bool_(True),
    np.float64(2.25),
    np.uint8(255),
    np.int16(-7),
    np.complex64(1 + 2j),
    np.float16(0.5),
    np.datetime64("2024-01-02T03:04"),
    np.timedelta64(5, "s"),
    np.str_("héllo"),
    np.bytes_(b"ab"),
]


def _same(got: Any, want: Any) -> None:
    assert type(got) is type(want), f"{type(got)} != {type(want)}"
    assert got.dtype == want.dtype
    assert got == want


async def test_numpy_scalars_round_trip_as_themselves(rt: Any) -> None:
    actor = await rt.spawn(Values)
    with anyio.fail_after(60):
        got = await actor.echo(SCALARS)
        assert len(got) == len(SCALARS)
        for g, w in zip(got, SCALARS, strict=True):
            _same(g, w)
        # nested, and as dict values
        nested = await actor.echo({"x": (np.float32(0.25), [np.int64(-1)])})
        _same(nested["x"][0], np.float32(0.25))
        _same(nested["x"][1][0], np.int64(-1))
        # made by the actor, received by the host
        made = await actor.make_np_scalars()
        for g, w in zip(made, [np.float32(1.5), np.int64(3), np.bool_(True)], strict=True):
            _same(g, w)
        # what the actor sees is the numpy type too
        names = [f"numpy.{type(x).__qualname__}" for x in (np.float32(1.0), np.bool_(False))]
        assert await actor.describe([np.float32(1.0), np.bool_(False)]) == names


def test_object_numpy_scalars_are_refused() -> None:
    from pyisolate._wire import ExtRegistry
    from pyisolate.transport import lowlevel as L

    registry = ExtRegistry()
    L.install(registry)
    codec = Codec(registry)
    got = codec.decode(codec.encode([np.float32(2.5)], EncodeContext()))
    _same(got[0], np.float32(2.5))
    # an np.void of a structured dtype with an object field cannot be built
    # without numpy objects: refused like object arrays
    with pytest.raises(TypeError, match="Python objects"):
        codec.encode(np.array([(1, None)], dtype=[("a", "<i4"), ("o", "O")])[0])
