"""Actor classes for the core test suite.

Kept in a plain module (not a test module) so that actor processes import it
quickly: importing it pulls in nothing but the standard library, anyio and
pyisolate.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

import pyisolate


class CustomError(Exception):
    """A non-builtin exception: arrives as RemoteError."""


class Counter(pyisolate.Actor):
    """The README's actor: a counter with every kind of method."""

    def __init__(self, start: int = 0) -> None:
        self.n = start
        self.casts = 0
        self.calls = 0

    async def inc(self, by: int = 1) -> int:
        self.calls += 1
        self.n += by
        return self.n

    def value(self) -> int:
        return self.n

    async def bump(self, by: int = 1) -> None:
        """Target of casts."""
        self.casts += 1
        self.n += by

    async def echo(self, value: Any) -> Any:
        self.calls += 1
        return value

    async def call_count(self) -> int:
        return self.calls

    async def count(self, n: int) -> Any:
        for i in range(n):
            yield i

    def count_sync(self, n: int) -> Any:
        for i in range(n):
            yield i * 10

    def bad_return(self) -> Any:
        return object()

    def fail(self, kind: str) -> None:
        if kind == "key":
            raise KeyError("missing")
        if kind == "value":
            raise ValueError("bad value")
        if kind == "zero":
            1 / 0  # noqa: B018
        if kind == "custom":
            raise CustomError("custom failure")
        raise AssertionError(kind)

    async def afail(self) -> None:
        raise ValueError("async failure")

    def _private(self) -> int:
        return 1


class Sleepy(pyisolate.Actor):
    """Blocking and waiting methods, with bookkeeping of overlap and cancellation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.cancelled = 0
        self.started = 0

    def _enter(self) -> None:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def _leave(self) -> None:
        with self._lock:
            self.active -= 1

    def block(self, seconds: float) -> str:
        """A plain method that blocks its thread."""
        self._enter()
        try:
            time.sleep(seconds)
        finally:
            self._leave()
        return "blocked"

    async def wait(self, seconds: float) -> str:
        self._enter()
        try:
            await anyio.sleep(seconds)
        finally:
            self._leave()
        return "waited"

    async def ping(self) -> str:
        return "pong"

    async def hang(self) -> None:
        """Waits forever; records its cancellation."""
        self.started += 1
        try:
            await anyio.sleep(math.inf)
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise

    def stats(self) -> dict[str, int]:
        return {
            "max_active": self.max_active,
            "active": self.active,
            "cancelled": self.cancelled,
            "started": self.started,
        }

    def crash(self, code: int) -> None:
        os._exit(code)

    def pid(self) -> int:
        return os.getpid()


class Streamer(pyisolate.Actor):
    """Generators that record how far they ran and whether they were closed."""

    def __init__(self) -> None:
        self.produced = 0
        self.closed = 0
        self.finished = 0

    async def forever(self) -> Any:
        i = 0
        try:
            while True:
                self.produced += 1
                yield i
                i += 1
        finally:
            self.closed += 1

    def forever_sync(self) -> Any:
        i = 0
        try:
            while True:
                self.produced += 1
                yield i
                i += 1
        finally:
            self.closed += 1

    async def numbers(self, n: int) -> Any:
        for i in range(n):
            self.produced += 1
            yield i
        self.finished += 1

    async def slow(self, delay: float) -> Any:
        try:
            yield 0
            await anyio.sleep(delay)
            yield 1
        finally:
            self.closed += 1

    async def fail_after(self, n: int) -> Any:
        for i in range(n):
            yield i
        raise ValueError(f"failed after {n}")

    def stats(self) -> dict[str, int]:
        return {"produced": self.produced, "closed": self.closed, "finished": self.finished}

    def reset(self) -> None:
        self.produced = self.closed = self.finished = 0


class Relay(pyisolate.Actor):
    """Holds references to other actors and calls them."""

    def __init__(self) -> None:
        self.peers: dict[str, Any] = {}

    async def remember(self, key: str, ref: Any) -> str:
        self.peers[key] = ref
        return repr(ref)

    async def call_peer(self, key: str, method: str, *args: Any) -> Any:
        return await self.peers[key].call(method, *args)

    async def call_ref(self, ref: Any, method: str, *args: Any) -> Any:
        return await ref.call(method, *args)

    async def try_call(self, ref: Any, method: str, *args: Any) -> list[Any]:
        """Call and report the outcome as data: [type name, message, exitcode]."""
        try:
            return ["ok", await ref.call(method, *args), None]
        except Exception as exc:
            return [type(exc).__name__, str(exc), getattr(exc, "exitcode", None)]

    async def stream_peer(self, ref: Any, method: str, *args: Any) -> list[Any]:
        return [item async for item in ref.stream(method, *args)]

    async def give_back(self, ref: Any) -> Any:
        return ref


class Hooks(pyisolate.Actor):
    """Lifecycle hooks that leave traces in files."""

    def __init__(self, path: str, mode: str = "ok") -> None:
        self.path = Path(path)
        self.mode = mode
        self.started = False

    async def on_start(self) -> None:
        if self.mode == "start_fails":
            raise RuntimeError("on_start refused")
        await anyio.lowlevel.checkpoint()
        self.started = True

    def on_stop(self) -> None:
        if self.mode == "stop_hangs":
            time.sleep(60)
        self.path.write_text(f"stopped {self.name}")

    def is_started(self) -> bool:
        return self.started

    def my_name(self) -> str:
        return self.name


class Failing(pyisolate.Actor):
    """A constructor that raises."""

    def __init__(self, message: str = "constructor refused") -> None:
        raise RuntimeError(message)


class Talker(pyisolate.Actor):
    """Prints and logs."""

    def talk(self, text: str) -> None:
        print(f"stdout says {text}", flush=True)
        logging.getLogger("talker.inner").warning("log says %s", text)
        logging.getLogger("talker.inner").info("info says %s", text)


class Hostile(pyisolate.Actor):
    """Breaks the protocol on purpose."""

    async def raw_send(self, frames: list[bytes]) -> str:
        from pyisolate.actors._child import current_server

        current_server().sock.send_multipart(frames)
        await anyio.sleep(30)
        return "survived"

    def big(self, nbytes: int) -> bytes:
        return b"x" * nbytes

    def big_text(self, nchars: int) -> str:
        return "x" * nchars

    async def raw_oversized(self, nbytes: int) -> str:
        """Send, unchecked, one REPLY frame of ``nbytes`` to the host."""
        from pyisolate._wire import Kind, encode_header

        return await self.raw_send([encode_header(Kind.REPLY, 1, 0) + b"x" * nbytes])

    async def ping(self) -> str:
        return "pong"


def module_level_helper() -> int:
    return 1


class Point:
    """A user type that travels because it is registered (both sides import this)."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    __hash__ = None  # type: ignore[assignment]


pyisolate.register_type(Point, 40, lambda p: (p.x, p.y), lambda v: Point(*v))


class Geometry(pyisolate.Actor):
    async def shift(self, p: Point, dx: int) -> Point:
        assert isinstance(p, Point)  # rebuilt as the type, not a tuple
        return Point(p.x + dx, p.y)
