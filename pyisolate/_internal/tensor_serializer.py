"""The compatibility import path for the tensor IPC check, as older platform
documentation prints it (docs/troubleshooting.md, "The compatibility import
path"); ``python -m pyisolate doctor`` shows the same answer.

``_check_shm_availability()`` is the very function that decides between the shm
transport and the file fallback (:func:`pyisolate.transport.check_shm_availability`);
the serialisation itself lives in :mod:`pyisolate.transport`, whose codec
extensions :func:`install` registers.
"""

from __future__ import annotations

from ..transport import check_shm_availability as _check_shm_availability
from ..transport.lowlevel import install

__all__ = ["_check_shm_availability", "install"]
