"""Supervision: Erlang/OTP supervision trees over pyisolate's actors.

A :class:`Supervisor` spec names its children (:class:`ChildSpec`), a
strategy, a restart intensity; ``await rt.supervise(spec)`` starts it and
returns a :class:`SupervisorHandle`, whose references follow their child
across restarts. This package sits above :mod:`pyisolate.actors` and drives a
runtime only through the narrow interface in ``_host`` (``SupervisorHost``);
the runtime does not import it.

Names are imported on first use: an actor module that marks a method
:func:`idempotent` loads the vocabulary, not the supervisor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._blocking import BlockingSupervisor
    from ._handle import SupervisorHandle
    from ._policy import BRUTAL_KILL, Backoff, Heartbeat, Restart, Strategy, idempotent
    from ._ref import SupervisedRef
    from ._spec import ChildSpec, Supervisor
    from ._stats import ChildCounts, ChildInfo, SupervisorStats

__all__ = [
    "BRUTAL_KILL",
    "Backoff",
    "BlockingSupervisor",
    "ChildCounts",
    "ChildInfo",
    "ChildSpec",
    "Heartbeat",
    "Restart",
    "Strategy",
    "SupervisedRef",
    "Supervisor",
    "SupervisorHandle",
    "SupervisorStats",
    "idempotent",
]

_WHERE = {
    "BRUTAL_KILL": "._policy",
    "Backoff": "._policy",
    "BlockingSupervisor": "._blocking",
    "ChildCounts": "._stats",
    "ChildInfo": "._stats",
    "ChildSpec": "._spec",
    "Heartbeat": "._policy",
    "Restart": "._policy",
    "Strategy": "._policy",
    "SupervisedRef": "._ref",
    "Supervisor": "._spec",
    "SupervisorHandle": "._handle",
    "SupervisorStats": "._stats",
    "idempotent": "._policy",
}

__getattr__, __dir__ = lazy_exports(__name__, globals(), _WHERE)
