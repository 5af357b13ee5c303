"""The registry of transports: what each can carry, and the order they are tried.

A :class:`TransportSpec` names a transport, makes one for a session, and says
what it can carry: the device kinds it moves natively, the size band it is
for, whether it needs file descriptors passed beside the envelope and whether
it needs the control channel back to the sender. A session picks, for each
tensor, the first spec in its order that fits (see ``_session``).

The built-in order, cuda_ipc → shm → file → inline:

* ``cuda_ipc``: CUDA memory, any size; only with ``PYISOLATE_ENABLE_CUDA_IPC=1``,
  a control channel (releases come back by it) and a peer that sees the GPU;
* ``shm``: above the inline threshold, where /dev/shm is usable (fds);
* ``file``: above the inline threshold, where shm is not (fds; not Windows);
* ``inline``: anything, inside the envelope: the small ones, and the last
  resort when nothing else fits (a message out of fds, no shared memory).

A transport that carries ``"cpu"`` also takes device memory: the codec stages
it through host memory and the receiver moves it back to its device.

Registration is per process. A session receives by whatever name a record
carries, so a custom transport must be registered (its module imported) in
every process that receives by it: for actors, import it from the actor's
module. ``Runtime(transports=...)`` sets only the host's sending order.
"""

from __future__ import annotations

import enum
import sys
import threading
from typing import TYPE_CHECKING

import attrs

from ._base import Transport
from ._env import cuda_ipc_enabled

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ._session import TransportSession

__all__ = [
    "Band",
    "TransportArg",
    "TransportSpec",
    "default_order",
    "lookup_transport",
    "register_transport",
    "registered_transports",
    "resolve_transports",
]


class Band(enum.Enum):
    """The sizes a transport is for."""

    ANY = "any"
    #: above the session's inline threshold (64 KiB by default): where a
    #: segment's set-up costs less than copying the bytes into the envelope
    LARGE = "large"


@attrs.frozen
class TransportSpec:
    """One transport of the registry.

    ``factory(session)`` makes the session's instance (it may read
    ``session.workdir``, ``session.control`` and the other settings).
    ``devices``: the device kinds (``"cpu"``, ``"cuda"``) moved natively; which
    device a given instance reaches is its ``accepts(device)``. ``fd_passing``:
    its exports carry fds (skipped once a message holds as many as one sendmsg
    can). ``control``: needs the control channel (skipped by a session without
    one). ``available(session, device, peer)``: a check of this machine or
    peer, None for always. ``preference``: the rank in the default order
    (lower first); None for "only when forced or injected".
    """

    name: str
    factory: Callable[[TransportSession], Transport]
    devices: frozenset[str] = frozenset({"cpu"})
    band: Band = Band.ANY
    fd_passing: bool = False
    control: bool = False
    available: Callable[[TransportSession, str, int], bool] | None = None
    preference: int | None = None

    def carries(self, device: str) -> bool:
        """Whether this kind of memory may go by it (natively, or staged
        through the host by a CPU transport)."""
        if "cpu" in self.devices:
            return True
        return device != "cpu" and device.partition(":")[0] in self.devices


#: What ``Runtime(transports=...)`` and ``TransportSession(transports=...)``
#: take: a spec, an instance (described by the spec registered under its name,
#: if any), or a registered name.
TransportArg = TransportSpec | Transport | str

_lock = threading.Lock()
_specs: dict[str, TransportSpec] = {}


def register_transport(spec: TransportSpec) -> None:
    """Make ``spec`` known to this process (replacing one of the same name):
    receivable by name, and in the default order if it has a preference."""
    if not spec.name or not isinstance(spec.name, str):
        raise ValueError("a transport needs a non-empty name")
    with _lock:
        _specs[spec.name] = spec


def registered_transports() -> list[TransportSpec]:
    with _lock:
        return list(_specs.values())


def lookup_transport(name: str) -> TransportSpec | None:
    with _lock:
        return _specs.get(name)


def default_order() -> tuple[TransportSpec, ...]:
    """The registered specs that have a preference, most preferred first."""
    ranked = [s for s in registered_transports() if s.preference is not None]
    return tuple(sorted(ranked, key=lambda s: s.preference or 0))


def _describe(instance: Transport) -> TransportSpec:
    name = getattr(instance, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{type(instance).__name__} has no name: set the class attribute `name`")
    known = lookup_transport(name)
    if known is not None:  # a built-in (or registered) kind: its capabilities
        return attrs.evolve(known, factory=lambda _session: instance)
    return TransportSpec(name, lambda _session: instance)


def resolve_transports(items: Iterable[TransportArg]) -> tuple[TransportSpec, ...]:
    """Specs for ``items``, in their order; raises naming the fix."""
    specs: list[TransportSpec] = []
    for item in items:
        if isinstance(item, TransportSpec):
            spec = item
        elif isinstance(item, Transport):
            spec = _describe(item)
        elif isinstance(item, str):
            found = lookup_transport(item)
            if found is None:
                names = ", ".join(s.name for s in registered_transports())
                raise ValueError(f"unknown transport {item!r}: choose one of {names}")
            spec = found
        else:
            raise TypeError(
                "transports= takes Transport instances, TransportSpec values or registered "
                f"names, not {type(item).__name__}"
            )
        if any(s.name == spec.name for s in specs):
            raise ValueError(f"transport {spec.name!r} is given twice")
        specs.append(spec)
    return tuple(specs)


# -- the built-ins: factories import their module only when a session is made ----


def _inline(session: TransportSession) -> Transport:
    from ._inline import InlineTransport

    return InlineTransport()


def _shm(session: TransportSession) -> Transport:
    from ._shm import ShmTransport

    # no pool without a control channel: no release would ever come back
    return ShmTransport(session.control, session.shm_pool_bytes)


def _file(session: TransportSession) -> Transport:
    from ._file import FileTransport

    return FileTransport(session.workdir)


def _cuda_ipc(session: TransportSession) -> Transport:
    from ._cuda_ipc import CudaIpcTransport

    return CudaIpcTransport(session, session.cuda_backend)


def _shm_usable(session: TransportSession, device: str, peer: int) -> bool:
    return session.shm_available()


def _file_usable(session: TransportSession, device: str, peer: int) -> bool:
    return sys.platform != "win32"


def _cuda_usable(session: TransportSession, device: str, peer: int) -> bool:
    if not cuda_ipc_enabled():
        return False
    gpus = session.peer_gpus.get(peer)
    if gpus is None:
        return True  # unknown: the user enabled CUDA IPC; the receiver verifies
    backend = getattr(session.transports.get("cuda_ipc"), "backend", None)
    return backend is not None and backend.device_uuid(device) in gpus


for _spec in (
    TransportSpec(
        "cuda_ipc",
        _cuda_ipc,
        devices=frozenset({"cuda"}),
        control=True,
        available=_cuda_usable,
        preference=10,
    ),
    TransportSpec(
        "shm", _shm, band=Band.LARGE, fd_passing=True, available=_shm_usable, preference=20
    ),
    TransportSpec(
        "file", _file, band=Band.LARGE, fd_passing=True, available=_file_usable, preference=30
    ),
    TransportSpec("inline", _inline, preference=90),
):
    register_transport(_spec)
