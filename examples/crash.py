"""A crash becomes an error: an actor that dies mid-call raises ActorDiedError in
the caller, and the host (and every other actor) carries on.

Run: python examples/crash.py
"""

from __future__ import annotations

import os

import anyio

import pyisolate


class Fragile(pyisolate.Actor):
    def divide(self, a: float, b: float) -> float:
        return a / b

    def crash(self) -> None:
        os._exit(3)  # as a segfaulting extension would: no exception, no cleanup


async def main() -> None:
    async with pyisolate.Runtime() as rt:
        fragile = await rt.spawn(Fragile)
        survivor = await rt.spawn(Fragile)
        try:
            await fragile.divide(1, 0)
        except ZeroDivisionError as exc:
            print("remote exception, same type:", type(exc).__name__)
        try:
            await fragile.crash()
        except pyisolate.ActorDiedError as exc:
            print("the actor died:", exc, "| exit code", exc.exitcode)
        print("the other actor still answers:", await survivor.divide(10, 4))


if __name__ == "__main__":
    anyio.run(main)
