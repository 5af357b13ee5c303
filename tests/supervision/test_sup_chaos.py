"""Chaos: supervised actors under mixed load while a nemesis kills and freezes them.

The load mixes plain calls, streams and tensor messages: torch tensors sent
and returned (small ones inline, large ones as memfd fds), tensors allocated
in shared memory (``pyisolate.transport.empty``) on either side, and streams
of tensors. Asserts that every call ends, within its timeout, with its
correct result (tensors compared element by element) or a typed error; that
service resumes after the faults; and (the root conftest's leak check) that
no process, fd, runtime directory or shared-memory segment is left behind.
The actors run in the runtime's default sandbox, as in production.

Runs ``PYISOLATE_CHAOS_SECONDS`` (default 8) per backend; the benchmark
(``benchmarks/bench_supervision.py --chaos SECONDS``) runs it longer.
"""

from __future__ import annotations

import gc
import os
import random
import signal
from typing import Any

import anyio
import pytest

import pyisolate
from pyisolate.supervision import ChildSpec, Heartbeat, Supervisor

pytestmark = pytest.mark.anyio

CALL_TIMEOUT = 5.0
SLACK = 1.5  # scheduling on a loaded 2-core machine
TYPED = (pyisolate.ActorError, pyisolate.ProtocolError, TimeoutError)
BIG = 40_000  # float32 elements: 160 KB, past the inline threshold (memfd fds)
OPS = ("echo", "slow", "stream", "tensor", "shared", "produce", "tensor_stream")


async def _one_op(ref: Any, op: str, n: int, rng: random.Random) -> None:
    """One operation and the check of its result; raises a typed error or
    AssertionError."""
    import torch

    if op == "echo":
        assert await ref.echo(n, timeout=CALL_TIMEOUT) == n
    elif op == "slow":
        assert await ref.slow_echo(n, 0.02, timeout=CALL_TIMEOUT) == n
    elif op == "stream":
        got: list[Any] = []
        with anyio.fail_after(CALL_TIMEOUT + SLACK):
            try:
                async for item in ref.stream("numbers", n % 20, timeout=CALL_TIMEOUT):
                    got.append(item)
            finally:
                assert got == list(range(len(got)))  # a correct prefix
        assert got == list(range(n % 20))
    elif op == "tensor":
        size = rng.choice((7, 1000, BIG))
        t = torch.arange(size, dtype=torch.float32) + n
        out = await ref.scale(t, 2.0, timeout=CALL_TIMEOUT)
        assert torch.equal(out, t * 2.0)
        assert torch.equal(t, torch.arange(size, dtype=torch.float32) + n)  # untouched
    elif op == "shared":
        t = pyisolate.transport.empty(BIG, dtype=torch.float32)
        torch.arange(BIG, dtype=torch.float32, out=t)
        t += n
        out = await ref.echo(t, timeout=CALL_TIMEOUT)
        assert torch.equal(out, torch.arange(BIG, dtype=torch.float32) + n)
    elif op == "produce":
        size = rng.choice((10, BIG))
        out = await ref.arange(size, rng.random() < 0.5, timeout=CALL_TIMEOUT)
        assert torch.equal(out, torch.arange(size, dtype=torch.float32))
    else:  # a stream of tensors
        count = n % 6
        seen = 0
        with anyio.fail_after(CALL_TIMEOUT + SLACK):
            async for item in ref.stream("tensors", count, BIG // 2, timeout=CALL_TIMEOUT):
                assert torch.equal(item, torch.full((BIG // 2,), float(seen)))
                seen += 1
        assert seen == count


async def run_chaos(
    seconds: float, *, workers: int = 4, clients: int = 6, seed: int | None = None
) -> dict[str, Any]:
    """The chaos scenario; returns its tallies (used by the benchmark too)."""
    rng = random.Random(seed)
    spec = Supervisor(
        intensity=10_000,
        period=1.0,
        heartbeat=Heartbeat(interval=0.2, timeout=0.5, tolerance=2),
        children=[
            ChildSpec(f"w{i}", "torch_actor:TensorWorker", kwargs={"tag": f"w{i}"})
            for i in range(workers)
        ],
    )
    tally: dict[str, Any] = {
        "ok": 0,
        "errors": {},
        "kills": 0,
        "stops": 0,
        "slowest": 0.0,
        "ops": dict.fromkeys(OPS, 0),
    }
    async with pyisolate.Runtime() as rt:
        sup = await rt.supervise(spec)
        refs = [sup.ref(f"w{i}") for i in range(workers)]
        stop = anyio.Event()

        async def client() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                ref = rng.choice(refs)
                op = rng.choice(OPS)
                started = anyio.current_time()
                try:
                    await _one_op(ref, op, n, rng)
                    tally["ok"] += 1
                    tally["ops"][op] += 1
                except TYPED as exc:
                    name = type(exc).__name__
                    tally["errors"][name] = tally["errors"].get(name, 0) + 1
                took = anyio.current_time() - started
                tally["slowest"] = max(tally["slowest"], took)
                assert took <= CALL_TIMEOUT + SLACK, f"a {op} call took {took:.2f} s"

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
        # Service resumes: every child answers again, tensors included (a call
        # may still meet a fault the nemesis left, e.g. a frozen actor not yet
        # detected).
        with anyio.fail_after(20):
            for ref in refs:
                while True:
                    try:
                        await _one_op(ref, "echo", 1, rng)
                        await _one_op(ref, "shared", 2, rng)
                        break
                    except TYPED:
                        await anyio.sleep(0.05)
        tally["restarts"] = sup.stats.restarts
        tally["hangs"] = sup.stats.hangs
        await sup.stop()
    return tally


@pytest.mark.slow
async def test_chaos() -> None:
    pytest.importorskip("torch")
    seconds = float(os.environ.get("PYISOLATE_CHAOS_SECONDS", "8"))
    tally = await run_chaos(seconds)
    # A failed call's error and the frames of its traceback form a cycle that
    # keeps the tensors of those frames (and their memfds) alive until the
    # cycle collector runs: run it before the leak check looks.
    gc.collect()
    assert tally["kills"] + tally["stops"] > 0
    # Service went on between faults; how much depends on the machine's load,
    # so only that it did is asserted (and that it resumed at the end, above).
    assert tally["ok"] > 0
    assert tally["restarts"] >= tally["kills"]
    assert all(tally["ops"].values()), tally["ops"]  # every kind of message went through
    print(tally)
