"""Chaos: supervised actors under mixed load while a nemesis kills and freezes them.

Asserts that every call ends, within its timeout, with its correct result or
a typed error; that service resumes after the faults; and (the root
conftest's leak check) that nothing is left behind. The actors run in the
runtime's default sandbox, as in production.

Runs ``PYISOLATE_CHAOS_SECONDS`` (default 10) per backend; the benchmark
(``benchmarks/bench_supervision.py --chaos SECONDS``) runs it longer.
"""

from __future__ import annotations

import os
import random
import signal
from typing import Any

import anyio
import pytest
from sup_helpers import worker

import pyisolate
from pyisolate.actors._supspec import Heartbeat, Supervisor

pytestmark = pytest.mark.anyio

CALL_TIMEOUT = 5.0
SLACK = 1.5  # scheduling on a loaded 2-core machine
TYPED = (pyisolate.ActorError, pyisolate.ProtocolError, TimeoutError)


async def run_chaos(seconds: float, *, workers: int = 4, clients: int = 6,
                    seed: int | None = None) -> dict[str, Any]:
    """The chaos scenario; returns its tallies (used by the benchmark too)."""
    rng = random.Random(seed)
    spec = Supervisor(intensity=10_000, period=1.0,
                      heartbeat=Heartbeat(interval=0.2, timeout=0.5, tolerance=2),
                      children=[worker(f"w{i}") for i in range(workers)])
    tally: dict[str, Any] = {"ok": 0, "errors": {}, "kills": 0, "stops": 0, "slowest": 0.0}
    async with pyisolate.Runtime() as rt:
        sup = await rt.supervise(spec)
        refs = [sup.ref(f"w{i}") for i in range(workers)]
        tensors = getattr(rt, "transport", None) is not None
        if tensors:
            import numpy as np
        stop = anyio.Event()

        async def one_op(ref: Any, n: int) -> None:
            op = rng.choice(("echo", "slow", "stream", "tensor" if tensors else "echo"))
            if op == "echo":
                assert await ref.echo(n, timeout=CALL_TIMEOUT) == n
            elif op == "slow":
                assert await ref.slow_echo(n, 0.02, timeout=CALL_TIMEOUT) == n
            elif op == "stream":
                got = []
                with anyio.fail_after(CALL_TIMEOUT + SLACK):
                    try:
                        async for item in ref.stream("numbers", n % 20, timeout=CALL_TIMEOUT):
                            got.append(item)
                    finally:
                        assert got == list(range(len(got)))  # a correct prefix
                assert got == list(range(n % 20))
            else:
                array = np.arange(n % 5000, dtype=np.float32)
                assert np.array_equal(await ref.echo(array, timeout=CALL_TIMEOUT), array)

        async def client() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                ref = rng.choice(refs)
                started = anyio.current_time()
                try:
                    await one_op(ref, n)
                    tally["ok"] += 1
                except TYPED as exc:
                    name = type(exc).__name__
                    tally["errors"][name] = tally["errors"].get(name, 0) + 1
                took = anyio.current_time() - started
                tally["slowest"] = max(tally["slowest"], took)
                assert took <= CALL_TIMEOUT + SLACK, f"a call took {took:.2f} s"

        async def nemesis() -> None:
            while not stop.is_set():
                await anyio.sleep(rng.uniform(0.3, 0.8))
                pid = rt.process_id(rng.choice(refs))
                if pid is None:
                    continue
                if rng.random() < 0.7:
                    os.kill(pid, signal.SIGKILL)
                    tally["kills"] += 1
                else:
                    os.kill(pid, signal.SIGSTOP)  # hung: the heartbeat must catch it
                    tally["stops"] += 1

        async with anyio.create_task_group() as tg:
            for _ in range(clients):
                tg.start_soon(client)
            tg.start_soon(nemesis)
            await anyio.sleep(seconds)
            stop.set()
        # Service resumes: every child answers again (a call may still meet a
        # fault the nemesis left, e.g. a frozen actor not yet detected).
        with anyio.fail_after(20):
            for ref in refs:
                while True:
                    try:
                        assert await ref.echo("final", timeout=5) == "final"
                        break
                    except TYPED:
                        await anyio.sleep(0.05)
        tally["restarts"] = sup.stats.restarts
        tally["hangs"] = sup.stats.hangs
        await sup.stop()
    return tally


async def test_chaos() -> None:
    seconds = float(os.environ.get("PYISOLATE_CHAOS_SECONDS", "10"))
    tally = await run_chaos(seconds)
    assert tally["kills"] + tally["stops"] > 0
    assert tally["ok"] > 10 * (tally["kills"] + tally["stops"])
    assert tally["restarts"] >= tally["kills"]
    print(tally)
