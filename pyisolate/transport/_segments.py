"""File-descriptor-backed memory: the substance of the shm and file transports.

Why file descriptors and not names: a sandboxed actor has a private /dev/shm,
so a name means nothing to it, and a name is something to leak when a process
is SIGKILLed. An anonymous memfd (or an unlinked file) is reachable only by the
processes it was handed to and vanishes with the last fd or mapping.

Why seals: a consumer maps memory a possibly hostile producer handed it. If
the producer could shrink the file later, the consumer's next read would die of
SIGBUS; if it could write, "a copy" would not be one. So every memfd we send is
sealed against shrinking and growing, and against writes (``F_SEAL_WRITE`` for
a copied snapshot, ``F_SEAL_FUTURE_WRITE`` for allocator memory whose only
writable mapping is the owner's), and a consumer refuses memfds that are not.

The registry remembers which mappings of this process are backed by a
sendable fd, so that a tensor that is already in shared memory (allocated with
:func:`pyisolate.transport.empty`, or received) goes out with no copy.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import tempfile
import threading
import weakref
from collections.abc import Callable
from typing import Any

import attrs

from ..errors import TransportError
from ._base import Exported, Imported, Region, SharedSegment
from ._pagescan import _has_private_pages

__all__ = [
    "Mapping",
    "create_file",
    "create_memfd",
    "export_copy",
    "find_mapping",
    "import_fd",
    "map_shared",
    "open_fd_count",
]

PAGE = mmap.PAGESIZE
F_SEAL_FUTURE_WRITE = 0x0010  # Linux 5.1; not named by Python 3.11's fcntl
_SIZE_SEALS = getattr(fcntl, "F_SEAL_SHRINK", 0x2) | getattr(fcntl, "F_SEAL_GROW", 0x4)
_WRITE_SEALS = getattr(fcntl, "F_SEAL_WRITE", 0x8) | F_SEAL_FUTURE_WRITE
_HAS_SEALS = hasattr(fcntl, "F_ADD_SEALS")
SIZE_SEALS = _SIZE_SEALS

#: A received pooled segment: ``release(peer, id)`` is called once the last
#: mapping of it in this process is gone (and it was never forwarded).
ReleaseHook = Callable[[int, int], None]


def create_memfd(size: int, name: str = "pyisolate") -> int:
    """An anonymous shared-memory file of ``size`` bytes (close-on-exec)."""
    if not hasattr(os, "memfd_create"):
        raise TransportError("memfd_create is not available on this platform")
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, size)
    except OSError as exc:
        os.close(fd)
        raise TransportError(f"cannot size a {size}-byte shared-memory segment: {exc}") from None
    return fd


def create_file(size: int, directory: str) -> int:
    """A regular file of ``size`` bytes in ``directory`` with no name: O_TMPFILE
    where the kernel has it, else created and unlinked at once."""
    fd = -1
    if hasattr(os, "O_TMPFILE"):
        try:
            fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError:
            fd = -1
    if fd < 0:
        try:
            fd, path = tempfile.mkstemp(prefix=".pyisolate-", dir=directory)
        except OSError as exc:
            raise TransportError(f"cannot create a transfer file in {directory!r}: {exc}") from None
        os.unlink(path)
    try:
        os.ftruncate(fd, size)
    except OSError as exc:
        os.close(fd)
        raise TransportError(f"cannot size a {size}-byte transfer file: {exc}") from None
    return fd


def add_seals(fd: int, seals: int) -> None:
    """Seal ``fd`` where the file system supports it (memfd does; regular files don't)."""
    if not _HAS_SEALS:
        return
    try:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    except OSError:
        pass


def _is_memfd(fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:")
    except OSError:
        return False


def _check_seals(fd: int) -> int:
    """The seals of ``fd`` (-1 where it cannot have any); raises unless it is
    sealed against resizing and against writes through new mappings."""
    if not (_HAS_SEALS and _is_memfd(fd)):
        return -1
    seals: int = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    if seals & _SIZE_SEALS != _SIZE_SEALS or not seals & _WRITE_SEALS:
        raise TransportError(
            "refusing a shared-memory segment that its sender could still resize or write"
        )
    return seals


def map_shared(fd: int, size: int) -> mmap.mmap:
    return mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)


def _mmap_address(mm: mmap.mmap) -> int:
    probe = ctypes.c_char.from_buffer(mm)
    try:
        return ctypes.addressof(probe)
    finally:
        del probe  # release the buffer export at once so the mmap can close


@attrs.define(eq=False)
class Mapping:
    """A mapping of this process backed by ``fd`` (which the registry owns)."""

    fd: int
    size: int
    address: int
    private: bool  # MAP_PRIVATE: pages this process wrote no longer match the fd
    mm: weakref.ref[mmap.mmap]
    #: pooled segments this mapping stands for: (hook, peer, id) to release
    origins: list[tuple[ReleaseHook, int, int]] = attrs.Factory(list)
    #: forwarded to another peer: never released (that peer may still map it)
    pinned: bool = False
    key: tuple[int, int, int, int] | None = None

    def is_clean(self) -> bool:
        """Whether the fd still holds what this mapping shows (no CoW pages)."""
        return not self.private or not _has_private_pages(self.address, self.size)


_lock = threading.Lock()
_by_address: dict[int, Mapping] = {}
_by_mmap_id: dict[int, Mapping] = {}
_by_fd: dict[int, Mapping] = {}
#: received mappings by (st_dev, st_ino, size, seals): a segment that arrives
#: again while a clean mapping of it is alive reuses that mapping
_by_file: dict[tuple[int, int, int, int], Mapping] = {}


def register(mm: mmap.mmap, fd: int, size: int, *, private: bool) -> Mapping:
    """Remember that ``mm`` is backed by ``fd``; ``fd`` is closed when ``mm`` dies."""
    entry = Mapping(fd, size, _mmap_address(mm), private, weakref.ref(mm))
    with _lock:
        _by_address[entry.address] = entry
        _by_mmap_id[id(mm)] = entry
        _by_fd[fd] = entry
    weakref.finalize(mm, _forget, entry, id(mm))
    return entry


def _forget(entry: Mapping, mm_id: int) -> None:
    with _lock:
        if _by_address.get(entry.address) is entry:
            del _by_address[entry.address]
        if _by_mmap_id.get(mm_id) is entry:
            del _by_mmap_id[mm_id]
        if _by_fd.get(entry.fd) is entry:
            del _by_fd[entry.fd]
        if entry.key is not None and _by_file.get(entry.key) is entry:
            del _by_file[entry.key]
        origins = [] if entry.pinned else entry.origins
        entry.origins = []
    os.close(entry.fd)
    for hook, peer, seg_id in origins:
        hook(peer, seg_id)  # queues only: finalizers never send


def mapping_of_fd(fd: int) -> Mapping | None:
    with _lock:
        return _by_fd.get(fd)


def pin(entry: Mapping) -> None:
    """``entry`` is being forwarded: never tell its sender it may reuse it."""
    with _lock:
        entry.pinned = True


def find_mapping(address: int | None = None, mm: Any = None) -> Mapping | None:
    """The registered mapping that starts at ``address`` or is the mmap ``mm``."""
    with _lock:
        if mm is not None:
            entry = _by_mmap_id.get(id(mm))
            return entry if entry is not None and entry.mm() is mm else None
        return _by_address.get(address) if address is not None else None


def shared_segment(entry: Mapping, offset: int) -> SharedSegment | None:
    """``entry`` as a zero-copy source, or None when this process wrote to it."""
    return SharedSegment(entry.fd, offset) if entry.is_clean() else None


class FdOwner:
    """Closes ``fd`` when dropped: the exporter's fds live exactly as long as
    the message that carries them is being sent."""

    __slots__ = ("__weakref__", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        weakref.finalize(self, os.close, fd)


def export_copy(region: Region, fd: int, *, memfd: bool) -> Exported:
    """Copy ``region`` into the fresh file ``fd`` (its one copy) and seal it."""
    owner = FdOwner(fd)
    try:
        mm = map_shared(fd, region.nbytes)
        try:
            region.write_to(memoryview(mm))
        finally:
            mm.close()
    except TransportError:
        raise
    except (OSError, ValueError) as exc:
        raise TransportError(
            f"cannot copy {region.nbytes} bytes into shared memory: {exc}"
        ) from None
    if memfd:
        add_seals(fd, _SIZE_SEALS | getattr(fcntl, "F_SEAL_WRITE", 0x8))
    return Exported({"off": 0, "n": region.nbytes}, [fd], [owner])


def export_shared(region: Region) -> Exported:
    """Send memory that already sits in a registered segment: no copy. The fd
    is the registry's; ``region.owner`` (kept alive by the caller) keeps it open."""
    assert region.shared is not None
    return Exported(
        {"off": region.shared.offset, "n": region.nbytes}, [region.shared.fd], [region.owner]
    )


def import_fd(
    handle: Any, fds: list[int], origin: tuple[ReleaseHook, int] | None = None
) -> Imported:
    """Map a received segment copy-on-write; takes ownership of ``fds[0]``.

    A segment that arrives while a clean mapping of it (same file, size and
    seals) is alive reuses that mapping: no mmap, no page faults again. When
    ``handle`` names a pooled segment (``"id"``) and ``origin`` is given,
    ``origin[0](origin[1], id)`` is called once no mapping of it is left.
    """
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise TransportError(f"expected one file descriptor, got {len(fds)}")
    fd = fds[0]
    try:
        offset, nbytes = int(handle["off"]), int(handle["n"])
        seg_id = handle.get("id")
        if seg_id is not None and type(seg_id) is not int:
            raise TransportError("malformed pooled segment id")
        st = os.fstat(fd)
        size = st.st_size
        if offset < 0 or nbytes <= 0 or offset + nbytes > size:
            raise TransportError(
                f"segment of {size} bytes cannot hold [{offset}, {offset + nbytes})"
            )
        seals = _check_seals(fd)
        key = (st.st_dev, st.st_ino, size, seals) if seals >= 0 else None
        mm = _cached(key) if key is not None else None
        if mm is None:
            # Writable but private: the receiver may write its tensor (torch expects
            # writable memory); the kernel copies touched pages, the sender never sees them.
            mm = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
            entry = register(mm, fd, size, private=True)
            fd = -1  # the registry's now
            if key is not None:
                with _lock:
                    entry.key = key
                    _by_file[key] = entry
        else:
            entry_found = find_mapping(mm=mm)
            assert entry_found is not None
            entry = entry_found
    except BaseException as exc:
        if fd >= 0:
            os.close(fd)
        if isinstance(exc, (TransportError, KeyboardInterrupt)):
            raise
        raise TransportError(f"cannot map a received segment: {exc!r}") from None
    if fd >= 0:
        os.close(fd)  # a cached mapping holds the file already
    if seg_id is not None and origin is not None:
        with _lock:
            entry.origins.append((origin[0], origin[1], seg_id))
    return Imported(nbytes=nbytes, buffer=mm, offset=offset)


def _cached(key: tuple[int, int, int, int]) -> mmap.mmap | None:
    """A live, clean mapping of the file ``key`` names, if this process has one."""
    with _lock:
        entry = _by_file.get(key)
    if entry is None:
        return None
    mm = entry.mm()
    if mm is None or mm.closed or not entry.is_clean():
        return None
    return mm


def allocate_shared(nbytes: int) -> mmap.mmap:
    """Allocator memory: a memfd mapped shared, writable only through this mapping."""
    fd = create_memfd(nbytes, "pyisolate-tensor")
    try:
        mm = map_shared(fd, nbytes)
    except OSError as exc:
        os.close(fd)
        raise TransportError(f"cannot map {nbytes} bytes of shared memory: {exc}") from None
    add_seals(fd, _SIZE_SEALS | F_SEAL_FUTURE_WRITE)
    register(mm, fd, nbytes, private=False)
    return mm


def open_fd_count() -> int:
    """How many fds this process has open (tests and doctor use it)."""
    return len(os.listdir("/proc/self/fd"))
