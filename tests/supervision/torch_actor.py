"""Actors whose module imports torch at import time: the template preloads
it, so a forked actor does not pay for ``import torch``."""

from __future__ import annotations

from typing import Any

import torch
from sup_actors import Worker

import pyisolate
import pyisolate.transport


class TorchWorker(pyisolate.Actor):
    def double(self, values: list[float]) -> list[float]:
        return (torch.tensor(values) * 2).tolist()  # type: ignore[no-any-return]

    def cuda_initialized(self) -> bool:
        return bool(torch.cuda.is_initialized())

    def torch_version(self) -> str:
        return str(torch.__version__)


class TensorWorker(Worker):
    """The supervision Worker plus tensor methods (the chaos test's load)."""

    def scale(self, t: Any, k: float) -> Any:
        return t * k

    def arange(self, n: int, shared: bool) -> Any:
        """``0 .. n-1`` as float32, in shared memory when ``shared``."""
        if not shared:
            return torch.arange(n, dtype=torch.float32)
        out = pyisolate.transport.empty(n, dtype=torch.float32)
        torch.arange(n, dtype=torch.float32, out=out)
        return out

    async def tensors(self, n: int, size: int) -> Any:
        for i in range(n):
            yield torch.full((size,), float(i))
