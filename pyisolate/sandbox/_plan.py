"""``LaunchPlan``: everything needed to start one (possibly sandboxed) process.

A plan is built per start and used once: bwrap *reads* the seccomp program and
the synthesised /etc/passwd from memfds the plan owns, which advances their
shared file offset, so a second launch from the same plan would find them
empty. Build a new plan for every (re)start (it costs microseconds) and call
:meth:`LaunchPlan.close` once the child has started (``popen`` does it).

A plan may carry the actor's cgroup (``plan.cgroup``, see ``_cgroup``): its
argv then joins it before anything else runs, and whoever starts the process
owns it: ``cgroup.kill()`` to end the actor and all it left, ``cgroup.close()``
once the process is reaped.
"""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING, Any, Literal

import attrs

from ._bwrap import bwrap_args, interpreter_paths, nproc_is_actors, passwd_data, prelude
from ._policy import GPU_ENV_ALLOW, SandboxPolicy
from ._seccomp import build_filter

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from ._cgroup import ActorCgroup

__all__ = ["Isolation", "LaunchPlan", "sandbox_env", "sandboxed_plan", "unsandboxed_plan"]

Isolation = Literal["full", "degraded", "none"]

_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


@attrs.frozen(eq=False)
class LaunchPlan:
    """How to start the actor: ``subprocess.Popen(plan.argv, env=plan.env,
    pass_fds=plan.pass_fds)`` (or anyio's ``open_process`` with the same three).

    ``isolation``: "full", "degraded" (no user namespace) or "none".
    ``description``: one human line for logs and ``doctor``.
    ``pass_fds`` contains the caller's fds plus the plan's own memfds (seccomp
    program, passwd, group); the plan owns and closes the latter in
    :meth:`close`, the caller keeps owning its own.
    ``cgroup``: the actor's own cgroup (None where the host cannot make one
    or none was asked for); ``close`` leaves it alone: the process's owner
    calls ``cgroup.kill()`` and, once it is reaped, ``cgroup.close()``.
    """

    argv: tuple[str, ...]
    env: dict[str, str]
    pass_fds: tuple[int, ...]
    isolation: Isolation
    description: str
    owned_fds: list[int] = attrs.field(factory=list, repr=False)
    cgroup: ActorCgroup | None = None

    def close(self) -> None:
        """Close the plan's own fds (idempotent). Call after the child started."""
        while self.owned_fds:
            os.close(self.owned_fds.pop())

    def actor_returncode(self, returncode: int) -> int:
        """The actor's own exit status from the launched process's ``returncode``.

        Under bwrap the host sees bwrap's status, which reports an actor killed
        by signal N as ``128 + N``; this maps it back to ``-N`` as Popen would.
        A sandboxed actor that itself exits with 129..159 reads as a signal.
        """
        if self.isolation != "none" and 128 < returncode < 128 + 32:
            return -(returncode - 128)
        return returncode

    def popen(self, **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start the process with ``subprocess.Popen`` and close the plan's fds.

        ``kwargs`` go to Popen (stdin/stdout/stderr...); ``args``, ``env`` and
        ``pass_fds`` come from the plan. The caller owns ``plan.cgroup``.
        """
        try:
            return subprocess.Popen(
                self.argv, env=self.env, pass_fds=self.pass_fds, close_fds=True, **kwargs
            )
        except BaseException:
            if self.cgroup is not None:
                self.cgroup.close()
            raise
        finally:
            self.close()

    def __enter__(self) -> LaunchPlan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sandbox_env(policy: SandboxPolicy, env: Mapping[str, str], *, gpu: bool) -> dict[str, str]:
    """The actor's environment: allowed host variables, then the policy's own,
    then the runtime's (``env``), later ones winning. Nothing else leaks."""
    allow = policy.env_allow + (GPU_ENV_ALLOW if gpu else ())
    out = {name: os.environ[name] for name in allow if name in os.environ}
    out.setdefault("PATH", _DEFAULT_PATH)
    out["HOME"] = "/tmp"
    out["TMPDIR"] = "/tmp"
    out.update(policy.env)
    out.update(env)
    return out


def _memfd(name: str, data: bytes) -> int:
    # CLOEXEC so unrelated children never inherit it; Popen's pass_fds clears
    # the flag in the one child that should.
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def sandboxed_plan(
    policy: SandboxPolicy,
    argv: Sequence[str],
    *,
    bwrap: str,
    isolation: Literal["full", "degraded"],
    as_root: bool,
    env: Mapping[str, str],
    ro_binds: Iterable[str],
    rw_binds: Iterable[str],
    socket_paths: Iterable[str],
    pass_fds: Iterable[int],
    gpu: bool,
    use_helpers: bool = True,
    cgroup: ActorCgroup | None = None,
) -> LaunchPlan:
    """A plan running ``argv`` under bwrap. "full" adds a user namespace unless
    the host is root (root drops to ``policy.uid`` instead, see ``_bwrap``).
    With ``cgroup``, the launch joins it before bwrap starts."""
    if not argv:
        raise ValueError("argv must not be empty")
    binds = [*interpreter_paths(argv[0]), *ro_binds]
    passwd, group = passwd_data(policy, as_root=as_root)
    owned: list[int] = []
    try:
        owned.append(_memfd("pyisolate-seccomp", build_filter()))
        owned.append(_memfd("pyisolate-passwd", passwd))
        owned.append(_memfd("pyisolate-group", group))
        user_namespace = isolation == "full" and not as_root
        args = bwrap_args(
            policy,
            bwrap=bwrap,
            as_root=as_root,
            user_namespace=user_namespace,
            ro_binds=binds,
            rw_binds=rw_binds,
            socket_paths=socket_paths,
            gpu=gpu,
            seccomp_fd=owned[0],
            passwd_fd=owned[1],
            group_fd=owned[2],
        )
        nproc = nproc_is_actors(policy, as_root=as_root, user_namespace=user_namespace)
        args += prelude(policy, as_root=as_root, use_helpers=use_helpers, nproc=nproc)
        args += list(argv)
        if cgroup is not None:
            args = cgroup.join_argv(args)
    except BaseException:
        for fd in owned:
            os.close(fd)
        raise
    who = f"uid {policy.uid}" if as_root else "the host uid in a user namespace"
    if isolation == "degraded":
        who = "the host uid, no user namespace (degraded)"
    net = "host network" if policy.network else "no network"
    tmp, shm = policy.tmpfs_sizes()
    description = (
        f"bubblewrap sandbox ({isolation}): runs as {who}, {net}, seccomp filter, "
        f"private /tmp ({_mib(tmp)}) and /dev/shm ({_mib(shm)})"
        f"{', GPU devices' if gpu else ''}{_cgroup_text(cgroup)}"
    )
    return LaunchPlan(
        argv=tuple(args),
        env=sandbox_env(policy, env, gpu=gpu),
        pass_fds=(*pass_fds, *owned),
        isolation=isolation,
        description=description,
        owned_fds=owned,
        cgroup=cgroup,
    )


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.0f} MiB"


def _cgroup_text(cgroup: ActorCgroup | None) -> str:
    return f", cgroup {cgroup.path}" if cgroup is not None else ""


def unsandboxed_plan(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    pass_fds: Iterable[int],
    reason: str,
    cgroup: ActorCgroup | None = None,
) -> LaunchPlan:
    """A plain child process: the host's environment plus ``env``, as on
    macOS and other systems without namespaces (the actor runs with the
    host's rights). With
    ``cgroup`` it joins that first: its ceilings apply, and killing it ends
    every process the actor started, daemonised or not."""
    return LaunchPlan(
        argv=tuple(cgroup.join_argv(argv) if cgroup is not None else argv),
        env={**os.environ, **env},
        pass_fds=tuple(pass_fds),
        isolation="none",
        description=f"no sandbox: {reason}{_cgroup_text(cgroup)}",
        cgroup=cgroup,
    )
