"""Finding the actor's class in the actor process, with errors that name the fix.

The class is ``"module:Qualname"``; a class defined in the host's main script
is found by running that script as ``__mp_main__`` (as multiprocessing's
spawn does), which is why a script without an ``if __name__ == "__main__":``
guard would start a second Runtime here: that, a sandbox that cannot see the
modules beside a script, an unreadable file, and a constructor that missed an
argument named like one of spawn()'s own keywords each get a message that
says what to do.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

__all__ = ["explained", "importing_main", "resolve_target"]


def resolve_target(boot: dict[str, Any]) -> type:
    try:
        return _import_target(boot)
    except ModuleNotFoundError as exc:
        if not boot.get("main_alone"):
            raise
        raise ModuleNotFoundError(
            f"{exc}. This actor runs in a sandbox that sees the script {boot['main_path']} but "
            "not the files beside it (a script in a temporary or home directory is bound "
            "alone: binding the whole directory would show the sandbox every file in it). "
            "Move the script and the modules it imports into a directory of their own, bind "
            "that directory with SandboxPolicy(ro_binds=[...]), or spawn with "
            "sandbox=SandboxMode.DISABLED",
            name=exc.name,
        ) from exc
    except PermissionError as exc:
        if os.getuid() == 0:
            raise
        raise PermissionError(
            f"{exc}. This actor runs as uid {os.getuid()} inside its sandbox and cannot read "
            "that file: make it and its directory readable by others (chmod o+rX), or spawn "
            "with sandbox=SandboxMode.DISABLED"
        ) from exc


def _import_target(boot: dict[str, Any]) -> type:
    main_path = boot.get("main_path")
    if main_path:
        _import_main(main_path)
    module_name, _, qualname = boot["target"].partition(":")
    if module_name == "__main__":
        module_name = "__mp_main__"
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise TypeError(f"{boot['target']} is not a class")
    return obj


def _import_main(path: str) -> None:
    """Run the host's main script as ``__mp_main__`` (as multiprocessing's spawn
    does) so that classes defined there can be actors; its ``if __name__ ==
    '__main__'`` block does not run."""
    import runpy
    import types

    global importing_main
    module = types.ModuleType("__mp_main__")
    sys.modules["__mp_main__"] = module
    importing_main = path  # a Runtime started now means the script has no guard
    try:
        namespace = runpy.run_path(path, run_name="__mp_main__")
    except RuntimeError as exc:
        # The script's own anyio.run()/asyncio.run() ran inside this actor's loop.
        if any(hint in str(exc).lower() for hint in _NESTED_RUN):
            raise RuntimeError(
                f"{path} tried to run its event loop while an actor process was importing it "
                "(actors import the main script to find the classes defined there). Put the "
                'code that starts the Runtime under  if __name__ == "__main__":'
            ) from exc
        raise
    finally:
        importing_main = None
    module.__dict__.update(namespace)


_NESTED_RUN = ("running event loop", "from inside a run()", "already running")

#: The host's main script while this actor process imports it (see
#: Runtime.__aenter__, which refuses to start then).
importing_main: str | None = None


def explained(exc: Exception) -> Exception:
    """A constructor that misses an argument named like one of spawn()'s own
    keywords most likely had it taken by spawn: say how to pass it."""
    text = str(exc)
    if isinstance(exc, TypeError) and "argument" in text:
        for key in ("name", "sandbox", "options", "init"):
            if f"'{key}'" in text:
                return TypeError(
                    f"{text} (spawn() takes name=, sandbox=, options= and init= for itself: "
                    f"pass a constructor argument called {key!r} as init={{{key!r}: ...}})"
                )
    return exc
