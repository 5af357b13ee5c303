"""User types registered with ``pyisolate.register_type`` travel both ways."""

from __future__ import annotations

import pytest
from actors import Geometry, Point

import pyisolate
from pyisolate._wire import Codec

pytestmark = pytest.mark.anyio


async def test_a_registered_type_crosses_to_an_actor_and_back(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Geometry)
    moved = await ref.shift(Point(1, 2), 10)
    assert isinstance(moved, Point)
    assert moved == Point(11, 2)
    nested = [Point(0, 0), (Point(1, 1),)]
    codec = Codec()
    assert codec.decode(codec.encode(nested)) == nested


def test_codes_are_checked() -> None:
    with pytest.raises(ValueError, match=r"32\.\.127"):
        pyisolate.register_type(Point, 5, lambda p: p.x, int)
    with pytest.raises(ValueError, match="already registered"):
        pyisolate.register_type(complex, 40, lambda c: (c.real, c.imag), lambda v: complex(*v))
