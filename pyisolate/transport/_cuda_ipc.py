"""cuda_ipc: CUDA tensors shared by IPC memory handle, never copied.

Only with ``PYISOLATE_ENABLE_CUDA_IPC=1`` and when both sides see the same GPU
(the documented requirements, each checked with an error that says which failed).

Lifetime protocol (the part torch's own machinery cannot do across a sandbox,
whose private /dev/shm hides torch's named reference-count files):

* The producer keeps every exported storage alive in ``held[peer][token]``.
* The consumer opens each IPC handle once per producer (a weak cache: a
  second tensor in the same block reuses the mapping) and registers, per
  import, a finalizer on the storage. When the storage is garbage-collected
  the token is queued, and ``{"op": "release", "tokens": [...]}`` goes back at
  the next :meth:`CudaIpcTransport.flush` (finalizers run at arbitrary points,
  in arbitrary threads, so they never send themselves).
* ``peer_died(peer)`` drops everything held for, or opened from, that peer.

Trust: unlike shm, CUDA IPC cannot keep a hostile consumer from memory it
was not sent, which is why it is off by default. What this module controls
is per peer (``held`` and ``opened`` are keyed by peer: one peer's release or
handle never touches another's). What it cannot control is the driver: a
consumer maps the producer's whole allocation block (torch's caching
allocator packs several tensors into one), and after a release the allocator
may reuse the memory for anything, while a consumer that lied about
releasing still maps it. Enable CUDA IPC only when every actor is trusted.

The torch calls are behind :class:`CudaIpcBackend` so that the protocol is
tested on machines without a GPU (``pyisolate.transport.testing``).
"""

from __future__ import annotations

import collections
import itertools
import threading
import weakref
from typing import Any, Protocol

from ..errors import TransportError
from ._base import ControlSink, Exported, Imported, Region, Transport
from ._env import ENV_ENABLE_CUDA_IPC, cuda_ipc_enabled

__all__ = ["CudaIpcBackend", "CudaIpcTransport", "TorchCudaIpcBackend"]


class CudaIpcBackend(Protocol):
    """The device-specific half: share a storage, open a shared one."""

    def accepts(self, device: str) -> bool: ...
    def device_uuid(self, device: str) -> str: ...
    def local_index(self, uuid: str) -> int | None: ...
    def runtime_version(self) -> str: ...
    def share(self, storage: Any) -> dict[str, Any]: ...
    def cache_key(self, share: dict[str, Any]) -> bytes: ...
    def open(self, share: dict[str, Any], index: int) -> Any: ...


class TorchCudaIpcBackend:
    """torch's IPC primitives: ``UntypedStorage._share_cuda_`` on the producer,
    ``UntypedStorage._new_shared_cuda`` on the consumer."""

    def accepts(self, device: str) -> bool:
        return device.startswith("cuda")

    def device_uuid(self, device: str) -> str:
        import torch

        return str(torch.cuda.get_device_properties(torch.device(device)).uuid)

    def local_index(self, uuid: str) -> int | None:
        import torch

        for index in range(torch.cuda.device_count()):
            if str(torch.cuda.get_device_properties(index).uuid) == uuid:
                return index
        return None

    def runtime_version(self) -> str:
        import torch

        return str(torch.version.cuda)

    def share(self, storage: Any) -> dict[str, Any]:
        _dev, handle, size, offset, ref_handle, ref_offset, event, event_sync = (
            storage._share_cuda_()
        )
        return {
            "h": handle,
            "size": size,
            "off": offset,
            "rh": ref_handle,
            "ro": ref_offset,
            "ev": event,
            "es": bool(event_sync),
        }

    def cache_key(self, share: dict[str, Any]) -> bytes:
        return bytes(share["h"]) + int(share["off"]).to_bytes(8, "little")

    def open(self, share: dict[str, Any], index: int) -> Any:
        import torch

        with torch.cuda.device(index):
            return torch.UntypedStorage._new_shared_cuda(
                index,
                share["h"],
                share["size"],
                share["off"],
                share["rh"],
                share["ro"],
                share["ev"],
                share["es"],
            )


class CudaIpcTransport(Transport):
    name = "cuda_ipc"

    def __init__(
        self,
        control: ControlSink,
        backend: CudaIpcBackend | None = None,
        *,
        require_env: bool = True,
    ) -> None:
        self._control = control
        self.backend: CudaIpcBackend = backend or TorchCudaIpcBackend()
        self._require_env = require_env
        self._tokens = itertools.count(1)
        self._lock = threading.Lock()
        #: producer side: storages kept alive per consumer until it releases them
        self.held: dict[int, dict[int, Any]] = collections.defaultdict(dict)
        #: consumer side: opened storages, per producer, weakly (the tensors own them)
        self.opened: dict[tuple[int, bytes], weakref.ref[Any]] = {}
        self._to_release: collections.deque[tuple[int, int]] = collections.deque()
        self._closed = False

    def accepts(self, device: str) -> bool:
        return self.backend.accepts(device)

    def _check_enabled(self) -> None:
        if self._require_env and not cuda_ipc_enabled():
            raise TransportError(
                f"CUDA IPC is disabled: set {ENV_ENABLE_CUDA_IPC}=1 in both processes"
            )

    # -- producer ---------------------------------------------------------------

    def export(self, region: Region, peer: int) -> Exported:
        self._check_enabled()
        if region.storage is None:
            raise TransportError("cuda_ipc exports device storages only")
        try:
            share = self.backend.share(region.storage)
            uuid = self.backend.device_uuid(region.device)
        except TransportError:
            raise
        except Exception as exc:
            raise TransportError(
                f"cannot share {region.device} memory by CUDA IPC: {exc}"
            ) from None
        token = next(self._tokens)
        with self._lock:
            self.held[peer][token] = region.storage
        handle = {
            "tok": token,
            "gpu": uuid,
            "cuda": self.backend.runtime_version(),
            "ipc": share,
            "n": region.nbytes,
        }
        return Exported(handle)

    def handle_control(self, peer: int, body: Any) -> None:
        if isinstance(body, dict) and body.get("op") == "release":
            with self._lock:
                held = self.held.get(peer, {})
                for token in body.get("tokens", ()):
                    held.pop(token, None)
                if not held:
                    self.held.pop(peer, None)

    def held_count(self, peer: int | None = None) -> int:
        with self._lock:
            if peer is not None:
                return len(self.held.get(peer, {}))
            return sum(len(h) for h in self.held.values())

    # -- consumer ---------------------------------------------------------------

    def import_(self, handle: Any, fds: list[int], peer: int) -> Imported:
        self._check_enabled()
        try:
            token, uuid, version = int(handle["tok"]), str(handle["gpu"]), str(handle["cuda"])
            share, nbytes = dict(handle["ipc"]), int(handle["n"])
        except (KeyError, TypeError, ValueError):
            raise TransportError("malformed cuda_ipc handle") from None
        local = self.backend.runtime_version()
        if version != local:
            raise TransportError(
                f"CUDA IPC needs the same CUDA version on both sides: "
                f"the sender has {version}, this process {local}"
            )
        index = self.backend.local_index(uuid)
        if index is None:
            raise TransportError(
                f"GPU {uuid} of the sender is not visible in this process "
                "(check CUDA_VISIBLE_DEVICES); CUDA IPC needs the same GPU"
            )
        key = (peer, self.backend.cache_key(share))
        with self._lock:
            ref = self.opened.get(key)
            storage = ref() if ref is not None else None
        if storage is None:
            try:
                storage = self.backend.open(share, index)
            except Exception as exc:
                self._queue_release(peer, token)
                raise TransportError(
                    f"cannot open a CUDA IPC handle from peer {peer} (out of GPU memory?): {exc}"
                ) from None
            with self._lock:
                self.opened[key] = weakref.ref(storage)
        weakref.finalize(storage, self._queue_release, peer, token)
        return Imported(nbytes=nbytes, storage=storage)

    def _queue_release(self, peer: int, token: int) -> None:
        if not self._closed:
            self._to_release.append((peer, token))  # deque.append is thread-safe

    def flush(self) -> None:
        """Send the release messages that finalizers queued."""
        by_peer: dict[int, list[int]] = collections.defaultdict(list)
        while self._to_release:
            peer, token = self._to_release.popleft()
            by_peer[peer].append(token)
        with self._lock:
            for key in [k for k, r in self.opened.items() if r() is None]:
                del self.opened[key]
        for peer, tokens in by_peer.items():
            self._control.send_control(peer, {"t": self.name, "op": "release", "tokens": tokens})

    # -- both -------------------------------------------------------------------

    def peer_died(self, peer: int) -> None:
        with self._lock:
            self.held.pop(peer, None)
            for key in [k for k in self.opened if k[0] == peer]:
                del self.opened[key]
        kept = [(p, t) for p, t in list(self._to_release) if p != peer]
        self._to_release.clear()
        self._to_release.extend(kept)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            self.held.clear()
            self.opened.clear()
        self._to_release.clear()
