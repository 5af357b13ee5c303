"""``build_launch``: the one call the runtime makes to start an actor process.

It decides, from the mode and what detection found, whether the actor runs
fully sandboxed, degraded, or unsandboxed, and returns a :class:`LaunchPlan`.
REQUIRED never silently degrades; AUTO degrades and says so with a
:class:`SandboxWarning` naming the fix.
"""

from __future__ import annotations

import sys
import warnings
from typing import TYPE_CHECKING

from ..environment import ENABLE_CUDA_IPC
from ..errors import SandboxUnavailableError
from ._cgroup import ActorCgroup, new_actor_cgroup
from ._detect import Detection, detect
from ._plan import LaunchPlan, sandboxed_plan, unsandboxed_plan
from ._policy import SandboxMode, SandboxPolicy, SandboxWarning

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["SandboxWarning", "build_launch", "wants_gpu"]


def wants_gpu(policy: SandboxPolicy, env: Mapping[str, str], *, cuda_transport: bool) -> bool:
    """GPU passthrough is on when asked for or when the CUDA transport is in use."""
    return policy.gpu or cuda_transport or env.get(ENABLE_CUDA_IPC) == "1"


def _fix_text(det: Detection) -> str:
    lines = [f"{det.model}: {det.model.summary}."]
    if det.detail:
        lines.append(f"bwrap said: {det.detail}")
    if det.model.remediation:
        lines.append("To fix:\n" + det.model.remediation)
    return "\n".join(lines)


def build_launch(
    policy: SandboxPolicy,
    mode: SandboxMode,
    argv: list[str],
    *,
    env: dict[str, str],
    ro_binds: list[str],
    rw_binds: list[str],
    socket_paths: list[str],
    pass_fds: list[int],
    cuda_transport: bool = False,
    detection: Detection | None = None,
    cgroup: bool = False,
) -> LaunchPlan:
    """Plan the start of one actor process.

    ``argv``: the actor command (``[sys.executable, "-c", ...]``).
    ``env``: the runtime's own variables for the actor; they always arrive.
    ``ro_binds``: what the actor's code needs (sys.path entries, the main
    script's directory); the interpreter's own prefix and site-packages are
    added here. ``rw_binds``: writable host paths. ``socket_paths``: ipc socket
    files to reach, bound at the same path (make them 0666 when the host is
    root: the actor runs as ``policy.uid``). ``pass_fds``: fds the actor
    inherits. ``detection`` overrides the cached probe (tests).
    ``cgroup``: give the process a cgroup of its own where the host can
    (``policy.limits`` become its memory.max, pids.max and cpu.max), joined
    before anything else runs. The caller then owns ``plan.cgroup``: ``kill()``
    ends the actor and every process it left, ``close()`` (once the process is
    reaped) removes it. The runtime asks for one for every actor it starts.

    Raises :class:`~pyisolate.errors.SandboxUnavailableError` for REQUIRED
    where full isolation is impossible. The caller must ``plan.close()`` (or
    use ``plan.popen``) once the child has started; a plan launches once.
    """
    group = new_actor_cgroup(policy.limits) if cgroup else None
    try:
        return _plan(
            policy,
            mode,
            argv,
            env=env,
            ro_binds=ro_binds,
            rw_binds=rw_binds,
            socket_paths=socket_paths,
            pass_fds=pass_fds,
            cuda_transport=cuda_transport,
            detection=detection,
            cgroup=group,
        )
    except BaseException:
        if group is not None:
            group.close()
        raise


def _plan(
    policy: SandboxPolicy,
    mode: SandboxMode,
    argv: list[str],
    *,
    env: dict[str, str],
    ro_binds: list[str],
    rw_binds: list[str],
    socket_paths: list[str],
    pass_fds: list[int],
    cuda_transport: bool,
    detection: Detection | None,
    cgroup: ActorCgroup | None,
) -> LaunchPlan:
    if mode is SandboxMode.DISABLED:
        return unsandboxed_plan(
            argv, env=env, pass_fds=pass_fds, reason="SandboxMode.DISABLED", cgroup=cgroup
        )
    if not sys.platform.startswith("linux") and detection is None:
        if mode is SandboxMode.REQUIRED:
            raise SandboxUnavailableError(
                f"SandboxMode.REQUIRED: no sandbox on {sys.platform} (Linux namespaces needed)"
            )
        return unsandboxed_plan(
            argv,
            env=env,
            pass_fds=pass_fds,
            reason=f"no namespace support on {sys.platform}",
            cgroup=cgroup,
        )
    det = detection or detect()
    if det.level != "full" and mode is SandboxMode.REQUIRED:
        raise SandboxUnavailableError(
            "SandboxMode.REQUIRED but full isolation is not possible.\n" + _fix_text(det)
        )
    if det.level == "none" or det.bwrap is None:
        warnings.warn(
            SandboxWarning("Actors run WITHOUT a sandbox.\n" + _fix_text(det)), stacklevel=3
        )
        return unsandboxed_plan(
            argv, env=env, pass_fds=pass_fds, reason=det.model.summary, cgroup=cgroup
        )
    if det.level == "degraded":
        warnings.warn(
            SandboxWarning(
                "Running in degraded sandbox mode (filesystem isolation, no user namespace).\n"
                + _fix_text(det)
            ),
            stacklevel=3,
        )
    return sandboxed_plan(
        policy,
        argv,
        bwrap=det.bwrap,
        isolation=det.level,
        as_root=det.as_root,
        env=env,
        ro_binds=ro_binds,
        rw_binds=rw_binds,
        socket_paths=socket_paths,
        pass_fds=pass_fds,
        gpu=wants_gpu(policy, env, cuda_transport=cuda_transport),
        cgroup=cgroup,
    )
