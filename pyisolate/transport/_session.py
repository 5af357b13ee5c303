"""TransportSession: one process's side of its connections, and the choice of
transport for each tensor.

The runtime core makes one per process (the host one, each actor one), passes
it to the codec through ``EncodeContext.session`` / ``DecodeContext.session``,
routes transport control messages to :meth:`TransportSession.handle_control`,
and calls :meth:`peer_died` when a peer's process is gone.

Selection, first match wins: the ``transport=`` argument or
``PYISOLATE_TRANSPORT``; a CUDA tensor with CUDA IPC enabled and the peer known
(or assumed) to see the GPU goes by cuda_ipc; at most ``inline_threshold``
bytes go inline; then shm if :func:`check_shm_availability`, else file
(warning once), else inline. A CUDA tensor on a CPU transport is staged
through host memory and moved back to its device index on arrival.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import TransportError
from . import _detect
from ._base import DEFAULT_INLINE_THRESHOLD, Exported, Imported, Region, Transport
from ._cuda_ipc import CudaIpcBackend, CudaIpcTransport, cuda_ipc_enabled
from ._file import FileTransport
from ._inline import InlineTransport
from ._shm import ShmTransport

__all__ = ["DEFAULT_INLINE_THRESHOLD", "ENV_TRANSPORT", "NAMES", "TransportSession"]

logger = logging.getLogger("pyisolate.transport")

ENV_TRANSPORT = "PYISOLATE_TRANSPORT"
NAMES = ("inline", "shm", "file", "cuda_ipc")


class TransportSession:
    """Owns the transports of one process; see the module docstring."""

    def __init__(
        self,
        *,
        send_control: Callable[[int, Any], None],
        transport: str | None = None,
        inline_threshold: int | None = None,
        workdir: str | None = None,
        cuda_backend: CudaIpcBackend | None = None,
        extra_transports: Mapping[str, Transport] | None = None,
        shm_pool_bytes: int | None = None,
    ) -> None:
        self._send_control = send_control
        self.transports: dict[str, Transport] = {
            "inline": InlineTransport(),
            # no pool (0) where control messages cannot reach the peer
            "shm": ShmTransport(self, shm_pool_bytes),
            "file": FileTransport(workdir),
            "cuda_ipc": CudaIpcTransport(self, cuda_backend),
        }
        self.transports.update(extra_transports or {})
        override = transport if transport is not None else os.environ.get(ENV_TRANSPORT) or None
        if override is not None and override not in self.transports:
            raise ValueError(
                f"unknown transport {override!r} (from {'transport=' if transport else ENV_TRANSPORT}); "
                f"choose one of {', '.join(self.transports)}"
            )
        self.override = override
        self.inline_threshold = (
            DEFAULT_INLINE_THRESHOLD if inline_threshold is None else inline_threshold
        )
        self.workdir = workdir or tempfile.gettempdir()
        self.peer_gpus: dict[int, set[str]] = {}
        self._shm_ok: bool | None = None
        self._lock = threading.Lock()
        self._closed = False

    # -- the control channel ------------------------------------------------------

    def send_control(self, peer: int, body: Any) -> None:
        """Used by transports (ControlSink): the core routes it to ``peer``."""
        if not self._closed:
            self._send_control(peer, body)

    def handle_control(self, peer: int, body: Any) -> None:
        """A Kind.TRANSPORT message from ``peer``. Unknown bodies are ignored
        (a newer peer may speak more); malformed ones raise TransportError."""
        if not isinstance(body, dict):
            raise TransportError(f"malformed transport control message from peer {peer}")
        if body.get("op") == "caps":
            self.peer_gpus[peer] = {str(g) for g in body.get("gpus", ())}
            return
        target = self.transports.get(str(body.get("t")))
        if target is not None:
            target.handle_control(peer, body)

    def peer_connected(self, peer: int) -> None:
        """Tell ``peer`` which GPUs this process sees (only when CUDA IPC is
        enabled; imports torch then). Optional: without it, CUDA IPC is tried
        whenever enabled and the receiver checks the GPU."""
        if not cuda_ipc_enabled() or "torch" not in sys.modules:
            return
        import torch

        if torch.cuda.is_available():
            gpus = [
                str(torch.cuda.get_device_properties(i).uuid)
                for i in range(torch.cuda.device_count())
            ]
            self.send_control(peer, {"op": "caps", "gpus": gpus})

    def flush(self) -> None:
        """Send queued release messages (CUDA IPC, pooled shm segments). The
        core calls it on each tick, outside any encode: shm releases are sent
        only here, never from inside an export or import (the core's send path
        is not reentrant while a message is being encoded)."""
        self._flush_cuda()
        shm = self.transports["shm"]
        if isinstance(shm, ShmTransport):
            shm.flush()

    def _flush_cuda(self) -> None:
        cuda = self.transports["cuda_ipc"]
        if isinstance(cuda, CudaIpcTransport):
            cuda.flush()

    # -- selection ---------------------------------------------------------------

    def shm_available(self) -> bool:
        if self._shm_ok is None:
            self._shm_ok = _detect.check_shm_availability()
            if not self._shm_ok:
                logger.warning(
                    "/dev/shm is missing, not writable or under 100 MB free: tensors move "
                    "through unlinked files in %s (one copy). See `python -m pyisolate doctor`.",
                    self.workdir,
                )
        return self._shm_ok

    def choose(self, device: str, nbytes: int, peer: int) -> Transport:
        """The transport for ``nbytes`` of ``device`` memory going to ``peer``."""
        if self.override is not None:
            chosen = self.transports[self.override]
            if self.override != "cuda_ipc" or chosen.accepts(device):
                return chosen  # CPU transports stage device memory through the host
        cuda = self.transports["cuda_ipc"]
        if (
            device != "cpu"
            and cuda.accepts(device)
            and cuda_ipc_enabled()
            and self._peer_sees(peer, device)
        ):
            return cuda
        if nbytes <= self.inline_threshold:
            return self.transports["inline"]
        if self.shm_available():
            return self.transports["shm"]
        if sys.platform != "win32":
            return self.transports["file"]
        return self.transports["inline"]

    def _peer_sees(self, peer: int, device: str) -> bool:
        gpus = self.peer_gpus.get(peer)
        if gpus is None:
            return True  # unknown: the user enabled CUDA IPC; the receiver verifies
        cuda = self.transports["cuda_ipc"]
        assert isinstance(cuda, CudaIpcTransport)
        return cuda.backend.device_uuid(device) in gpus

    # -- moving ------------------------------------------------------------------

    def export(self, transport: Transport, region: Region, peer: int) -> Exported:
        if self._closed:
            raise TransportError("the transport session is closed")
        self._flush_cuda()
        return transport.export(region, peer)

    def import_(self, name: str, handle: Any, fds: list[int], peer: int) -> Imported:
        transport = self.transports.get(name)
        if transport is None:
            for fd in fds:
                os.close(fd)
            raise TransportError(f"peer {peer} used unknown transport {name!r}")
        self._flush_cuda()
        return transport.import_(handle, fds, peer)

    # -- lifetime ----------------------------------------------------------------

    def peer_died(self, peer: int) -> None:
        """Release everything held for or opened from ``peer``."""
        self.peer_gpus.pop(peer, None)
        for transport in self.transports.values():
            transport.peer_died(peer)

    def close(self) -> None:
        """Release everything; later exports raise TransportError. Tensors already
        received stay valid (their memory lives as long as they do)."""
        self._closed = True
        for transport in self.transports.values():
            transport.close()
