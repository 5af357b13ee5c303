"""Actors for the GPU rows of ``python -m benchmarks tensors``.

This module imports torch at import time and never initialises CUDA there:
a fork template preloads the module (so a forked actor pays no ``import
torch``) and stays free of a CUDA context, which would make forking unsafe
(the template then refuses to fork and the actor starts cold). Each actor
initialises CUDA itself, in its constructor, after the fork.
"""

from __future__ import annotations

import gc
import os
from typing import Any

import torch

import pyisolate


class GpuWorker(pyisolate.Actor):
    """Consumes CUDA tensors the way a model would, or holds weights."""

    def __init__(self) -> None:
        torch.set_num_threads(1)
        torch.cuda.init()
        torch.zeros(1, device="cuda")  # the context and the caching allocator
        self.weights: list[Any] = []

    async def ready(self) -> int:
        return os.getpid()

    async def sum(self, t: Any) -> float:
        return float(t.sum())

    async def double(self, t: Any) -> Any:
        return t * 2

    async def hold(self, weights: list[Any]) -> int:
        """Keep weights received from the host (shared by CUDA IPC)."""
        self.weights = list(weights)
        return sum(w.numel() * w.element_size() for w in self.weights)

    async def load_own(self, count: int, numel: int) -> int:
        """Load a private copy of the weights (as if read from disk)."""
        self.weights = [torch.full((numel,), 0.5, device="cuda") for _ in range(count)]
        torch.cuda.synchronize()
        return sum(w.numel() * w.element_size() for w in self.weights)

    async def drop(self) -> None:
        self.weights = []
        gc.collect()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def mp_child(requests: Any, answers: Any) -> None:
    """torch.multiprocessing's CUDA IPC, the baseline: ``("sum", t)`` answers
    ``float(t.sum())``; ``("double", t)`` answers ``t * 2`` (by CUDA IPC back)."""
    torch.set_num_threads(1)
    torch.cuda.init()
    while (request := requests.get()) is not None:
        op, t = request
        answers.put(float(t.sum()) if op == "sum" else t * 2)
        del t, request
