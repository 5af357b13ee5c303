"""Actor classes for the transport tests that go through the runtime.

A plain module (not a test module) so that actor processes import it without
pytest. torch and numpy are imported inside the methods that need them: an
actor that only relays or counts starts without paying torch's import.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pyisolate


def storage_inode(t: Any) -> int | None:
    """The inode of the memfd (or file) behind ``t``'s storage in this process,
    None when it is not backed by a sendable segment (an ordinary tensor)."""
    from pyisolate.transport import _segments

    if hasattr(t, "untyped_storage"):
        address = t.untyped_storage().data_ptr()
    else:  # numpy
        address = t.__array_interface__["data"][0]
    entry = _segments.find_mapping(address=address)
    return None if entry is None else os.fstat(entry.fd).st_ino


def storage_target(t: Any) -> str | None:
    """What the fd behind ``t``'s storage points to (``/memfd:...`` for shm,
    a deleted file in the runtime directory for file), None for inline."""
    from pyisolate.transport import _segments

    entry = _segments.find_mapping(address=t.untyped_storage().data_ptr())
    return None if entry is None else os.readlink(f"/proc/self/fd/{entry.fd}")


class Tensors(pyisolate.Actor):
    """Echoes, inspects, holds and relays tensors."""

    def __init__(self) -> None:
        self.held: list[Any] = []

    async def echo(self, value: Any) -> Any:
        return value

    async def echo_many(self, *args: Any, **kwargs: Any) -> Any:
        return args, kwargs

    async def items(self, value: Any, n: int = 3) -> Any:
        for _ in range(n):
            yield value

    async def total(self, t: Any) -> float:
        return float(t.double().sum())

    async def digest(self, buf: Any) -> tuple[str, int, str]:
        view = memoryview(buf)
        return hashlib.sha256(view).hexdigest(), view.nbytes, type(buf).__name__

    async def inspect(self, t: Any) -> dict[str, Any]:
        from pyisolate import transport as T

        return {
            "inode": storage_inode(t),
            "target": storage_target(t),
            "shared": T.is_shared(t),
            "requires_grad": t.requires_grad,
            "is_leaf": t.is_leaf,
            "grad_fn": t.grad_fn is not None,
            "type": type(t).__name__,
            "sum": float(t.detach().double().sum()),
        }

    async def fill(self, t: Any, value: float) -> float:
        t.fill_(value)  # the receiver's copy-on-write view
        return float(t.double().sum())

    async def fill_and_return(self, t: Any, value: float) -> Any:
        t.fill_(value)
        return t

    async def hold(self, *values: Any) -> int:
        self.held.extend(values)
        return len(self.held)

    async def held_sums(self) -> list[float]:
        return [float(t.double().sum()) for t in self.held]

    async def drop(self) -> None:
        self.held.clear()

    async def relay(self, other: pyisolate.ActorRef, method: str, *args: Any) -> Any:
        return await getattr(other, method)(*args)

    async def relay_stream(self, other: pyisolate.ActorRef, value: Any, n: int) -> list[Any]:
        return [item async for item in other.items(value, n)]

    async def make(self, what: str) -> Any:
        import torch

        torch.manual_seed(0)
        if what == "big":
            return torch.arange(1 << 20, dtype=torch.float32)
        if what == "shared":
            from pyisolate import transport as T

            t = T.empty((256, 1024), dtype=torch.float32)
            t.copy_(torch.arange(t.numel(), dtype=torch.float32).view(256, 1024))
            return t, storage_inode(t)
        if what == "nonleaf":
            return torch.ones(4, requires_grad=True) * 2
        if what == "sparse":
            return torch.eye(3).to_sparse()
        raise ValueError(what)

    async def make_stream(self, n: int) -> Any:
        import torch

        for i in range(n):
            yield {"i": i, "t": torch.full((300, 300), float(i)), "v": torch.arange(i + 1)}

    async def grad(self, t: Any) -> Any:
        """The received leaf still works with autograd on the receiving side."""
        (t * t).sum().backward()
        return t.grad

    async def fd_count(self) -> int:
        return len(os.listdir("/proc/self/fd"))

    async def pid(self) -> int:
        return os.getpid()

    async def cuda_sum(self, t: Any) -> tuple[float, str]:
        return float(t.double().sum()), str(t.device)

    async def cuda_hold(self, t: Any) -> int:
        self.held.append(t)
        return len(self.held)


class Summer(pyisolate.Actor):
    """The benchmark's actor: consumes tensors the way a model would."""

    def __init__(self) -> None:
        import torch

        self.torch = torch

    async def sum(self, t: Any) -> float:
        return float(t.sum())

    async def double(self, t: Any) -> Any:
        return t * 2

    async def ping(self) -> int:
        return os.getpid()
