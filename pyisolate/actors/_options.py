"""Per-actor start options.

``Runtime.spawn`` reserves three keywords (``name``, ``sandbox``, ``options``)
and passes every other keyword to the actor's constructor; everything else
about how the actor runs lives here, so that option names never collide with
constructor arguments.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["SpawnOptions", "default_compute_threads"]


def default_compute_threads() -> int:
    """The compute-thread budget an actor gets by default.

    Half the cores, at least one: host and actor together then do not
    oversubscribe the machine (on 2 cores, a torch actor with its default thread
    count made a 1 MiB call four times slower).
    """
    return max(1, (os.cpu_count() or 2) // 2)


def _str_dict(value: Mapping[str, str]) -> dict[str, str]:
    return dict(value)


@attrs.frozen
class SpawnOptions:
    """How one actor process runs.

    * ``python``: the interpreter (e.g. a virtual environment's); default: the host's.
    * ``env``: extra environment variables for the actor.
    * ``sync_threads``: how many plain ``def`` methods may run at once (on worker
      threads); async methods always run concurrently on the event loop.
    * ``compute_threads``: the budget for torch / OpenMP / MKL threads (sets
      ``OMP_NUM_THREADS`` and friends unless ``env`` sets them).
    * ``start_timeout``: seconds from launch to ready before ActorStartError.
    * ``stop_timeout``: default grace period of ``stop()`` before the kill.
    * ``call_timeout``: default timeout of every call through the reference.
    * ``backend``: the actor's event loop, ``"asyncio"`` or ``"trio"``.
    * ``cwd``: the actor's working directory (default: the host's).
    * ``template``: fork the actor from a warm template process instead of
      starting an interpreter (a fork plus the constructor: milliseconds, and
      pages shared with the template). Actors spawned this way with the same
      settings share the template's sandbox (its namespaces and private
      ``/tmp``) and uid: they are isolated from the host, not from each other.
      Supervisors give each child a template of its own instead.
    """

    python: str | None = None
    env: dict[str, str] = attrs.field(factory=dict, converter=_str_dict)
    sync_threads: int = 1
    compute_threads: int | None = None
    start_timeout: float = 60.0
    stop_timeout: float = 5.0
    call_timeout: float | None = None
    backend: str = "asyncio"
    cwd: str | None = None
    template: bool = False

    def __attrs_post_init__(self) -> None:
        if self.sync_threads < 1:
            raise ValueError("sync_threads must be at least 1")
        if self.compute_threads is not None and self.compute_threads < 1:
            raise ValueError("compute_threads must be at least 1")
        if self.backend not in ("asyncio", "trio"):
            raise ValueError(f"backend must be 'asyncio' or 'trio', not {self.backend!r}")
        if self.start_timeout <= 0 or self.stop_timeout < 0:
            raise ValueError("timeouts must be positive")
