"""The sandbox as a plug point: turn a launch request into a launch plan.

A launcher (cold process, fork from a template, later another interpreter or
another machine) knows *what* to run; a :class:`Sandbox` knows *how* to wrap
it. :class:`Bubblewrap` is the real one, driven by a policy and a mode;
:class:`NullSandbox` is what ``SandboxMode.DISABLED`` gives (and what tests
use to say "no sandbox" without a branch): it still gives the process a cgroup
of its own where the host can make one, so that its descendants die with it.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

import attrs

from ._launch import build_launch
from ._policy import SandboxMode, SandboxPolicy

if TYPE_CHECKING:
    from ._detect import Detection
    from ._plan import LaunchPlan

__all__ = ["Bubblewrap", "LaunchRequest", "NullSandbox", "Sandbox", "sandbox_for"]


@attrs.frozen
class LaunchRequest:
    """What one process needs, whatever wraps it.

    ``argv``: the command. ``env``: the runtime's variables for it (they always
    arrive; a sandbox adds what its policy allows). ``ro_binds``: the code it
    must read (sys.path entries, the main script). ``socket_paths``: ipc
    sockets it must reach. ``pass_fds``: fds it inherits. ``cgroup``: ask for a
    cgroup of its own (see ``build_launch``).
    """

    argv: tuple[str, ...]
    env: dict[str, str] = attrs.field(factory=dict, hash=False)
    ro_binds: tuple[str, ...] = ()
    rw_binds: tuple[str, ...] = ()
    socket_paths: tuple[str, ...] = ()
    pass_fds: tuple[int, ...] = ()
    cgroup: bool = True


class Sandbox(abc.ABC):
    """Wraps a process; see the module docstring. Implementations are frozen
    values: equal sandboxes may share a warm template."""

    @property
    @abc.abstractmethod
    def policy(self) -> SandboxPolicy:
        """The policy it enforces (its uid, limits and binds)."""

    @abc.abstractmethod
    def plan(self, request: LaunchRequest) -> LaunchPlan:
        """The plan that starts ``request`` inside this sandbox. Raises
        SandboxUnavailableError where it cannot (REQUIRED without isolation)."""


@attrs.frozen
class Bubblewrap(Sandbox):
    """bubblewrap, as ``mode`` allows: REQUIRED refuses to degrade, AUTO
    degrades and warns. ``detection`` overrides the probe (tests)."""

    _policy: SandboxPolicy = attrs.field(factory=SandboxPolicy, alias="policy")
    mode: SandboxMode = SandboxMode.AUTO
    detection: Detection | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def policy(self) -> SandboxPolicy:
        return self._policy

    def plan(self, request: LaunchRequest) -> LaunchPlan:
        return build_launch(
            self._policy,
            self.mode,
            list(request.argv),
            env=dict(request.env),
            ro_binds=list(request.ro_binds),
            rw_binds=list(request.rw_binds),
            socket_paths=list(request.socket_paths),
            pass_fds=list(request.pass_fds),
            detection=self.detection,
            cgroup=request.cgroup,
        )


@attrs.frozen
class NullSandbox(Sandbox):
    """No sandbox: the process runs as the host's user, in the host's view of
    the machine, with the host's environment (still in a cgroup of its own
    where the host can make one)."""

    _policy: SandboxPolicy = attrs.field(factory=SandboxPolicy, alias="policy")

    @property
    def policy(self) -> SandboxPolicy:
        return self._policy

    def plan(self, request: LaunchRequest) -> LaunchPlan:
        # build_launch's DISABLED branch ignores the binds: one path for both.
        return Bubblewrap(self._policy, SandboxMode.DISABLED).plan(request)


def sandbox_for(mode: SandboxMode, policy: SandboxPolicy) -> Sandbox:
    """The sandbox a mode and policy ask for."""
    if mode is SandboxMode.DISABLED:
        return NullSandbox(policy)
    return Bubblewrap(policy, mode)
