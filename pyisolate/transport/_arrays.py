"""The codec extensions for numpy arrays and numpy scalars (see ``_tensors``
for the choices they share with tensors: layouts kept, object dtypes refused,
every handle checked against the memory received)."""

from __future__ import annotations

from typing import Any

import msgpack

from ..errors import ProtocolError
from . import _segments
from ._base import Region
from ._transfer import (
    _check_bounds,
    _ints,
    _pack,
    _passes_fds,
    _pick,
    _receive,
    _send,
    _unpack,
)

# No public names: ``_codecs.install`` registers these functions by name.
__all__: list[str] = []


# -- numpy ------------------------------------------------------------------------


def _encode_ndarray(arr: Any, ctx: Any) -> bytes:
    import numpy as np

    if arr.dtype.hasobject:
        raise TypeError(
            f"cannot send a numpy.ndarray of dtype {arr.dtype}: it holds Python objects"
        )
    if type(arr) is not np.ndarray:
        arr = np.asarray(arr)  # subclasses (np.matrix, masked arrays) travel as plain arrays
    fortran = bool(arr.flags.f_contiguous and not arr.flags.c_contiguous)
    if fortran:
        arr = arr.T
    elif not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    descr = np.lib.format.dtype_to_descr(arr.dtype)
    body: dict[str, Any] = {"dt": descr, "sh": list(arr.shape), "f": fortran, "x": None}
    if arr.nbytes:
        transport = _pick(ctx, "cpu", arr.nbytes)
        entry, start = _array_mapping(arr)
        shared = None
        if entry is not None and _passes_fds(ctx, transport):
            shared = _segments.shared_segment(entry, start)
        region = Region(arr.nbytes, _ndarray_writer(np, arr), shared=shared, owner=arr)
        body["x"] = _send(ctx, transport, region)
    return _pack(body)


def _array_mapping(arr: Any) -> tuple[_segments.Mapping | None, int]:
    import mmap

    base = arr
    while getattr(base, "base", None) is not None and not isinstance(base, mmap.mmap):
        base = base.base
    if isinstance(base, mmap.mmap):
        entry = _segments.find_mapping(mm=base)
        if entry is not None:
            return entry, arr.__array_interface__["data"][0] - entry.address
    return None, 0


def _ndarray_writer(np: Any, arr: Any) -> Any:
    def write_to(buf: memoryview) -> None:
        np.copyto(np.frombuffer(buf, dtype=np.uint8), arr.reshape(-1).view(np.uint8))

    return write_to


def _numpy_dtype(np: Any, descr: Any) -> Any:
    def as_tuples(d: Any) -> Any:
        # msgpack turned the descr's tuples into lists: [name, descr(, shape)] per field
        if not isinstance(d, list):
            return d
        fields = []
        for name, sub, *shape in d:
            fields.append(
                (
                    tuple(name) if isinstance(name, list) else name,
                    as_tuples(sub),
                    *(tuple(x) for x in shape),
                )
            )
        return fields

    try:
        dtype = np.lib.format.descr_to_dtype(as_tuples(descr))
    except Exception:
        raise ProtocolError(f"unknown numpy dtype {descr!r}") from None
    if dtype.hasobject:
        raise ProtocolError("refusing a numpy dtype that holds Python objects")
    return dtype


def _decode_ndarray(payload: bytes, ctx: Any) -> Any:
    import numpy as np

    body = _unpack(payload)
    dtype = _numpy_dtype(np, body.get("dt"))
    shape = _ints(body.get("sh"), "shape")
    if body.get("x") is None:
        arr = np.empty(shape, dtype=dtype)
    else:
        imported = _receive(ctx, body["x"])
        count = 1
        for n in shape:
            count *= n
        _check_bounds(imported, 0, count, dtype.itemsize)
        arr = np.ndarray(shape, dtype=dtype, buffer=imported.buffer, offset=imported.offset)
    return arr.T if body.get("f") else arr


# -- numpy scalars ---------------------------------------------------------------


def _encode_np_scalar(value: Any, ctx: Any) -> bytes:
    """[descr, raw bytes]; numpy strings as ["U", str] / ["S", bytes] (their
    dtype's size is their length, and "" has none)."""
    import numpy as np

    if isinstance(value, np.str_):
        return _pack(["U", str(value)])
    if isinstance(value, np.bytes_):
        return _pack(["S", bytes(value)])
    dtype = value.dtype
    if dtype.hasobject:
        raise TypeError(f"cannot send a numpy scalar of dtype {dtype}: it holds Python objects")
    return _pack([np.lib.format.dtype_to_descr(dtype), value.tobytes()])


def _decode_np_scalar(payload: bytes, ctx: Any) -> Any:
    import numpy as np

    body = msgpack.unpackb(payload, raw=False, max_bin_len=1 << 20, max_str_len=1 << 20)
    if not (isinstance(body, list) and len(body) == 2):
        raise ProtocolError("malformed numpy scalar")
    descr, raw = body
    if descr == "U" and isinstance(raw, str):
        return np.str_(raw)
    if descr == "S" and isinstance(raw, bytes):
        return np.bytes_(raw)
    dtype = _numpy_dtype(np, descr)
    if not isinstance(raw, bytes) or len(raw) != dtype.itemsize or not dtype.itemsize:
        raise ProtocolError(f"malformed numpy scalar of dtype {dtype}")
    return np.frombuffer(raw, dtype=dtype, count=1)[0]
