"""Actor classes for the supervision suite (imported by actor processes).

Each actor can log its start and stop to a journal file, so that tests can
check the order in which a supervisor starts and stops its children.
"""

from __future__ import annotations

import os
import time
from typing import Any

import anyio

import pyisolate
from pyisolate.actors._exit import exit_actor
from pyisolate.supervision import idempotent


def _journal(path: str | None, line: str) -> None:
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


class Worker(pyisolate.Actor):
    """A counter that can fail in every way a supervisor must handle.

    ``fail_flag``: while this file exists, ``on_start`` raises (a restart
    that fails). ``stubborn``: ``on_stop`` never returns (to test the
    shutdown deadline).
    """

    def __init__(
        self,
        tag: str = "w",
        journal: str | None = None,
        fail_flag: str | None = None,
        stubborn: bool = False,
    ) -> None:
        self.tag = tag
        self.journal = journal
        self.fail_flag = fail_flag
        self.stubborn = stubborn
        self.n = 0

    def on_start(self) -> None:
        if self.fail_flag and os.path.exists(self.fail_flag):
            raise RuntimeError(f"{self.tag}: on_start refused")
        _journal(self.journal, f"start {self.tag}")

    def on_stop(self) -> None:
        _journal(self.journal, f"stop {self.tag}")
        if self.stubborn:
            time.sleep(3600)

    async def inc(self, by: int = 1) -> int:
        self.n += by
        return self.n

    @idempotent
    async def value(self) -> int:
        return self.n

    async def echo(self, x: Any) -> Any:
        return x

    @idempotent
    async def slow_echo(self, x: Any, delay: float) -> Any:
        await anyio.sleep(delay)
        return x

    async def numbers(self, n: int) -> Any:
        for i in range(n):
            yield i

    async def slow_echo_plain(self, x: Any) -> Any:
        await anyio.sleep(0.5)
        return x

    def pid(self) -> int:
        return os.getpid()

    def die(self, code: int) -> None:
        os._exit(code)

    async def quit(self) -> str:
        exit_actor()
        return "bye"

    def quit_sync(self) -> str:
        exit_actor()
        return "bye"

    async def freeze(self) -> None:
        """Blocks the event loop: heartbeats go unanswered."""
        time.sleep(3600)

    async def violate(self) -> None:
        from pyisolate.actors._child import current_server

        current_server().sock.send_multipart([b"garbage", b"more", b"frames"])
        await anyio.sleep(3600)


class Failing(pyisolate.Actor):
    def __init__(self) -> None:
        raise RuntimeError("never starts")


class Caller(pyisolate.Actor):
    """Calls another actor through a reference it was given: the actor-to-actor
    path, which the host routes (and holds while the target restarts)."""

    def __init__(self, target: Any = None) -> None:
        self.target = target

    async def relay(self, method: str, args: list[Any], timeout: float | None) -> Any:
        """``[result, None]``, or ``[None, error type name]``. (``timeout`` is
        the relayed call's: a ``timeout=`` keyword would be the host's.)"""
        try:
            return [await self.target.call(method, *args, timeout=timeout), None]
        except Exception as exc:
            return [None, type(exc).__name__]

    async def relay_casts_then_value(self, amounts: list[int], timeout: float) -> int:
        """Casts ``inc(a)`` for each amount, then calls ``value()``: held in
        order, they must all reach the same incarnation before the call."""
        for amount in amounts:
            await self.target.cast("inc", amount)
        return int(await self.target.call("value", timeout=timeout))

    async def relay_array(self, n: int, timeout: float) -> bool:
        """Sends a numpy array (out of band, as fds) and checks the echo."""
        import numpy as np

        array = np.arange(n, dtype=np.float32)
        echoed = await self.target.call("echo", array, timeout=timeout)
        return bool(np.array_equal(echoed, array))
