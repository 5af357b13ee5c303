"""Actor classes for the CUDA lifetime tests (tests/transport/test_cuda_lifetime.py).

A plain module, imported by actor processes without pytest. torch is imported
inside the methods: the CPU twins' actors start without it. CUDA is
initialised in the constructor when asked (``cuda=True``), in the actor
itself: never at import, so that a fork template importing this module
holds no CUDA context.
"""

from __future__ import annotations

import gc
import os
from typing import Any

import pyisolate


def _torch() -> Any:
    import torch

    return torch


class Holder(pyisolate.Actor):
    """Receives, holds, writes and makes tensors; reports what it holds."""

    def __init__(self, cuda: bool = False) -> None:
        self.held: list[Any] = []
        self.made: Any = None
        if cuda:
            torch = _torch()
            torch.cuda.init()
            torch.zeros(1, device="cuda")  # its context and allocator, before any receive

    async def pid(self) -> int:
        return os.getpid()

    async def env(self, name: str) -> str | None:
        return os.environ.get(name)

    async def hold(self, t: Any) -> dict[str, Any]:
        self.held.append(t)
        return {"device": str(t.device), "sum": float(t.sum(dtype=_torch().float64))}

    async def held_sums(self) -> list[float]:
        torch = _torch()
        return [float(t.sum(dtype=torch.float64)) for t in self.held]

    async def drop(self) -> int:
        self.held.clear()
        gc.collect()
        return len(self.held)

    async def write(self, t: Any, value: float) -> str:
        t.fill_(value)
        if t.is_cuda:
            _torch().cuda.synchronize()
        return str(t.device)

    async def make(self, numel: int, value: float) -> Any:
        """A tensor on the GPU that this actor produces (and keeps)."""
        torch = _torch()
        self.made = torch.full((numel,), value, device="cuda")
        return self.made

    async def make_shared(self, numel: int, value: float) -> Any:
        """A CPU tensor in shared memory that this actor produces (and keeps)."""
        from pyisolate import transport as T

        self.made = T.empty(numel, dtype=_torch().float32)
        self.made.fill_(value)
        return self.made

    async def give_made(self, other: pyisolate.ActorRef) -> dict[str, Any]:
        """Send what this actor made to ``other``, which holds it."""
        return dict(await other.hold(self.made))

    async def doubled(self, t: Any) -> Any:
        return t * 2

    async def allocated(self) -> int:
        torch = _torch()
        gc.collect()
        torch.cuda.synchronize()
        return int(torch.cuda.memory_allocated())

    async def release_cuda_tokens(self, tokens: list[int]) -> None:
        """Play the consumer's half of the CUDA IPC protocol by hand (the CPU
        twins: the host exported fake device memory for this actor)."""
        from pyisolate._wire._envelope import HOST
        from pyisolate.actors._child import current_server

        server = current_server()
        server.transport.get().send_control(
            HOST, {"t": "cuda_ipc", "op": "release", "tokens": tokens}
        )
