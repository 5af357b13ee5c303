"""Actors for tests/test_values.py and tests/security/test_large_values.py.

A plain module (tests/ is on the actors' sys.path). numpy is imported inside
the methods that need it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pyisolate


def pattern(n: int) -> bytes:
    """``n`` bytes that are not all alike (cheap to make, even 100 MiB)."""
    block = bytes(range(256))
    return (block * (n // 256 + 1))[:n]


def digest(value: Any) -> tuple[str, int, str]:
    return type(value).__name__, len(value), hashlib.sha256(value).hexdigest()


class Values(pyisolate.Actor):
    """Echoes, makes and describes values; counts the calls that reached it."""

    def __init__(self) -> None:
        self.calls = 0

    async def echo(self, value: Any) -> Any:
        self.calls += 1
        return value

    async def count(self) -> int:
        return self.calls

    async def describe(self, value: Any) -> Any:
        """Type names (and digests of bytes-likes), nested like ``value``."""
        self.calls += 1
        return _describe(value)

    async def make_bytes(self, n: int, kind: str = "bytes") -> Any:
        data = pattern(n)
        return bytearray(data) if kind == "bytearray" else data

    async def make_nested(self, n: int) -> Any:
        return {"a": [pattern(n), (bytearray(pattern(n + 1)),)], "small": b"s", "n": 3}

    async def make_np_scalars(self) -> list[Any]:
        import numpy as np

        return [np.float32(1.5), np.int64(3), np.bool_(True)]

    async def make_int(self, bits: int) -> int:
        return 2**bits

    async def relay(self, other: pyisolate.ActorRef, method: str, *args: Any) -> Any:
        return await getattr(other, method)(*args)

    async def fetch_and_describe(self, other: pyisolate.ActorRef, n: int) -> Any:
        """Ask ``other`` for large bytes (actor to actor) and describe them here."""
        return _describe(await other.make_bytes(n))


def _describe(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return digest(value)
    if isinstance(value, dict):
        return {k: _describe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    return type(value).__module__ + "." + type(value).__qualname__
