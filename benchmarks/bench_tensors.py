"""Moving float32 tensors to an actor and back, through the runtime.

One run, side by side, medians and ratios to in-process baselines:

* consume: the host sends a tensor, the actor returns ``float(t.sum())``;
  "fresh" is an ordinary tensor (one copy into shared memory per call),
  "shared" re-sends a ``pyisolate.transport.empty`` tensor (no copy);
* roundtrip: the actor returns ``t * 2``, the host reads every page of it;
* copies: peak unique memory of host + actor during the 512 MiB roundtrip
  (sum of Pss from /proc/PID/smaps_rollup, which counts a shared page once
  overall) over the payload, counting the input;
* baselines: in-process ``t.sum()``, ``t * 2``, ``dst.copy_(src)``; a
  torch.multiprocessing Queue to a process that sums; raw pyzmq frames (ipc://)
  to a process that sums them with numpy.

Host and actor each get one compute thread (the actor's default on 2 cores),
and so do the baselines.

    python -m benchmarks tensors            # 1 MiB and 64 MiB, < 40 s
    python -m benchmarks tensors --big      # adds 512 MiB and the copies, < 2 min
    python -m benchmarks tensors --gpu-only # only the GPU rows (bench_tensors_gpu)

Where CUDA is available the GPU rows follow (``benchmarks/bench_tensors_gpu.py``:
CUDA IPC against torch.multiprocessing and in-process, CUDA actor spawns, GPU
memory of actors sharing weights); elsewhere the reason is printed instead.
``--gpu`` insists on them (an error without CUDA), ``--no-gpu`` leaves them out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pyisolate

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

MiB = 1 << 20


class Summer(pyisolate.Actor):
    """The actor under test: consumes tensors the way a model would."""

    def __init__(self) -> None:
        import torch

        torch.set_num_threads(1)

    async def sum(self, t: Any) -> float:
        return float(t.sum())

    async def double(self, t: Any) -> Any:
        return t * 2

    async def ready(self) -> int:
        return os.getpid()


ZMQ_CHILD = r"""
import sys, numpy as np, zmq
z = zmq.Context().socket(zmq.PAIR); z.connect(sys.argv[1])
while True:
    frame = z.recv(copy=False)
    if len(frame) == 0:
        break
    z.send(str(float(np.frombuffer(frame.buffer, dtype=np.float32).sum())).encode())
"""


def _mpq_child(queue: Any, results: Any) -> None:
    import torch

    torch.set_num_threads(1)
    while (t := queue.get()) is not None:
        results.put(float(t.sum()))
        del t


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def _time_sync(fn: Callable[[], Any], reps: int) -> float:
    fn()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return _median(samples)


async def _time_async(fn: Callable[[], Awaitable[Any]], reps: int) -> float:
    await fn()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return _median(samples)


def _pss(pid: int) -> int:
    """Proportional set size of ``pid`` in bytes (shared pages split among
    their mappers, so a sum over processes counts each page once)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class _PeakSampler:
    """Samples the Pss sum of ``pids`` on a thread until stopped; keeps the peak."""

    def __init__(self, pids: list[int], interval: float = 0.002) -> None:
        self.pids, self.interval = pids, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def total(self) -> int:
        return sum(_pss(p) for p in self.pids)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.total())
            time.sleep(self.interval)

    def __enter__(self) -> _PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.peak = max(self.peak, self.total())
        self._stop.set()
        self._thread.join()


def _touch(t: Any) -> float:
    """Read one float of every page (every page faulted in)."""
    return float(t.view(-1)[::1024].sum())


def _reps(nbytes: int) -> int:
    return 40 if nbytes <= MiB else 8 if nbytes <= 64 * MiB else 3


async def _through_actors(
    sizes: list[int], results: dict[str, dict[int, float]], big: bool
) -> dict[str, float]:
    import gc

    import torch

    from pyisolate import transport as T

    copies: dict[str, float] = {}
    async with pyisolate.Runtime() as rt:
        ref = await rt.spawn(Summer, name="summer")
        await ref.ready()
        actor_pid = rt.process_id(ref)
        assert actor_pid is not None
        for n in sizes:
            numel = n // 4
            reps = _reps(n)
            fresh = torch.rand(numel)
            shared = T.empty(numel, dtype=torch.float32)
            shared.copy_(fresh)
            results["consume fresh"][n] = await _time_async(lambda t=fresh: ref.sum(t), reps)
            results["consume shared"][n] = await _time_async(lambda t=shared: ref.sum(t), reps)

            async def roundtrip(t: Any) -> None:
                _touch(await ref.double(t))

            results["roundtrip fresh"][n] = await _time_async(lambda t=fresh: roundtrip(t), reps)
            results["roundtrip shared"][n] = await _time_async(lambda t=shared: roundtrip(t), reps)
            fresh = shared = None
            gc.collect()
        if big:
            n = sizes[-1]
            for kind in ("fresh", "shared"):
                gc.collect()
                await anyio_sleep(0.2)
                sampler = _PeakSampler([os.getpid(), actor_pid])
                base = sampler.total()
                if kind == "fresh":
                    t = torch.rand(n // 4)
                else:
                    t = T.empty(n // 4, dtype=torch.float32)
                    t.uniform_()
                with sampler:
                    out = await ref.double(t)
                    _touch(out)
                copies[kind] = (sampler.peak - base) / n
                del t, out
    return copies


async def anyio_sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)


def _baselines(sizes: list[int], results: dict[str, dict[int, float]]) -> None:
    import multiprocessing as stdmp

    import torch
    import torch.multiprocessing as tmp
    import zmq

    for n in sizes:
        src = torch.rand(n // 4)
        dst = torch.empty_like(src)
        reps = _reps(n)
        results["in-process t.sum()"][n] = _time_sync(lambda src=src: float(src.sum()), reps)
        results["in-process t * 2"][n] = _time_sync(lambda src=src: _touch(src * 2), reps)
        results["in-process copy_"][n] = _time_sync(lambda src=src, dst=dst: dst.copy_(src), reps)
        results["in-process copy_+sum"][n] = _time_sync(
            lambda src=src, dst=dst: float(dst.copy_(src).sum()), reps
        )
        src = dst = None

    # torch.multiprocessing: a fresh (not yet shared) tensor each call
    ctx = tmp.get_context("spawn")
    queue, answers = ctx.Queue(), ctx.Queue()
    child = ctx.Process(target=_mpq_child, args=(queue, answers), daemon=True)
    child.start()
    try:
        queue.put(torch.zeros(1))
        answers.get()
        for n in sizes:
            reps = _reps(n)
            pool = [torch.rand(n // 4) for _ in range(min(reps + 1, max(2, (1024 * MiB) // n)))]
            samples = []
            for i in range(reps + 1):
                t = pool[i % len(pool)].clone() if i >= len(pool) else pool[i]
                start = time.perf_counter()
                queue.put(t)
                answers.get()
                samples.append(time.perf_counter() - start)
                del t
            pool.clear()
            results["torch.mp Queue (fresh)"][n] = _median(samples[1:])
    finally:
        queue.put(None)
        child.join(10)
        if child.is_alive():
            child.kill()
        queue.close()
        answers.close()
    del stdmp

    # raw pyzmq frames over ipc://
    import tempfile

    zctx = zmq.Context()
    sock = zctx.socket(zmq.PAIR)
    path = os.path.join(tempfile.mkdtemp(prefix="bench-zmq-"), "s")
    sock.bind(f"ipc://{path}")
    proc = subprocess.Popen([sys.executable, "-c", ZMQ_CHILD, f"ipc://{path}"])
    try:
        for n in sizes:
            t = torch.rand(n // 4)
            view = memoryview(t.numpy()).cast("B")

            def send(view: memoryview = view) -> None:
                sock.send(view, copy=False)
                sock.recv()

            results["raw pyzmq frames"][n] = _time_sync(send, _reps(n))
    finally:
        sock.send(b"")
        proc.wait(10)
        sock.close(linger=0)
        zctx.term()
        os.unlink(path)
        os.rmdir(os.path.dirname(path))


def _fmt_time(seconds: float) -> str:
    return f"{seconds * 1e3:9.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:9.1f} us"


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks tensors", description=__doc__)
    parser.add_argument("--big", action="store_true", help="add 512 MiB and the copies")
    gpu = parser.add_mutually_exclusive_group()
    gpu.add_argument("--gpu", action="store_true", help="the GPU rows, or an error without CUDA")
    gpu.add_argument("--no-gpu", action="store_true", help="leave the GPU rows out")
    gpu.add_argument("--gpu-only", action="store_true", help="only the GPU rows")
    parser.add_argument(
        "--sandbox",
        choices=("auto", "disabled"),
        default="auto",
        help="the GPU rows' actors: the runtime's AUTO sandbox, or none",
    )
    args = parser.parse_args(argv)

    from benchmarks import bench_tensors_gpu

    reason = bench_tensors_gpu.unavailable_reason()
    if (args.gpu or args.gpu_only) and reason is not None:
        parser.error(f"the GPU rows cannot run: {reason}")
    flat: dict[str, float] = {}
    if not args.gpu_only:
        flat.update(_cpu_rows(args.big))
    if args.no_gpu:
        print("GPU rows: left out (--no-gpu)")
    elif reason is not None:
        print(f"GPU rows: skipped: {reason}")
    else:
        mode = pyisolate.SandboxMode.DISABLED if args.sandbox == "disabled" else None
        flat.update(bench_tensors_gpu.run(sandbox=mode))
    return flat


def _cpu_rows(big: bool) -> dict[str, float]:
    import anyio
    import torch

    torch.set_num_threads(1)
    sizes = [MiB, 64 * MiB] + ([512 * MiB] if big else [])
    rows = [
        "consume fresh",
        "consume shared",
        "roundtrip fresh",
        "roundtrip shared",
        "in-process t.sum()",
        "in-process t * 2",
        "in-process copy_",
        "in-process copy_+sum",
        "torch.mp Queue (fresh)",
        "raw pyzmq frames",
    ]
    results: dict[str, dict[int, float]] = {r: {} for r in rows}
    started = time.perf_counter()
    _baselines(sizes, results)
    copies = anyio.run(_through_actors, sizes, results, big)

    base_of = {
        "consume fresh": "in-process copy_+sum",
        "consume shared": "in-process t.sum()",
        "roundtrip fresh": "in-process t * 2",
        "roundtrip shared": "in-process t * 2",
        "torch.mp Queue (fresh)": "in-process copy_+sum",
        "raw pyzmq frames": "in-process copy_+sum",
    }
    print("float32 tensors through an actor (medians; ratio to the in-process baseline named)")
    header = f"{'':24}" + "".join(f"{f'{n // MiB} MiB':>26}" for n in sizes)
    print(header)
    for row in rows:
        cells = []
        for n in sizes:
            value = results[row][n]
            base = base_of.get(row)
            ratio = f"{value / results[base][n]:6.2f}x" if base else " " * 7
            cells.append(f"{_fmt_time(value)} {ratio}  {n / value / 1e9:5.1f}GB/s")
        print(f"{row:24}" + "".join(f"{c:>26}" for c in cells))
    print(
        "ratios: consume fresh, torch.mp, pyzmq vs copy_+sum; consume shared vs t.sum(); "
        "roundtrips vs t * 2 (all with one page read per page of the result)"
    )
    if copies:
        print(
            f"copies, 512 MiB roundtrip (peak host+actor Pss / payload, input included): "
            f"fresh {copies['fresh']:.2f}, shared {copies['shared']:.2f} "
            f"({copies['shared'] - 1:.2f} beyond the input)"
        )

    def target(name: str, ok: bool, detail: str) -> None:
        print(f"  [{'PASS' if ok else 'MISS'}] {name}: {detail}")

    print("targets:")
    one = MiB
    r1 = results["consume fresh"][one]
    target(
        "1 MiB consume faster than raw pyzmq frames and torch.mp",
        r1 < results["raw pyzmq frames"][one] and r1 < results["torch.mp Queue (fresh)"][one],
        f"{_fmt_time(r1).strip()} vs pyzmq {_fmt_time(results['raw pyzmq frames'][one]).strip()}, "
        f"torch.mp {_fmt_time(results['torch.mp Queue (fresh)'][one]).strip()}",
    )
    big = 512 * MiB
    if big in sizes:
        shared = results["consume shared"][big] / results["in-process t.sum()"][big]
        target(
            "re-sent shared 512 MiB consume <= 1.1x in-process sum", shared <= 1.1, f"{shared:.2f}x"
        )
        fresh = results["consume fresh"][big] / results["in-process copy_+sum"][big]
        target("fresh 512 MiB consume <= 1.2x (copy_+sum)", fresh <= 1.2, f"{fresh:.2f}x")
        rt = results["roundtrip fresh"][big] / results["in-process t * 2"][big]
        target("fresh 512 MiB roundtrip <= 1.5x in-process t*2", rt <= 1.5, f"{rt:.2f}x")
        target(
            "copies, fresh 512 MiB roundtrip <= 2.0",
            copies["fresh"] <= 2.0,
            f"{copies['fresh']:.2f}",
        )
        target(
            "copies beyond the input, shared 512 MiB roundtrip <= 1.0",
            copies["shared"] - 1 <= 1.0,
            f"{copies['shared'] - 1:.2f}",
        )
    else:
        print("  (512 MiB targets need --big)")
    print(f"total {time.perf_counter() - started:.0f} s")
    flat = {f"{row} {n // MiB}MiB": results[row][n] for row in rows for n in sizes}
    flat.update({f"copies {k}": v for k, v in copies.items()})
    return flat


if __name__ == "__main__":
    main(sys.argv[1:])
