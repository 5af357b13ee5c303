"""Streaming: a generator method in an actor becomes an async iterator here.

At most ``window`` items are in flight, so a fast producer waits for a slow
consumer. Leaving the loop early closes the remote generator.

Run: python examples/streaming.py
"""

from __future__ import annotations

import anyio

import pyisolate


class Squares(pyisolate.Actor):
    async def squares(self, n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            yield i * i

    def naturals(self):  # type: ignore[no-untyped-def]
        # A plain generator streams too (advanced on a worker thread).
        i = 0
        while True:
            yield i
            i += 1


async def main() -> None:
    async with pyisolate.Runtime() as rt:
        actor = await rt.spawn(Squares)
        print("squares:", [x async for x in actor.squares(6)])
        total = 0
        async with actor.stream("naturals", window=4) as stream:
            async for x in stream:
                if x > 100:
                    break
                total += x
        print("sum of 0..100:", total)
        await actor.stop()


if __name__ == "__main__":
    anyio.run(main)
