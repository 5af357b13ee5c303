"""A supervision tree in a dozen lines: a counter that survives being killed.

Run: ``python examples/supervision.py``. The "db" actor is SIGKILLed; its
supervisor forks a new one from the warm template and the same reference
answers again (its state starts afresh: persist what must survive).
"""

from __future__ import annotations

import os
import signal

import anyio

import pyisolate
from pyisolate import ChildSpec, Restart, Strategy, Supervisor


class Counter(pyisolate.Actor):
    def __init__(self, start: int = 0) -> None:
        self.n = start

    async def inc(self, by: int = 1) -> int:
        self.n += by
        return self.n


class Worker(pyisolate.Actor):
    async def work(self, x: int) -> int:
        return x * x


async def main() -> None:
    async with pyisolate.Runtime() as rt:
        sup = await rt.supervise(
            Supervisor(
                strategy=Strategy.ONE_FOR_ONE,
                intensity=3,
                period=5.0,
                children=[
                    ChildSpec("db", Counter, args=(0,), restart=Restart.PERMANENT, shutdown=5.0),
                    ChildSpec("worker", Worker, restart=Restart.TRANSIENT, shutdown="brutal_kill"),
                ],
            )
        )
        db = sup.ref("db")  # stays valid across restarts
        print("db:", await db.inc(), await db.inc())
        os.kill(rt.process_id(db), signal.SIGKILL)  # type: ignore[arg-type]
        await anyio.sleep(0.2)
        print("after the crash, db:", await db.inc(timeout=10))
        print("worker:", await sup.ref("worker").work(7))
        print(sup.count_children(), sup.stats, sep="\n")
        await sup.stop()


if __name__ == "__main__":
    anyio.run(main)
