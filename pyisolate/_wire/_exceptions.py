"""Exceptions across the wire, without pickle.

An exception travels as ``[module, qualname, args, traceback_text]``. On the
receiving side a builtin type is rebuilt as itself (a remote ``KeyError`` is a
local ``KeyError``); pyisolate's own errors are rebuilt as themselves too;
anything else becomes :class:`~pyisolate.errors.RemoteError` with the type
name. The remote traceback is attached as ``__cause__`` so that Python prints
it beneath the caller's traceback.
"""

from __future__ import annotations

import builtins
import traceback
from typing import Any

from .. import errors
from ..errors import RemoteError, RemoteTraceback

__all__ = ["exception_from_wire", "exception_to_wire"]

_NATIVE = (type(None), bool, int, float, str, bytes)

# Builtins that would end or confuse the receiving process if re-raised as is.
_NOT_REBUILT = {
    "SystemExit",
    "KeyboardInterrupt",
    "GeneratorExit",
    "StopIteration",
    "StopAsyncIteration",
    "BaseExceptionGroup",
    "ExceptionGroup",
}


def exception_to_wire(exc: BaseException, *, with_traceback: bool = True) -> list[Any]:
    cls = type(exc)
    args = [a if isinstance(a, _NATIVE) else repr(a) for a in exc.args]
    tb = "".join(traceback.format_exception(exc)) if with_traceback else ""
    return [cls.__module__, cls.__qualname__, args, tb]


def exception_from_wire(body: Any, *, actor: str | None = None) -> BaseException:
    """Rebuild an exception; malformed input gives a RemoteError, never a crash."""
    try:
        module, qualname, args, tb = body
        module, qualname, tb = str(module), str(qualname), str(tb)
        args = list(args)
    except Exception:
        return RemoteError(repr(body), type_name="<malformed error>", actor=actor)
    exc = _rebuild(module, qualname, args, actor)
    if exc is None:
        message = str(args[0]) if len(args) == 1 else ", ".join(map(str, args))
        exc = RemoteError(
            message, type_name=f"{module}.{qualname}", remote_traceback=tb, actor=actor
        )
    if tb:
        exc.__cause__ = RemoteTraceback(f'\n"""\n{tb.rstrip()}\n"""')
    return exc


def _rebuild(
    module: str, qualname: str, args: list[Any], actor: str | None
) -> BaseException | None:
    cls: Any = None
    if module == "builtins" and qualname not in _NOT_REBUILT:
        cls = getattr(builtins, qualname, None)
    elif module.startswith("pyisolate.") and qualname in errors.__all__:
        cls = getattr(errors, qualname)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        return None
    try:
        exc: BaseException = cls(*args)
    except Exception:
        try:
            exc = cls(", ".join(map(str, args)))
        except Exception:
            return None
    return exc
