"""TransportSession: one process's side of its connections, and the choice of
transport for each tensor.

The runtime core makes one per process (the host one, each actor one), through
a :class:`~pyisolate.transport.lowlevel.LazySession`, passes it to the codec in
``EncodeContext.session`` / ``DecodeContext.session``, routes transport control
messages to :meth:`TransportSession.handle_control`, and calls
:meth:`peer_died` when a peer's process is gone.

Selection (:meth:`TransportSession.choose`): the ``transport=`` argument or
``PYISOLATE_TRANSPORT`` forces one; otherwise the first transport of the
session's order (the registry's, cuda_ipc → shm → file → inline, or the one
given as ``transports=``) whose spec fits the memory's device, its size, the
fds left in the message, the control channel and this machine. Nothing fits:
inline, which refuses what is too large for the envelope. A CUDA tensor on a
CPU transport is staged through host memory and moved back to its device
index on arrival.

Receiving goes by the name each transfer record carries: any transport
registered in this process can be received, whatever this session sends by.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from typing import TYPE_CHECKING, Any

from ..errors import TransportError
from . import _detect, _registry
from ._base import DEFAULT_INLINE_THRESHOLD, ControlSink, Exported, Imported, Region, Transport
from ._env import ENV_TRANSPORT, cuda_ipc_enabled, forced_transport
from ._registry import Band, TransportArg, TransportSpec

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["LAST_RESORT", "TransportSession"]

logger = logging.getLogger("pyisolate.transport")

#: What a session falls back to when no transport of its order fits.
LAST_RESORT = "inline"


class TransportSession:
    """Owns the transports of one process; see the module docstring.

    ``send_control=None``: no control channel to the peers (a standalone
    codec): transports that need one are never chosen and shm does not pool.
    ``transports``: the sending order (default: the registry's). Instances
    given are owned by the session from then on (it closes them).
    """

    def __init__(
        self,
        *,
        send_control: Callable[[int, Any], None] | None,
        transport: str | None = None,
        transports: Iterable[TransportArg] | None = None,
        inline_threshold: int | None = None,
        workdir: str | None = None,
        cuda_backend: Any = None,
        shm_pool_bytes: int | None = None,
    ) -> None:
        self._send_control = send_control
        self.workdir = workdir or tempfile.gettempdir()
        self.cuda_backend = cuda_backend
        self.shm_pool_bytes = shm_pool_bytes
        self.inline_threshold = (
            DEFAULT_INLINE_THRESHOLD if inline_threshold is None else inline_threshold
        )
        self.peer_gpus: dict[int, set[str]] = {}
        self._shm_ok: bool | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.order: tuple[TransportSpec, ...] = (
            _registry.default_order()
            if transports is None
            else _registry.resolve_transports(transports)
        )
        self._specs = {spec.name: spec for spec in self.order}
        self.transports: dict[str, Transport] = {}
        for spec in self.order:
            self.transports[spec.name] = spec.factory(self)
        self._plan = [(s, s.band is Band.LARGE, self.transports[s.name]) for s in self.order]
        override = transport if transport is not None else forced_transport()
        if override is not None and self._spec(override) is None:
            names = ", ".join(
                sorted({*self._specs, *(s.name for s in _registry.registered_transports())})
            )
            raise ValueError(
                f"unknown transport {override!r} (from "
                f"{'transport=' if transport else ENV_TRANSPORT}); choose one of {names}"
            )
        self.override = override

    # -- the control channel ------------------------------------------------------

    @property
    def control(self) -> ControlSink | None:
        """The sink transports send control messages to; None without a channel."""
        return self if self._send_control is not None else None

    def send_control(self, peer: int, body: Any) -> None:
        """Used by transports (ControlSink): the core routes it to ``peer``."""
        if not self._closed and self._send_control is not None:
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
        for transport in list(self.transports.values()):
            transport.flush()

    def _flush_cuda(self) -> None:
        # CUDA IPC's releases also leave before each move, as they always did:
        # a producer keeps device memory alive until they arrive.
        cuda = self.transports.get("cuda_ipc")
        if cuda is not None:
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

    def choose(self, device: str, nbytes: int, peer: int, *, fds_left: bool = True) -> Transport:
        """The transport for ``nbytes`` of ``device`` memory going to ``peer``;
        ``fds_left=False`` once the message carries as many fds as it can."""
        if self.override is not None:
            spec = self._spec(self.override)
            if spec is not None and self._can_force(spec, device, fds_left):
                return self._instance(spec)
        small = nbytes <= self.inline_threshold
        # This runs for every tensor: the cheap tests first, inline.
        for spec, large_only, transport in self._plan:
            if large_only and small:
                continue
            if device == "cpu":
                if "cpu" not in spec.devices:
                    continue
            elif not self._carries(spec, device):
                continue
            if spec.fd_passing and not fds_left:
                continue
            if spec.control and self._send_control is None:
                continue
            if spec.available is None or spec.available(self, device, peer):
                return transport
        return self.get(LAST_RESORT)

    def _carries(self, spec: TransportSpec, device: str) -> bool:
        """Device memory: natively where this instance reaches the device,
        else staged through the host by a CPU transport."""
        if "cpu" in spec.devices:
            return True
        return spec.carries(device) and self._instance(spec).accepts(device)

    def _can_force(self, spec: TransportSpec, device: str, fds_left: bool) -> bool:
        """The user's choice holds unless it cannot carry this memory at all
        or the message is out of fds: no band, no machine check (the export's
        error says what is missing)."""
        return self._carries(spec, device) and (fds_left or not spec.fd_passing)

    def _spec(self, name: str) -> TransportSpec | None:
        return self._specs.get(name) or _registry.lookup_transport(name)

    def _instance(self, spec: TransportSpec) -> Transport:
        with self._lock:
            transport = self.transports.get(spec.name)
            if transport is None:
                transport = self.transports[spec.name] = spec.factory(self)
            return transport

    def get(self, name: str) -> Transport:
        """This session's ``name`` transport, made now from the registry if it
        sends by others; raises TransportError for a name nobody registered."""
        transport = self.transports.get(name)
        if transport is not None:
            return transport
        spec = self._spec(name)
        if spec is None:
            raise TransportError(
                f"unknown transport {name!r}: register it in this process (import the module "
                "that registers it; for an actor, from the actor's module)"
            )
        return self._instance(spec)

    def fd_passing(self, transport: Transport) -> bool:
        """Whether ``transport``'s exports travel as fds (an existing shared
        segment can then be sent as it is)."""
        spec = self._spec(transport.name)
        return spec is not None and spec.fd_passing

    # -- moving ------------------------------------------------------------------

    def export(self, transport: Transport, region: Region, peer: int) -> Exported:
        if self._closed:
            raise TransportError("the transport session is closed")
        self._flush_cuda()
        return transport.export(region, peer)

    def import_(self, name: str, handle: Any, fds: list[int], peer: int) -> Imported:
        try:
            transport = self.get(name)
        except TransportError as exc:
            for fd in fds:
                os.close(fd)
            raise TransportError(f"peer {peer} used {exc}") from None
        self._flush_cuda()
        return transport.import_(handle, fds, peer)

    # -- lifetime ----------------------------------------------------------------

    def peer_died(self, peer: int) -> None:
        """Release everything held for or opened from ``peer``."""
        self.peer_gpus.pop(peer, None)
        for transport in list(self.transports.values()):
            transport.peer_died(peer)

    def close(self) -> None:
        """Release everything; later exports raise TransportError. Tensors already
        received stay valid (their memory lives as long as they do)."""
        self._closed = True
        for transport in list(self.transports.values()):
            transport.close()
