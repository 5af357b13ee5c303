"""Tensor transports: how tensor bytes move between processes, out of band.

Torch tensors, numpy arrays and :class:`OutOfBand` buffers anywhere in a
message become a small handle in the msgpack envelope plus, for the shm and
file transports, file descriptors passed beside it (SCM_RIGHTS). Transports,
in the order they are tried:

* ``cuda_ipc`` CUDA IPC handles, with ``PYISOLATE_ENABLE_CUDA_IPC=1``;
* ``shm``      anonymous shared memory (memfd), zero-copy for shared memory,
               one copy otherwise, copy-on-write on the receiving side;
* ``file``     unlinked files, where /dev/shm is unusable and on macOS;
* ``inline``   small tensors (and the last resort), inside the envelope.

``PYISOLATE_TRANSPORT`` forces one. Importing this package imports neither
torch nor numpy.

Users: :func:`empty`, :func:`empty_array`, :func:`share_memory_`,
:func:`is_shared`, :class:`OutOfBand`, :func:`capabilities`. Implementers of a
transport: :class:`Transport` (with :class:`Region`, :class:`Exported`,
:class:`Imported`), described by a :class:`TransportSpec` and either given to
``Runtime(transports=[...])`` (the host's sending order) or registered with
:func:`register_transport` (every process that receives by it must register
it). Tests: :class:`FakeTransport` and :mod:`pyisolate.transport.testing`. The
runtime's own wiring (sessions, codecs, fd passing) is
:mod:`pyisolate.transport.lowlevel`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._alloc import empty, empty_array, is_shared, share_memory_
    from ._base import Exported, Imported, Region, Transport
    from ._codecs import OutOfBand
    from ._detect import capabilities, check_shm_availability
    from ._fake import FakeTransport
    from ._registry import Band, TransportSpec, register_transport

# Loaded on first use: an actor that never moves a tensor does not import the
# transports (about 15 ms of its start-up).
_WHERE = {
    "Band": "._registry",
    "Exported": "._base",
    "FakeTransport": "._fake",
    "Imported": "._base",
    "OutOfBand": "._codecs",
    "Region": "._base",
    "Transport": "._base",
    "TransportSpec": "._registry",
    "capabilities": "._detect",
    "check_shm_availability": "._detect",
    "empty": "._alloc",
    "empty_array": "._alloc",
    "is_shared": "._alloc",
    "register_transport": "._registry",
    "share_memory_": "._alloc",
}

__all__ = [
    "Band",
    "Exported",
    "FakeTransport",
    "Imported",
    "OutOfBand",
    "Region",
    "Transport",
    "TransportSpec",
    "capabilities",
    "check_shm_availability",
    "empty",
    "empty_array",
    "is_shared",
    "register_transport",
    "share_memory_",
]

__getattr__, __dir__ = lazy_exports(__name__, globals(), _WHERE)
