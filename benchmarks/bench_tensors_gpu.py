"""The GPU rows of ``python -m benchmarks tensors`` (printed only where CUDA is).

One run, side by side, medians:

* consume (the actor returns ``float(t.sum())``) and roundtrip (the actor
  returns ``t * 2``, the host sums it) of a float32 CUDA tensor of 64 MiB and
  1 GiB, through pyisolate's CUDA IPC (``PYISOLATE_ENABLE_CUDA_IPC=1``),
  against torch.multiprocessing's CUDA IPC (a Queue to a spawned process)
  and the same work in-process;
* spawn to first reply of an actor that initialises CUDA: cold, and forked
  from a warm template. Templates and CUDA coexist this way: the template
  imports the actor's module (torch included) but never initialises CUDA
  (forking a process with a CUDA context is unsafe, and the template refuses
  to fork one); each forked actor initialises CUDA itself, in its
  constructor (see ``benchmarks/gpu_actors.py``);
* GPU memory in use (device-wide, from ``torch.cuda.mem_get_info``) for N
  actors that share one model's weights by CUDA IPC, against each loading
  its own copy, beside what their CUDA contexts alone take.

Zero-copy shows as a consume time that does not grow with the size beyond
the sum itself; a copy would add the tensor's size over the copy bandwidth.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from typing import TYPE_CHECKING, Any

import pyisolate

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

MiB = 1 << 20
SIZES = (64 * MiB, 1024 * MiB)
ENABLE = "PYISOLATE_ENABLE_CUDA_IPC"


def unavailable_reason() -> str | None:
    """None where the GPU rows can run; else why not."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.backends.cuda.is_built():
        return f"this torch ({torch.__version__}) is built without CUDA"
    if not torch.cuda.is_available():
        return "no CUDA device is visible (torch.cuda.is_available() is False)"
    return None


def _reps(nbytes: int) -> int:
    return 20 if nbytes <= 64 * MiB else 8


def _sync_time(fn: Callable[[], Any], reps: int) -> float:
    import torch

    fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


async def _async_time(fn: Callable[[], Awaitable[Any]], reps: int) -> float:
    await fn()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _in_process(results: dict[str, dict[int, float]]) -> None:
    import torch

    for n in SIZES:
        t = torch.rand(n // 4, device="cuda")
        reps = _reps(n)
        results["in-process t.sum()"][n] = _sync_time(lambda t=t: float(t.sum()), reps)
        results["in-process (t * 2).sum()"][n] = _sync_time(lambda t=t: float((t * 2).sum()), reps)
        del t


def _torch_mp(results: dict[str, dict[int, float]]) -> None:
    import torch
    import torch.multiprocessing as tmp

    from benchmarks.gpu_actors import mp_child

    ctx = tmp.get_context("spawn")
    requests, answers = ctx.Queue(), ctx.Queue()
    child = ctx.Process(target=mp_child, args=(requests, answers), daemon=True)
    child.start()
    try:
        for n in SIZES:
            t = torch.rand(n // 4, device="cuda")
            reps = _reps(n)

            def consume(t: Any = t) -> float:
                requests.put(("sum", t))
                return float(answers.get(timeout=60))

            def roundtrip(t: Any = t) -> float:
                requests.put(("double", t))
                out = answers.get(timeout=60)
                value = float(out.sum())
                del out
                return value

            results["torch.mp CUDA IPC consume"][n] = _sync_time(consume, reps)
            results["torch.mp CUDA IPC roundtrip"][n] = _sync_time(roundtrip, reps)
            del t
            gc.collect()
    finally:
        requests.put(None)
        child.join(30)
        if child.is_alive():
            child.kill()
            child.join(5)
        requests.close()
        answers.close()


async def _through_actors(results: dict[str, dict[int, float]], sandbox: Any) -> None:
    import torch

    from benchmarks.gpu_actors import GpuWorker

    async with pyisolate.Runtime(sandbox=sandbox) as rt:
        ref = await rt.spawn(GpuWorker, name="gpu-summer")
        await ref.ready()
        for n in SIZES:
            t = torch.rand(n // 4, device="cuda")
            reps = _reps(n)

            async def roundtrip(t: Any = t) -> float:
                out = await ref.double(t)
                value = float(out.sum())
                del out
                return value

            results["pyisolate consume"][n] = await _async_time(lambda t=t: ref.sum(t), reps)
            results["pyisolate roundtrip"][n] = await _async_time(roundtrip, reps)
            del t
            gc.collect()


async def _spawns(sandbox: Any, n: int) -> dict[str, Any]:
    from benchmarks.gpu_actors import GpuWorker

    out: dict[str, Any] = {"cold": [], "template": []}
    async with pyisolate.Runtime(sandbox=sandbox) as rt:
        for kind in ("cold", "template"):
            for _ in range(n + (kind == "template")):  # the first starts the template
                opts = pyisolate.SpawnOptions(template=kind == "template")
                start = time.perf_counter()
                ref = await rt.spawn(GpuWorker, options=opts)
                await ref.ready()
                out[kind].append(time.perf_counter() - start)
                await ref.stop()
    return out


def _used() -> int:
    import torch

    gc.collect()
    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info()
    return int(total - free)


async def _settle() -> int:
    import anyio

    await anyio.sleep(0.5)  # releases and frees in the actors
    return _used()


async def _memory(sandbox: Any, actors: int, count: int, numel: int) -> dict[str, float]:
    import torch

    from benchmarks.gpu_actors import GpuWorker

    base = _used()
    async with pyisolate.Runtime(sandbox=sandbox) as rt:
        opts = pyisolate.SpawnOptions(template=True)
        refs = [await rt.spawn(GpuWorker, options=opts) for _ in range(actors)]
        for ref in refs:
            await ref.ready()
        contexts = await _settle()
        weights = [torch.full((numel,), 0.5, device="cuda") for _ in range(count)]
        for ref in refs:
            await ref.hold(weights)
        shared = await _settle()
        for ref in refs:
            await ref.drop()
        del weights
        torch.cuda.empty_cache()
        dropped = await _settle()
        for ref in refs:
            await ref.load_own(count, numel)
        own = await _settle()
    return {
        "contexts": (contexts - base) / MiB,
        "shared": (shared - contexts) / MiB,
        "own": (own - dropped) / MiB,
        "dropped": (dropped - contexts) / MiB,
    }


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e3:9.3f} ms"


def run(sandbox: Any = None, actors: int = 4, weights_mib: int = 512) -> dict[str, float]:
    """Measure and print the GPU rows; returns them flat (name: seconds or MiB)."""
    import anyio
    import torch

    sandbox = pyisolate.SandboxMode.AUTO if sandbox is None else sandbox
    previous = os.environ.get(ENABLE)
    os.environ[ENABLE] = "1"  # before any runtime: its actors inherit it
    try:
        torch.cuda.init()
        name = torch.cuda.get_device_name(0)
        rows = [
            "pyisolate consume",
            "torch.mp CUDA IPC consume",
            "in-process t.sum()",
            "pyisolate roundtrip",
            "torch.mp CUDA IPC roundtrip",
            "in-process (t * 2).sum()",
        ]
        results: dict[str, dict[int, float]] = {r: {} for r in rows}
        _in_process(results)
        _torch_mp(results)
        anyio.run(_through_actors, results, sandbox)
        spawns = anyio.run(_spawns, sandbox, 3)
        per = 64 * MiB
        memory = anyio.run(_memory, sandbox, actors, max(1, weights_mib * MiB // per), per // 4)
    finally:
        if previous is None:
            os.environ.pop(ENABLE, None)
        else:
            os.environ[ENABLE] = previous

    base_of = {
        "pyisolate consume": "in-process t.sum()",
        "torch.mp CUDA IPC consume": "in-process t.sum()",
        "pyisolate roundtrip": "in-process (t * 2).sum()",
        "torch.mp CUDA IPC roundtrip": "in-process (t * 2).sum()",
    }
    print(f"\nCUDA tensors through an actor on {name} (medians; ratio to the in-process row named)")
    print(f"{'':30}" + "".join(f"{f'{n // MiB} MiB':>24}" for n in SIZES))
    for row in rows:
        cells = []
        for n in SIZES:
            value = results[row][n]
            base = base_of.get(row)
            ratio = f"{value / results[base][n]:7.1f}x" if base else " " * 8
            cells.append(f"{_fmt(value)} {ratio}")
        print(f"{row:30}" + "".join(f"{c:>24}" for c in cells))
    cold, warm = spawns["cold"], spawns["template"]
    print(
        f"spawn of an actor that initialises CUDA, to first reply: cold "
        f"{statistics.median(cold) * 1e3:.0f} ms, from the template "
        f"{statistics.median(warm[1:]) * 1e3:.0f} ms (first, starting the template: "
        f"{warm[0] * 1e3:.0f} ms); medians of {len(cold)}"
    )
    print(
        f"GPU memory, {actors} actors and {weights_mib} MiB of weights: CUDA contexts "
        f"{memory['contexts'] / actors:.0f} MiB per actor; weights shared by CUDA IPC "
        f"+{memory['shared']:.0f} MiB in all; each loading its own +{memory['own']:.0f} MiB "
        f"in all (after dropping the shared ones: {memory['dropped']:+.0f} MiB)"
    )
    flat = {f"gpu {row} {n // MiB}MiB": results[row][n] for row in rows for n in SIZES}
    flat.update(
        {
            "gpu spawn cold": statistics.median(cold),
            "gpu spawn template": statistics.median(warm[1:]),
            **{f"gpu memory {k} MiB": v for k, v in memory.items()},
        }
    )
    return flat
