"""The codec extensions the transport package adds to a registry, and their codes.

Torch tensors, numpy arrays, :class:`OutOfBand` buffers, large bytes and numpy
scalars travel through every codec as msgpack extensions. :func:`install`
registers them with stubs that import :mod:`._tensors` (the real encoders) on
first use, so a process that never moves a tensor never imports the
transports, torch or numpy. The runtime and the tests both install through
:func:`install`; the codes and the encoders' names live only here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._wire import ExtRegistry

__all__ = [
    "CODE_LARGE_BYTES",
    "CODE_NDARRAY",
    "CODE_NP_SCALAR",
    "CODE_OUT_OF_BAND",
    "CODE_TENSOR",
    "OutOfBand",
    "install",
]

CODE_TENSOR = 8
CODE_NDARRAY = 9
CODE_OUT_OF_BAND = 10
CODE_LARGE_BYTES = 11
CODE_NP_SCALAR = 12


@attrs.frozen
class OutOfBand:
    """Wrap a large bytes-like object to send it beside the envelope; it arrives
    as a writable (copy-on-write) ``memoryview``."""

    data: Any


_TENSORS = "pyisolate.transport._tensors"
_ARRAYS = "pyisolate.transport._arrays"
# The codec wraps bytes-likes over the inline threshold in this class (by name:
# it is not part of _wire's public surface, and naming it imports nothing).
_LARGE_BYTES = "pyisolate._wire._codec.LargeBytes"

#: (type or qualified type name, code, module, encoder, decoder)
_EXTENSIONS: tuple[tuple[type | str, int, str, str, str], ...] = (
    ("torch.Tensor", CODE_TENSOR, _TENSORS, "_encode_tensor", "_decode_tensor"),
    ("numpy.ndarray", CODE_NDARRAY, _ARRAYS, "_encode_ndarray", "_decode_ndarray"),
    (OutOfBand, CODE_OUT_OF_BAND, _TENSORS, "_encode_oob", "_decode_oob"),
    (_LARGE_BYTES, CODE_LARGE_BYTES, _TENSORS, "_encode_large_bytes", "_decode_large_bytes"),
    ("numpy.generic", CODE_NP_SCALAR, _ARRAYS, "_encode_np_scalar", "_decode_np_scalar"),
)


def _lazy(module: str, function: str) -> Callable[[Any, Any], Any]:
    """A stand-in for ``module.<function>`` that imports it on its first call."""
    real: Callable[[Any, Any], Any] | None = None

    def call(value: Any, ctx: Any) -> Any:
        nonlocal real
        if real is None:
            real = getattr(importlib.import_module(module), function)
        return real(value, ctx)

    call.__name__ = call.__qualname__ = function
    return call


def install(registry: ExtRegistry) -> None:
    """Register the tensor, ndarray, OutOfBand, large bytes and numpy scalar
    extensions in ``registry``. Imports neither torch, numpy nor the transports;
    registering again replaces the entries (idempotent)."""
    for cls, code, module, encoder, decoder in _EXTENSIONS:
        registry.register(cls, code, _lazy(module, encoder), _lazy(module, decoder))
