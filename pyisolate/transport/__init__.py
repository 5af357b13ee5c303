"""Tensor transports: how tensor bytes move between processes, out of band.

Torch tensors, numpy arrays and :class:`OutOfBand` buffers anywhere in a
message become a small handle in the msgpack envelope plus, for the shm and
file transports, file descriptors passed beside it (SCM_RIGHTS). Transports:

* ``inline``   small tensors, inside the envelope;
* ``shm``      anonymous shared memory (memfd), zero-copy for shared memory,
               one copy otherwise, copy-on-write on the receiving side;
* ``file``     unlinked files, where /dev/shm is unusable and on macOS;
* ``cuda_ipc`` CUDA IPC handles, with ``PYISOLATE_ENABLE_CUDA_IPC=1``.

``PYISOLATE_TRANSPORT`` forces one. Importing this package imports neither
torch nor numpy. The runtime core uses :func:`install`,
:class:`TransportSession` and :mod:`._fdpass`; users use :func:`empty`,
:func:`share_memory_` and :func:`capabilities`; tests use
:class:`FakeTransport` and :mod:`pyisolate.transport.testing`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._alloc import empty, empty_array, is_shared, share_memory_
    from ._base import Exported, Imported, Region, Transport
    from ._cuda_ipc import CudaIpcBackend, CudaIpcTransport
    from ._detect import capabilities, check_shm_availability
    from ._fake import FakeTransport
    from ._fdpass import MAX_FDS, close_unused_fds, recv_fds, send_fds
    from ._file import FileTransport
    from ._inline import InlineTransport
    from ._session import DEFAULT_INLINE_THRESHOLD, TransportSession
    from ._shm import ShmTransport
    from ._tensors import (
        CODE_NDARRAY,
        CODE_OUT_OF_BAND,
        CODE_TENSOR,
        OutOfBand,
        install,
    )

__all__ = [
    "CODE_NDARRAY",
    "CODE_OUT_OF_BAND",
    "CODE_TENSOR",
    "DEFAULT_INLINE_THRESHOLD",
    "MAX_FDS",
    "CudaIpcBackend",
    "CudaIpcTransport",
    "Exported",
    "FakeTransport",
    "FileTransport",
    "Imported",
    "InlineTransport",
    "OutOfBand",
    "Region",
    "ShmTransport",
    "Transport",
    "TransportSession",
    "capabilities",
    "check_shm_availability",
    "close_unused_fds",
    "empty",
    "empty_array",
    "install",
    "is_shared",
    "recv_fds",
    "send_fds",
    "share_memory_",
]

# Loaded on first use: an actor that never moves a tensor does not import the
# transports (about 15 ms of its start-up).
_WHERE = {
    "CODE_NDARRAY": "._tensors",
    "CODE_OUT_OF_BAND": "._tensors",
    "CODE_TENSOR": "._tensors",
    "CudaIpcBackend": "._cuda_ipc",
    "CudaIpcTransport": "._cuda_ipc",
    "DEFAULT_INLINE_THRESHOLD": "._session",
    "Exported": "._base",
    "FakeTransport": "._fake",
    "FileTransport": "._file",
    "Imported": "._base",
    "InlineTransport": "._inline",
    "MAX_FDS": "._fdpass",
    "OutOfBand": "._tensors",
    "Region": "._base",
    "ShmTransport": "._shm",
    "Transport": "._base",
    "TransportSession": "._session",
    "capabilities": "._detect",
    "check_shm_availability": "._detect",
    "close_unused_fds": "._fdpass",
    "empty": "._alloc",
    "empty_array": "._alloc",
    "install": "._tensors",
    "is_shared": "._alloc",
    "recv_fds": "._fdpass",
    "send_fds": "._fdpass",
    "share_memory_": "._alloc",
}


__getattr__, __dir__ = lazy_exports(__name__, globals(), _WHERE)
