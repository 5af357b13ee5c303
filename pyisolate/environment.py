"""The environment variables pyisolate reads, each named here once.

* ``PYISOLATE_TRANSPORT``: force one tensor transport by name (``inline``,
  ``shm``, ``file``, ``cuda_ipc``, or a registered one).
* ``PYISOLATE_ENABLE_CUDA_IPC``: ``1`` allows CUDA IPC between processes (and
  gives sandboxed actors the GPU devices). Off by default.
* ``PYISOLATE_SHM_POOL_BYTES``: the byte cap of each sender's shared-memory
  segment pool (0 turns the pool off).
* ``PYISOLATE_RUNTIME_DIR``: where runtimes make their private directories
  (keep it short: a Unix socket path has at most 107 bytes).
* ``PYISOLATE_NO_UVLOOP``: set to keep actors on asyncio's own event loop
  where uvloop is installed.

The first two must mean the same on both sides of a transfer: the runtime
passes them on to its actors.
"""

from __future__ import annotations

__all__ = [
    "ENABLE_CUDA_IPC",
    "NO_UVLOOP",
    "RUNTIME_DIR",
    "SHARED_WITH_ACTORS",
    "SHM_POOL_BYTES",
    "TRANSPORT",
]

TRANSPORT = "PYISOLATE_TRANSPORT"
ENABLE_CUDA_IPC = "PYISOLATE_ENABLE_CUDA_IPC"
SHM_POOL_BYTES = "PYISOLATE_SHM_POOL_BYTES"
RUNTIME_DIR = "PYISOLATE_RUNTIME_DIR"
NO_UVLOOP = "PYISOLATE_NO_UVLOOP"

#: Passed on from the host to every actor it starts.
SHARED_WITH_ACTORS = (ENABLE_CUDA_IPC, TRANSPORT)
