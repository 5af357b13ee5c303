"""The transports' wiring, for the runtime core (as trio has ``trio.lowlevel``).

Not for applications: what the host's Runtime and each actor's server use to
move tensors, and what tests of the transports drive directly.

* :func:`install` registers the codec extensions (tensors, arrays,
  OutOfBand, large bytes, numpy scalars) in an ``ExtRegistry``, lazily: the
  one path by which production and tests get them.
* :class:`LazySession` is a process's :class:`TransportSession`, made when
  the first tensor moves; :func:`resolve_transports` checks what
  ``Runtime(transports=...)`` was given.
* :func:`send_fds` / :func:`recv_fds` / :func:`close_unused_fds` move the fds
  beside the envelopes (at most :data:`MAX_FDS` per message).
* The built-in transports, for tests and for composing a
  ``transports=`` order by instance.

Nothing here is imported before it is used: an actor that never moves a
tensor imports none of the transports, torch or numpy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._base import DEFAULT_INLINE_THRESHOLD, ControlSink, SharedSegment
    from ._codecs import install
    from ._cuda_ipc import CudaIpcBackend, CudaIpcTransport
    from ._env import ENV_ENABLE_CUDA_IPC, ENV_TRANSPORT
    from ._fdpass import MAX_FDS, close_unused_fds, recv_fds, send_fds
    from ._file import FileTransport
    from ._inline import InlineTransport
    from ._lazy_session import LazySession
    from ._registry import (
        TransportArg,
        default_order,
        lookup_transport,
        registered_transports,
        resolve_transports,
    )
    from ._session import TransportSession
    from ._shm import ShmTransport

#: What a process that will move tensors may import ahead of time (a fork
#: server, so that its children do not each pay for them).
PRELOAD_MODULES = (
    "pyisolate.transport._tensors",
    "pyisolate.transport._session",
    "pyisolate.transport._inline",
    "pyisolate.transport._shm",
    "pyisolate.transport._file",
    "pyisolate.transport._cuda_ipc",
)

# Absolute: this is a module, not a package (relative names would resolve inside it).
_WHERE = {
    "DEFAULT_INLINE_THRESHOLD": "pyisolate.transport._base",
    "ENV_ENABLE_CUDA_IPC": "pyisolate.transport._env",
    "ENV_TRANSPORT": "pyisolate.transport._env",
    "MAX_FDS": "pyisolate.transport._fdpass",
    "ControlSink": "pyisolate.transport._base",
    "CudaIpcBackend": "pyisolate.transport._cuda_ipc",
    "CudaIpcTransport": "pyisolate.transport._cuda_ipc",
    "FileTransport": "pyisolate.transport._file",
    "InlineTransport": "pyisolate.transport._inline",
    "LazySession": "pyisolate.transport._lazy_session",
    "SharedSegment": "pyisolate.transport._base",
    "ShmTransport": "pyisolate.transport._shm",
    "TransportArg": "pyisolate.transport._registry",
    "TransportSession": "pyisolate.transport._session",
    "close_unused_fds": "pyisolate.transport._fdpass",
    "default_order": "pyisolate.transport._registry",
    "install": "pyisolate.transport._codecs",
    "lookup_transport": "pyisolate.transport._registry",
    "recv_fds": "pyisolate.transport._fdpass",
    "registered_transports": "pyisolate.transport._registry",
    "resolve_transports": "pyisolate.transport._registry",
    "send_fds": "pyisolate.transport._fdpass",
}

__all__ = [
    "DEFAULT_INLINE_THRESHOLD",
    "ENV_ENABLE_CUDA_IPC",
    "ENV_TRANSPORT",
    "MAX_FDS",
    "PRELOAD_MODULES",
    "ControlSink",
    "CudaIpcBackend",
    "CudaIpcTransport",
    "FileTransport",
    "InlineTransport",
    "LazySession",
    "SharedSegment",
    "ShmTransport",
    "TransportArg",
    "TransportSession",
    "close_unused_fds",
    "default_order",
    "install",
    "lookup_transport",
    "recv_fds",
    "registered_transports",
    "resolve_transports",
    "send_fds",
]

__getattr__, __dir__ = lazy_exports(__name__, globals(), _WHERE)
