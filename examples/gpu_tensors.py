"""CUDA tensors between actors by CUDA IPC: zero-copy on one GPU.

A producer actor makes a tensor on the GPU and passes it to a consumer actor.
With ``PYISOLATE_ENABLE_CUDA_IPC=1`` (set below, before the runtime starts,
so that every actor gets it) the tensor travels as a CUDA IPC handle: the
consumer maps the producer's memory and nothing is copied. Three checks show
it, each against a second producer whose tensors are staged through host
memory (CUDA IPC off for it, GPU passthrough on through its sandbox policy):

* the consumer's write reaches the producer (CUDA IPC shares memory
  read-write, which is why it is off by default: enable it only between
  actors you trust);
* the consumer's own GPU allocations do not grow by the tensor's size;
* the receive time: a handle against a copy to and from the host.

Without a GPU the same code runs on CPU tensors and says so: the producer's
tensor lives in shared memory (``pyisolate.transport.empty``); the consumer
reads it without a copy, and its writes stay private (copy-on-write).

Fork templates and CUDA: a template must never initialise CUDA (forking a
process with a CUDA context is unsafe; pyisolate's template refuses to fork
then, and the actor starts cold). Import torch at module level if you like,
and initialise CUDA in the actor's constructor, as here: each forked actor
then makes its own context.

    python examples/gpu_tensors.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

import anyio
import torch

import pyisolate
from pyisolate import SandboxPolicy
from pyisolate import transport as T

MiB = 1 << 20
CUDA = torch.cuda.is_available()
DEVICE = "cuda:0" if CUDA else "cpu"
NBYTES = (64 if CUDA else 16) * MiB


def _sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


def _allocated() -> int:
    """This process's own device allocations (an IPC mapping is not one)."""
    return torch.cuda.memory_allocated() if CUDA else 0


class Producer(pyisolate.Actor):
    """Makes one tensor and sends it to a consumer, timing the call."""

    def __init__(self, shared: bool) -> None:
        if CUDA:
            torch.cuda.init()  # type: ignore[no-untyped-call]  # here, in the actor: never in a template
        numel = NBYTES // 4
        if CUDA:
            self.t = torch.ones(numel, device=DEVICE)
        elif shared:
            self.t = T.empty(numel, dtype=torch.float32)  # shared memory: no copy
            self.t.fill_(1.0)
        else:
            self.t = torch.ones(numel)  # an ordinary tensor: one copy per send
        _sync()

    async def send_to(self, consumer: pyisolate.ActorRef, reps: int) -> dict[str, Any]:
        self.t[0] = 1.0
        _sync()
        first = await consumer.receive(self.t, True)  # it writes 42 into element 0
        seen = float(self.t[0]) == 42.0
        samples = []
        for _ in range(reps):
            start = time.perf_counter()
            await consumer.receive(self.t, False)
            samples.append(time.perf_counter() - start)
        return {**first, "write_seen": seen, "median_s": statistics.median(samples)}


class Consumer(pyisolate.Actor):
    """Receives tensors the way a model would: reads, and sometimes writes."""

    def __init__(self) -> None:
        if CUDA:
            torch.cuda.init()  # type: ignore[no-untyped-call]
            torch.zeros(1, device=DEVICE)  # the context and allocator exist before any receive
        self.base = _allocated()

    async def receive(self, t: torch.Tensor, write: bool) -> dict[str, Any]:
        grown = _allocated() - self.base  # before anything else allocates
        info = {
            "device": str(t.device),
            "grown": grown,
            "shared": bool(not CUDA and T.is_shared(t)),
            "intact": int(t[1:].sum(dtype=torch.float64)) == t.numel() - 1,
        }
        if write:
            t[0] = 42.0
            _sync()
        return info


def _report(label: str, r: dict[str, Any]) -> None:
    print(
        f"{label}: on {r['device']}, values intact: {'yes' if r['intact'] else 'NO'}, "
        f"consumer's write seen by the producer: {'yes' if r['write_seen'] else 'no'}, "
        f"consumer's GPU memory grew by {r['grown'] // MiB} MiB, "
        f"receive {r['median_s'] * 1e3:.2f} ms (median)"
    )


async def main() -> int:
    if CUDA:
        os.environ["PYISOLATE_ENABLE_CUDA_IPC"] = "1"  # before the runtime: actors inherit it
        print(f"device: {DEVICE} ({torch.cuda.get_device_name(0)}), {NBYTES // MiB} MiB tensors")
    else:
        print(
            "device: cpu (no CUDA available here: the same code path with CPU tensors "
            f"in shared memory), {NBYTES // MiB} MiB tensors"
        )
    async with pyisolate.Runtime() as rt:
        consumer = await rt.spawn(Consumer, name="consumer")
        ipc = await rt.spawn(Producer, True, name="producer")
        # The contrast: CUDA IPC off for this producer; the GPU still reachable.
        staged_opts = pyisolate.SpawnOptions(env={"PYISOLATE_ENABLE_CUDA_IPC": "0"})
        staged = await rt.spawn(
            Producer,
            False,
            name="staged",
            options=staged_opts,
            sandbox=SandboxPolicy(gpu=CUDA),
        )
        direct = await ipc.send_to(consumer, 5)
        copied = await staged.send_to(consumer, 5)

    ok = direct["intact"] and copied["intact"] and not copied["write_seen"]
    if CUDA:
        _report("CUDA IPC", direct)
        _report("staged through host memory", copied)
        zero_copy = direct["write_seen"] and direct["grown"] == 0 and copied["grown"] >= NBYTES
        ok = ok and zero_copy
        print(f"zero-copy: {'yes' if zero_copy else 'NO'}")
        print(f"speed-up over staging: {copied['median_s'] / direct['median_s']:.1f}x")
    else:
        print(
            f"shared memory: values intact: {'yes' if direct['intact'] else 'NO'}, "
            f"received as shared memory (no copy): {'yes' if direct['shared'] else 'NO'}, "
            f"consumer's write seen by the producer: {'yes' if direct['write_seen'] else 'no'} "
            "(copy-on-write)"
        )
        print(
            f"ordinary tensor: values intact: {'yes' if copied['intact'] else 'NO'}, "
            f"consumer's write seen by the producer: {'yes' if copied['write_seen'] else 'no'}"
        )
        print(
            f"receive: shared {direct['median_s'] * 1e3:.2f} ms, "
            f"ordinary {copied['median_s'] * 1e3:.2f} ms (median)"
        )
        ok = ok and direct["shared"] and not direct["write_seen"]
    print("done" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(anyio.run(main))
