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
import sys
import tempfile
import threading
import weakref
from typing import Any

import attrs

from ..errors import TransportError
from ._base import Exported, Imported, Region, SharedSegment

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


def _check_seals(fd: int) -> None:
    if not (_HAS_SEALS and _is_memfd(fd)):
        return
    seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    if seals & _SIZE_SEALS != _SIZE_SEALS or not seals & _WRITE_SEALS:
        raise TransportError(
            "refusing a shared-memory segment that its sender could still resize or write"
        )


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

    def is_clean(self) -> bool:
        """Whether the fd still holds what this mapping shows (no CoW pages)."""
        return not self.private or not _has_private_pages(self.address, self.size)


_lock = threading.Lock()
_by_address: dict[int, Mapping] = {}
_by_mmap_id: dict[int, Mapping] = {}


def register(mm: mmap.mmap, fd: int, size: int, *, private: bool) -> Mapping:
    """Remember that ``mm`` is backed by ``fd``; ``fd`` is closed when ``mm`` dies."""
    entry = Mapping(fd, size, _mmap_address(mm), private, weakref.ref(mm))
    with _lock:
        _by_address[entry.address] = entry
        _by_mmap_id[id(mm)] = entry
    weakref.finalize(mm, _forget, entry, id(mm))
    return entry


def _forget(entry: Mapping, mm_id: int) -> None:
    with _lock:
        if _by_address.get(entry.address) is entry:
            del _by_address[entry.address]
        if _by_mmap_id.get(mm_id) is entry:
            del _by_mmap_id[mm_id]
    os.close(entry.fd)


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


def _has_private_pages(address: int, size: int) -> bool:
    """Whether any page of a MAP_PRIVATE file mapping was copied on write.

    /proc/self/pagemap has one 64-bit word per page: bit 63 present, bit 62
    swapped, bit 61 "file page or shared anonymous". A page we wrote became
    private anonymous memory: present or swapped, without bit 61. When pagemap
    cannot be read we answer True, which costs a copy, never correctness.
    """
    first = address // PAGE
    count = (address + size + PAGE - 1) // PAGE - first
    try:
        with open("/proc/self/pagemap", "rb", buffering=0) as f:
            f.seek(first * 8)
            raw = f.read(count * 8)
    except OSError:
        return True
    if len(raw) != count * 8:
        return True
    np = sys.modules.get("numpy")
    if np is not None:
        words = np.frombuffer(raw, dtype=np.uint64)
        in_memory = (words >> np.uint64(62)) != 0
        file_backed = ((words >> np.uint64(61)) & np.uint64(1)) != 0
        return bool((in_memory & ~file_backed).any())
    return any(word >> 62 and not (word >> 61) & 1 for word in memoryview(raw).cast("Q"))


class _FdOwner:
    """Closes ``fd`` when dropped: the exporter's fds live exactly as long as
    the message that carries them is being sent."""

    __slots__ = ("__weakref__", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        weakref.finalize(self, os.close, fd)


def export_copy(region: Region, fd: int, *, memfd: bool) -> Exported:
    """Copy ``region`` into the fresh file ``fd`` (its one copy) and seal it."""
    owner = _FdOwner(fd)
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


def import_fd(handle: Any, fds: list[int]) -> Imported:
    """Map a received segment copy-on-write; takes ownership of ``fds[0]``."""
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise TransportError(f"expected one file descriptor, got {len(fds)}")
    fd = fds[0]
    try:
        offset, nbytes = int(handle["off"]), int(handle["n"])
        size = os.fstat(fd).st_size
        if offset < 0 or nbytes <= 0 or offset + nbytes > size:
            raise TransportError(
                f"segment of {size} bytes cannot hold [{offset}, {offset + nbytes})"
            )
        _check_seals(fd)
        # Writable but private: the receiver may write its tensor (torch expects
        # writable memory); the kernel copies touched pages, the sender never sees them.
        mm = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    except BaseException as exc:
        os.close(fd)
        if isinstance(exc, (TransportError, KeyboardInterrupt)):
            raise
        raise TransportError(f"cannot map a received segment: {exc!r}") from None
    register(mm, fd, size, private=True)
    return Imported(nbytes=nbytes, buffer=mm, offset=offset)


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
