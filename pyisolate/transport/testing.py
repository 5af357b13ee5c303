"""Test helpers: the conformance suite every transport passes, and a fake CUDA
IPC backend so that the CUDA IPC protocol is tested without a GPU.

The suite follows trio's ``testing/_check_streams.py``: a test supplies a
``make_pair()`` returning ``(producer, consumer, carry)`` where ``carry(fds)``
moves the producer's fds to the consumer (a real socketpair, a dup, ...) and
returns the consumer's copies; :func:`check_transport` then runs every check.
"""

from __future__ import annotations

import gc
import itertools
import os
from collections.abc import Callable
from typing import Any

import msgpack

from ..errors import TransportError
from ._base import Imported, Region, Transport

__all__ = [
    "FakeCudaIpcBackend",
    "FakeDeviceStorage",
    "check_transport",
    "imported_bytes",
    "region_of",
]

TransportPair = tuple[Transport, Transport, Callable[[list[int]], list[int]]]


class FakeDeviceStorage:
    """Stands for a torch CUDA storage: bytes that producer and consumer share."""

    def __init__(self, data: bytearray) -> None:
        self.data = data

    def nbytes(self) -> int:
        return len(self.data)


class FakeCudaIpcBackend:
    """A CudaIpcBackend over process memory; counts opens for cache tests."""

    def __init__(self, uuid: str = "GPU-fake-0", version: str = "12.1") -> None:
        self.uuid, self.version = uuid, version
        self.blocks: dict[bytes, FakeDeviceStorage] = {}
        self.opens = 0
        self._ids = itertools.count()

    def accepts(self, device: str) -> bool:
        # It stands for a CUDA device: selection treats its memory as CUDA memory.
        return device == "cpu" or device.startswith("cuda")

    def device_uuid(self, device: str) -> str:
        return self.uuid

    def local_index(self, uuid: str) -> int | None:
        return 0 if uuid == self.uuid else None

    def runtime_version(self) -> str:
        return self.version

    def share(self, storage: Any) -> dict[str, Any]:
        for key, known in self.blocks.items():
            if known is storage:
                return {"h": key}
        key = next(self._ids).to_bytes(8, "little")
        self.blocks[key] = storage
        return {"h": key}

    def cache_key(self, share: dict[str, Any]) -> bytes:
        return bytes(share["h"])

    def open(self, share: dict[str, Any], index: int) -> Any:
        self.opens += 1
        return FakeDeviceStorage(self.blocks[bytes(share["h"])].data)  # same memory


def region_of(data: bytes, device: str = "cpu") -> Region:
    """A Region over ``data`` (a device region carries a FakeDeviceStorage)."""

    def write_to(buf: memoryview) -> None:
        buf[:] = data

    storage = FakeDeviceStorage(bytearray(data)) if device != "cpu" else None
    return Region(len(data), write_to, device=device, storage=storage, owner=data)


def imported_bytes(imported: Imported) -> bytes:
    if imported.buffer is not None:
        return bytes(
            memoryview(imported.buffer)[imported.offset : imported.offset + imported.nbytes]
        )
    return bytes(imported.storage.data)


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


def _round_trip(pair: TransportPair, data: bytes, device: str = "cpu") -> tuple[Imported, Region]:
    producer, consumer, carry = pair
    region = region_of(data, device)
    exported = producer.export(region, peer=1)
    handle = msgpack.unpackb(msgpack.packb(exported.handle, use_bin_type=True), raw=False)
    fds = carry(exported.fds)
    del exported  # the message is "sent": the producer's fds may close now
    return consumer.import_(handle, fds, peer=0), region


def check_round_trip(make_pair: Callable[[], TransportPair], device: str = "cpu") -> None:
    pair = make_pair()
    for size in (1, 7, 4096, 65537, (1 << 20) + 3):
        data = os.urandom(size)
        imported, _ = _round_trip(pair, data, device)
        assert imported.nbytes == size
        assert imported_bytes(imported) == data


def check_copy_on_write(make_pair: Callable[[], TransportPair], device: str = "cpu") -> None:
    """A consumer's writes reach neither the producer nor another import."""
    pair = make_pair()
    data = bytes(range(256)) * 64
    first, region = _round_trip(pair, data, device)
    second, _ = _round_trip(pair, data, device)
    memoryview(first.buffer)[first.offset] = (data[0] + 1) % 256
    assert imported_bytes(second) == data
    assert region.owner == data


def check_no_leak(make_pair: Callable[[], TransportPair], device: str = "cpu") -> None:
    """After use and release, the process holds no more fds than before."""
    pair = make_pair()
    gc.collect()
    before = _fd_count()
    for _ in range(20):
        imported, _region = _round_trip(pair, os.urandom(100_000), device)
        del imported
    gc.collect()
    assert _fd_count() == before


def check_malformed(make_pair: Callable[[], TransportPair], device: str = "cpu") -> None:
    """Garbage handles are a TransportError, never a crash or a leak."""
    _producer, consumer, _carry = make_pair()
    for handle in (None, {}, {"off": -1, "n": 5}, {"b": 5}, {"id": "x"}, {"tok": "x"}, [1, 2]):
        try:
            consumer.import_(handle, [], peer=0)
        except TransportError:
            pass
        else:
            raise AssertionError(f"{type(consumer).__name__} accepted {handle!r}")


def check_transport(
    make_pair: Callable[[], TransportPair], *, device: str = "cpu", copy_on_write: bool = True
) -> None:
    """Run the whole suite. ``copy_on_write=False`` for transports that share
    memory read-write by design (CUDA IPC)."""
    check_round_trip(make_pair, device)
    if copy_on_write:
        check_copy_on_write(make_pair, device)
    check_no_leak(make_pair, device)
    check_malformed(make_pair, device)
