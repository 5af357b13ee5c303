"""The shared-memory allocator: tensors that are sent with no copy at all.

``empty`` returns a tensor whose storage is a memfd mapped shared; sending it
(or a view of it) passes the fd as is. ``share_memory_`` moves an existing
tensor's data there in place, like ``Tensor.share_memory_``. Writes the owner
makes after sending are visible to receivers that did not write to their
copy-on-write mapping: this is shared memory, as with torch.multiprocessing.
"""

from __future__ import annotations

import math
from typing import Any

from . import _segments

__all__ = ["empty", "empty_array", "is_shared", "share_memory_"]


def empty(shape: Any, *, dtype: Any = None) -> Any:
    """An uninitialised torch tensor in shared memory (default dtype: torch's)."""
    import torch

    dtype = dtype or torch.get_default_dtype()
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    nbytes = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
    if nbytes == 0:
        return torch.empty(shape, dtype=dtype)
    mm = _segments.allocate_shared(nbytes)
    return torch.frombuffer(mm, dtype=dtype).view(shape)


def empty_array(shape: Any, dtype: Any = "float64") -> Any:
    """An uninitialised numpy array in shared memory."""
    import numpy as np

    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes == 0:
        return np.empty(shape, dtype=dtype)
    return np.ndarray(shape, dtype=dtype, buffer=_segments.allocate_shared(nbytes))


def is_shared(t: Any) -> bool:
    """Whether ``t`` (a CPU tensor) would be sent without a copy."""
    if t.device.type != "cpu" or t.numel() == 0:
        return False
    storage = t.untyped_storage()
    entry = _segments.find_mapping(address=storage.data_ptr())
    return entry is not None and entry.is_clean()


def share_memory_(t: Any) -> Any:
    """Move ``t``'s data into shared memory in place (one copy) and return ``t``;
    a no-op for tensors already there, for empty and for non-CPU tensors."""
    import torch

    if t.device.type != "cpu" or t.numel() == 0 or is_shared(t):
        return t
    fresh = empty(t.shape, dtype=t.dtype)
    with torch.no_grad():
        fresh.copy_(t)
        t.set_(fresh.untyped_storage(), 0, fresh.shape, fresh.stride())
    return t
