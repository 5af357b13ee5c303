"""The compatibility import path for the tensor IPC check, as older platform
documentation prints it (docs/troubleshooting.md, "The compatibility import
path"); ``python -m pyisolate doctor`` shows the same answer.

``_check_shm_availability()`` is the very function that decides between the shm
transport and the file fallback (:mod:`pyisolate.transport._detect`); the
serialisation itself lives in :mod:`pyisolate.transport`.
"""

from __future__ import annotations

from ..transport import install
from ..transport._detect import check_shm_availability as _check_shm_availability

__all__ = ["_check_shm_availability", "install"]
