"""The environment variables that steer the transports, spelled once.

``PYISOLATE_TRANSPORT`` forces one transport by name (``inline``, ``shm``,
``file``, ``cuda_ipc`` or any registered one); ``PYISOLATE_ENABLE_CUDA_IPC=1``
allows CUDA IPC. Both must mean the same on both sides of a transfer, so the
runtime forwards them to its actors.
"""

from __future__ import annotations

import os

__all__ = ["ENV_ENABLE_CUDA_IPC", "ENV_TRANSPORT", "cuda_ipc_enabled", "forced_transport"]

from ..environment import ENABLE_CUDA_IPC as ENV_ENABLE_CUDA_IPC
from ..environment import TRANSPORT as ENV_TRANSPORT


def cuda_ipc_enabled() -> bool:
    """Whether the user allowed CUDA IPC (off by default: see ``_cuda_ipc``)."""
    return os.environ.get(ENV_ENABLE_CUDA_IPC) == "1"


def forced_transport() -> str | None:
    """The transport ``PYISOLATE_TRANSPORT`` forces, None when unset or empty."""
    return os.environ.get(ENV_TRANSPORT) or None
