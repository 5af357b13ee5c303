"""The registry of extension types: which types travel, under which code.

Codes below 32 are pyisolate's (tuples and sets, actor references, tensors,
arrays, buffers); users register 32..127 with :func:`register_type`. A type
may be registered by its qualified name, so that the transport layer can
register torch and numpy types without importing either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._contexts import Decoder, Encoder

__all__ = ["ExtRegistry", "default_registry"]


class _Entry:
    __slots__ = ("code", "decode", "encode")

    def __init__(self, code: int, encode: Encoder, decode: Decoder) -> None:
        self.code = code
        self.encode = encode
        self.decode = decode


class ExtRegistry:
    """Maps Python types to msgpack extension codes.

    Types may be registered by class or, to avoid importing heavy modules, by
    their fully qualified name (``"torch.Tensor"``): the name is matched
    against each class in the object's MRO when such an object is first seen.
    """

    def __init__(self) -> None:
        self._by_type: dict[type, _Entry] = {}
        self._by_name: dict[str, _Entry] = {}
        self._by_code: dict[int, _Entry] = {}
        self._key_by_code: dict[int, str] = {}

    def register(self, cls: type | str, code: int, encode: Encoder, decode: Decoder) -> None:
        """Register ``cls`` (a class, or its ``module.Qualname``) under ``code``.

        Registering the same type again replaces its entry; giving a code that
        another type holds is an error.
        """
        if not 0 <= code <= 127:
            raise ValueError(f"extension code must be in 0..127, not {code}")
        key = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
        holder = self._key_by_code.get(code)
        if holder is not None and holder != key:
            raise ValueError(f"extension code {code} is already registered for {holder}")
        entry = _Entry(code, encode, decode)
        self._key_by_code[code] = key
        self._by_code[code] = entry
        if isinstance(cls, str):
            self._by_name[cls] = entry
        else:
            self._by_type[cls] = entry
        # Resolutions cached from the previous entry must not survive it.
        for cached, old in list(self._by_type.items()):
            if old.code == code and old is not entry:
                del self._by_type[cached]

    def lookup(self, cls: type) -> _Entry | None:
        entry = self._by_type.get(cls)
        if entry is not None:
            return entry
        for base in cls.__mro__:
            entry = self._by_type.get(base) or self._by_name.get(
                f"{base.__module__}.{base.__qualname__}"
            )
            if entry is not None:
                self._by_type[cls] = entry  # cache the resolution
                return entry
        return None

    def decoder(self, code: int) -> Decoder | None:
        entry = self._by_code.get(code)
        return entry.decode if entry else None

    def copy(self) -> ExtRegistry:
        new = ExtRegistry()
        new._by_type = dict(self._by_type)
        new._by_name = dict(self._by_name)
        new._by_code = dict(self._by_code)
        new._key_by_code = dict(self._key_by_code)
        return new


#: The process-wide registry: the runtime and transports add to it at import.
default_registry = ExtRegistry()
