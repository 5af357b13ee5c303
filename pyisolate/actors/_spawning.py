"""What one spawn asks for, and the checks made before anything starts.

``Runtime.spawn(target, *args, name=, sandbox=, options=, init=, **kwargs)``
becomes a :class:`SpawnRequest`; supervisors build requests of their own
(a reused actor id, a template scope), which is why those settings are not
keywords of the public method. ``init`` carries constructor keywords whose
names spawn itself takes (``name``, ``sandbox``, ``options``, ``init``); a
constructor keyword given plainly under such a name is refused when the
class's constructor takes it too, with a message that says how to pass it.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Mapping
from typing import Any

import attrs

from ._options import SpawnOptions
from ._spawnargs import SandboxArg, is_installation_path, too_broad

__all__ = ["RESERVED", "SpawnRequest", "check_collisions", "code_paths"]

#: spawn()'s own keywords; everything else goes to the actor's constructor.
RESERVED = ("name", "sandbox", "options", "init")


@attrs.frozen
class SpawnRequest:
    """One actor to start. ``actor_id``: reuse an id (a supervised restart:
    references follow the actor); None for a new one. ``template_scope``:
    False to follow ``options.template``; True for a shared template; any
    other value scopes a template to one owner."""

    target: type | str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    name: str | None = None
    sandbox: SandboxArg | None = None
    options: SpawnOptions | None = None
    actor_id: int | None = None
    template_scope: Any = False


def check_collisions(target: type | str, given: Mapping[str, Any], init: Mapping[str, Any]) -> None:
    """Refuse ``spawn(Person, name="Bob")`` when ``Person(name=...)`` exists:
    the keyword would name the actor, not reach the constructor."""
    if not isinstance(target, type):
        return  # "module:Class": the actor says so if its constructor misses one
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return
    for key, value in given.items():
        if value is None or key not in params or key in init:
            continue
        raise TypeError(
            f"{target.__qualname__}() takes a {key!r} argument, and spawn() takes {key!r} "
            f"for itself ({_meaning[key]}). Pass the constructor's as "
            f"rt.spawn({target.__qualname__}, init={{{key!r}: ...}})"
            + ("" if key == "init" else f", and spawn's as {key}=... beside it")
        )


_meaning = {
    "name": "the actor's name",
    "sandbox": "the actor's sandbox",
    "options": "its SpawnOptions",
    "init": "constructor keywords",
}


def code_paths(
    options: SpawnOptions, main_path: str | None, pkg_root: str
) -> tuple[list[str], list[str], bool]:
    """The actor's sys.path, the directories bound read-only into its sandbox,
    and whether the main script is bound alone (without the files beside it)."""
    sys_path = [os.path.abspath(p) if p else os.getcwd() for p in sys.path if isinstance(p, str)]
    if options.python:
        # Another interpreter (a virtual environment) keeps its own packages;
        # it only gets our code directories in front of them.
        sys_path = [p for p in sys_path if not is_installation_path(p)]
    ro_binds = [p for p in sys_path if not too_broad(p)] + [pkg_root]
    alone = False
    if main_path:
        # The script's directory holds the modules it imports; but a script in
        # a temp or home directory gets itself alone: binding those would show
        # the sandbox every file beside it.
        main_dir = os.path.dirname(main_path)
        alone = too_broad(main_dir)
        ro_binds.append(main_path if alone else main_dir)
    if options.python:
        ro_binds.append(os.path.dirname(os.path.dirname(os.path.abspath(options.python))))
    return sys_path, ro_binds, alone
