"""What this machine offers for moving tensors: drives selection and ``doctor``.

``check_shm_availability`` is also ``_check_shm_availability`` in
``pyisolate._internal.tensor_serializer``, the documented feature-detection path. The shm transport uses memfd,
which does not live in /dev/shm, but both draw on the same shared-memory budget,
and a missing, read-only or tiny /dev/shm (Docker's 64 MB default) is the
reliable sign that a large shared segment will fail: the file fallback is then
the safe choice.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import sys
import tempfile

from ._base import DEFAULT_INLINE_THRESHOLD
from ._env import ENV_ENABLE_CUDA_IPC, ENV_TRANSPORT, cuda_ipc_enabled, forced_transport

__all__ = ["MIN_SHM_BYTES", "capabilities", "check_shm_availability", "cuda_ipc_status"]

SHM_PATH = "/dev/shm"
MIN_SHM_BYTES = 100 * 1024 * 1024  # the documented minimum for shared memory


def check_shm_availability(path: str = SHM_PATH, min_bytes: int = MIN_SHM_BYTES) -> bool:
    """True when ``path`` exists, is writable, has ``min_bytes`` free, and the
    platform can create anonymous shared memory (memfd, i.e. Linux)."""
    if not sys.platform.startswith("linux") or not hasattr(os, "memfd_create"):
        return False
    try:
        stat = os.statvfs(path)
    except OSError:
        return False
    if not os.access(path, os.W_OK):  # also False on a read-only mount
        return False
    return stat.f_bavail * stat.f_frsize >= min_bytes


def cuda_ipc_status() -> tuple[bool, str]:
    """Whether CUDA IPC can be used by this process, and why (not)."""
    if not cuda_ipc_enabled():
        return False, f"disabled (set {ENV_ENABLE_CUDA_IPC}=1 to enable)"
    if importlib.util.find_spec("torch") is None:
        return False, "enabled, but PyTorch is not installed"
    import torch  # only here: doctor asked, and CUDA IPC is enabled

    if not torch.cuda.is_available():
        return False, "enabled, but no CUDA device is available"
    return True, f"ready: {torch.cuda.device_count()} GPU(s), CUDA {torch.version.cuda}"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _shm_row() -> str:
    try:
        stat = os.statvfs(SHM_PATH)
    except OSError:
        return "missing"
    free, total = stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize
    writable = "writable" if os.access(SHM_PATH, os.W_OK) else "not writable"
    return f"{_size(free)} free of {_size(total)}, {writable}"


def capabilities(workdir: str | None = None) -> list[tuple[str, str]]:
    """Rows for ``python -m pyisolate doctor``. Imports torch only when CUDA IPC
    is enabled (to ask it about GPUs)."""
    from . import _registry  # here: the rows below need it, selection does not

    shm_ok = check_shm_availability()
    cpu = (
        "shm (memfd, fds over SCM_RIGHTS)"
        if shm_ok
        else (
            f"file (fallback: /dev/shm unusable or under {_size(MIN_SHM_BYTES)}; "
            f"one copy, in {workdir or tempfile.gettempdir()})"
        )
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return [
        ("/dev/shm", _shm_row()),
        ("memfd_create", "yes" if hasattr(os, "memfd_create") else "no"),
        ("CPU tensor transport", cpu),
        ("transport override", forced_transport() or f"none ({ENV_TRANSPORT} unset)"),
        ("transport order", ", ".join(s.name for s in _registry.default_order())),
        ("inline threshold", _size(DEFAULT_INLINE_THRESHOLD)),
        ("CUDA IPC", cuda_ipc_status()[1]),
        ("open file limit", f"{soft} (hard {hard}); each received shared tensor holds one fd"),
    ]
