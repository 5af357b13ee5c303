"""Has this process written to a mapping? Asked of the kernel, cheaply.

A received segment is mapped copy-on-write: pages the receiver wrote are its
own (anonymous), the others still show the file. A segment passed on without
a copy must have no written page, or the next peer would not see what was
sent. Linux 6.7's PAGEMAP_SCAN finds the first private page and stops; older
kernels read /proc/self/pagemap words instead (numpy decodes them fast where
it is already loaded).
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import sys

__all__ = ["_has_private_pages"]

PAGE = mmap.PAGESIZE


class _PmScanArg(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "size",
            "flags",
            "start",
            "end",
            "walk_end",
            "vec",
            "vec_len",
            "max_pages",
            "category_inverted",
            "category_mask",
            "category_anyof_mask",
            "return_mask",
        )
    ]


class _PageRegion(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("end", ctypes.c_uint64), ("cat", ctypes.c_uint64)]


_PAGEMAP_SCAN = 0xC0606610  # _IOWR('f', 16, struct pm_scan_arg), Linux 6.7
_PAGE_IS_FILE, _PAGE_IS_PRESENT, _PAGE_IS_SWAPPED = 1 << 2, 1 << 3, 1 << 4
_scan_ok = sys.platform == "linux"


def _scan_private_pages(address: int, size: int) -> bool | None:
    """PAGEMAP_SCAN: the kernel looks for the first present-or-swapped page that
    is not a file page and stops there; no megabyte of pagemap words to copy
    and decode. None where the kernel lacks it."""
    global _scan_ok
    if not _scan_ok:
        return None
    try:
        scan_fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        found = _PageRegion()
        arg = _PmScanArg(
            size=ctypes.sizeof(_PmScanArg),
            start=address // PAGE * PAGE,
            end=(address + size + PAGE - 1) // PAGE * PAGE,
            vec=ctypes.addressof(found),
            vec_len=1,
            max_pages=1,
            category_inverted=_PAGE_IS_FILE,
            category_mask=_PAGE_IS_FILE,
            category_anyof_mask=_PAGE_IS_PRESENT | _PAGE_IS_SWAPPED,
            return_mask=_PAGE_IS_FILE | _PAGE_IS_PRESENT | _PAGE_IS_SWAPPED,
        )
        return bool(fcntl.ioctl(scan_fd, _PAGEMAP_SCAN, arg))
    except OSError:
        _scan_ok = False
        return None
    finally:
        os.close(scan_fd)


def _has_private_pages(address: int, size: int) -> bool:
    """Whether any page of a MAP_PRIVATE file mapping was copied on write.

    /proc/self/pagemap has one 64-bit word per page: bit 63 present, bit 62
    swapped, bit 61 "file page or shared anonymous". A page we wrote became
    private anonymous memory: present or swapped, without bit 61. When pagemap
    cannot be read we answer True, which costs a copy, never correctness.
    """
    scanned = _scan_private_pages(address, size)
    if scanned is not None:
        return scanned
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
