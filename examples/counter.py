"""An echo/counter actor: spawn it, call it, cast to it, stop it.

Run: python examples/counter.py
"""

from __future__ import annotations

import anyio

import pyisolate


class Counter(pyisolate.Actor):
    def __init__(self, start: int = 0) -> None:
        self.value = start

    async def inc(self, by: int = 1) -> int:
        self.value += by
        return self.value

    def echo(self, message: str) -> str:
        # A plain method: it runs on a worker thread of the actor process.
        return f"echo: {message}"

    async def get(self) -> int:
        return self.value


async def main() -> None:
    async with pyisolate.Runtime() as rt:
        counter = await rt.spawn(Counter, start=10)
        print(await counter.echo("hello"))
        print("after inc(2):", await counter.inc(2))
        print("after call('inc', 3):", await counter.call("inc", 3))
        await counter.cast("inc", 100)  # no reply
        print("after a cast of 100:", await counter.get())
        await counter.stop()
    print("done")


if __name__ == "__main__":
    anyio.run(main)
