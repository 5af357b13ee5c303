"""``python -m pyisolate demo``: a short tour that runs on any machine.

Spawns two actors, calls them, streams from one, lets one crash mid-call and
shows the crash arriving as an exception, then prints a summary.
"""

from __future__ import annotations

import os
import statistics
import time

import anyio

from .actors import Actor, Runtime
from .errors import ActorDiedError

__all__ = ["Crasher", "Greeter", "run_demo"]


class Greeter(Actor):
    """A small stateful actor."""

    def __init__(self, greeting: str) -> None:
        self.greeting = greeting
        self.calls = 0

    async def greet(self, who: str) -> str:
        self.calls += 1
        return f"{self.greeting}, {who}!"

    def count_calls(self) -> int:
        """A sync method: runs on the actor's worker thread (a thread hop each way)."""
        return self.calls

    async def peek(self) -> int:
        """An async method: runs on the actor's event loop (the README's figure)."""
        return self.calls

    async def countdown(self, n: int):  # type: ignore[no-untyped-def]
        for i in range(n, 0, -1):
            yield i


class Crasher(Actor):
    """An actor whose method kills its own process: stands for a buggy plugin."""

    async def divide(self, a: float, b: float) -> float:
        return a / b

    async def crash(self) -> None:
        os._exit(3)


async def _demo(out: list[str]) -> None:
    async with Runtime() as rt:
        t0 = time.perf_counter()
        greeter = await rt.spawn(Greeter, "Hello", name="greeter")
        crasher = await rt.spawn(Crasher, name="crasher")
        out.append(
            f"spawned 2 actors in {1e3 * (time.perf_counter() - t0):.0f} ms: "
            f"host pid {os.getpid()}, greeter pid {rt.process_id(greeter)}, "
            f"sandbox: {rt.isolation(greeter)}"
        )
        out.append(f"call:     {await greeter.greet('world')}")
        # Sync and async methods cost differently (a sync one hops to a worker
        # thread and back), so each is timed and labelled on its own.
        n = 500
        timed = (
            ("async method", greeter.peek),
            ("sync method (worker thread)", greeter.count_calls),
        )
        for label, method in timed:
            times: list[float] = []
            for _ in range(n):
                t0 = time.perf_counter()
                await method()
                times.append(time.perf_counter() - t0)
            out.append(
                f"latency:  {label}: {1e6 * statistics.median(times):.0f} us per call "
                f"(median of {n} sequential calls)"
            )
        items = [i async for i in greeter.countdown(5)]
        out.append(f"stream:   {items}")
        try:
            await crasher.divide(1, 0)
        except ZeroDivisionError as exc:
            out.append(f"error:    ZeroDivisionError raised in the actor arrives as itself: {exc}")
        try:
            await crasher.crash()
        except ActorDiedError as exc:
            out.append(f"crash:    {exc}")
        out.append(f"alive:    greeter still answers: {await greeter.greet('again')}")
        await greeter.stop()
    out.append("stopped:  every actor stopped, runtime directory removed")


def run_demo() -> int:
    out: list[str] = []
    anyio.run(_demo, out)
    print("pyisolate demo")
    print("--------------")
    for line in out:
        print(line)
    return 0
