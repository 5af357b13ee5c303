"""Turning ``spawn``'s arguments into what the child and the sandbox need.

What to import (``"module:Qualname"``, and the main script's path when the
class lives in ``__main__``), which sandbox mode and policy apply, which uid
an actor runs as, and which directories may be bound into its sandbox.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

import attrs

from ..errors import ActorStartError
from ..sandbox import SandboxMode, SandboxPolicy
from ._rundir import base_dir

__all__ = [
    "SandboxArg",
    "is_installation_path",
    "own_uid",
    "sandbox_setting",
    "start_error",
    "target_spec",
    "too_broad",
]


SandboxArg = SandboxMode | SandboxPolicy | tuple[SandboxMode, SandboxPolicy]


def is_installation_path(path: str) -> bool:
    """True for the host interpreter's own directories (stdlib, site-packages)."""
    import site

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages()}
    user_site = site.getusersitepackages()
    if isinstance(user_site, str):
        roots.add(user_site)
    path = os.path.abspath(path)
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots if r)


# Uids for actors when the host is root: one per actor, so that actors cannot
# signal or trace each other and a process limit is per actor, not shared.
# Far above the ranges distributions hand to users and containers.
_ACTOR_UID_BASE = 1_700_000_000
_ACTOR_UID_SPAN = 100_000_000


def own_uid(policy: SandboxPolicy, actor_id: int, *, shared: bool) -> SandboxPolicy:
    """The policy with an actor's own uid and gid, where the host is root and
    the policy kept the default. Actors forked from one shared template keep
    the shared default: they share its sandbox anyway."""
    default = SandboxPolicy()
    if shared or os.geteuid() != 0 or (policy.uid, policy.gid) != (default.uid, default.gid):
        return policy
    uid = _ACTOR_UID_BASE + actor_id % _ACTOR_UID_SPAN
    return attrs.evolve(policy, uid=uid, gid=uid)


def too_broad(path: str) -> bool:
    """True for directories never bound whole: the runtime base or above it,
    the temp directories, home directories, or anything above them."""
    if _covers_runtime_base(path):
        return True
    path = os.path.abspath(path).rstrip("/") + "/"
    broad = (
        "/tmp",
        "/var/tmp",
        "/dev/shm",
        "/home",
        "/root",
        tempfile.gettempdir(),
        os.path.expanduser("~"),
    )
    return any((os.path.abspath(b).rstrip("/") + "/").startswith(path) for b in broad)


def _covers_runtime_base(path: str) -> bool:
    """True for sys.path entries (typically the working directory) that are the
    temp directory or above it: binding those would show the sandbox every
    host temp file, and hide the runtime's socket behind a 0700 directory."""
    base = str(base_dir().resolve())
    path = os.path.abspath(path)
    return path == "/" or base == path or base.startswith(path.rstrip("/") + "/")


def sandbox_setting(value: SandboxArg) -> tuple[SandboxMode, SandboxPolicy]:
    if isinstance(value, SandboxMode):
        return value, SandboxPolicy()
    if isinstance(value, SandboxPolicy):
        return SandboxMode.AUTO, value
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], SandboxMode)
        and isinstance(value[1], SandboxPolicy)
    ):
        return value[0], value[1]
    raise TypeError(
        f"sandbox must be a SandboxMode, a SandboxPolicy or a (mode, policy) pair, not {value!r}"
    )


def start_error(name: str, body: Any) -> ActorStartError:
    try:
        module, qualname, args, tb = body
        detail = f"{module}.{qualname}: {', '.join(map(str, args))}".replace("builtins.", "")
    except Exception:
        detail, tb = repr(body), ""
    error = ActorStartError(
        f"actor {name!r} failed to start: {detail}\n\nRemote traceback:\n{tb}", actor=name
    )
    return error


def target_spec(target: type | str) -> tuple[str, str | None]:
    """``"module:Qualname"`` for the child, plus the main script's path when the
    class lives in ``__main__``."""
    if isinstance(target, str):
        module, sep, qualname = target.partition(":")
        if not sep or not module or not qualname:
            raise ValueError(f"actor target {target!r} is not of the form 'module:Class'")
        return target, None
    if not isinstance(target, type):
        raise TypeError(f"actor target must be a class or 'module:Class', not {target!r}")
    if "<locals>" in target.__qualname__:
        raise ValueError(
            f"{target.__qualname__} is defined inside a function; an actor class must be "
            "defined at module level so that the actor process can import it"
        )
    module = target.__module__
    main_path = None
    if module in ("__main__", "__mp_main__"):
        main_file = getattr(sys.modules.get("__main__"), "__file__", None)
        if not main_file:
            raise ValueError(
                f"{target.__qualname__} is defined in an interactive session; define it "
                "in a module and pass the class or 'module:Class'"
            )
        main_path = os.path.abspath(main_file)
        module = "__main__"
    return f"{module}:{target.__qualname__}", main_path
