"""``LaunchPlan``: everything needed to start one (possibly sandboxed) process.

A plan is built per start and used once: bwrap *reads* the seccomp program and
the synthesised /etc/passwd from memfds the plan owns, which advances their
shared file offset, so a second launch from the same plan would find them
empty. Build a new plan for every (re)start (it costs microseconds) and call
:meth:`LaunchPlan.close` once the child has started (``popen`` does it).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

from ._bwrap import bwrap_args, interpreter_paths, passwd_data, prelude
from ._policy import GPU_ENV_ALLOW, SandboxPolicy
from ._seccomp import build_filter

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
    """

    argv: tuple[str, ...]
    env: dict[str, str]
    pass_fds: tuple[int, ...]
    isolation: Isolation
    description: str
    owned_fds: list[int] = attrs.field(factory=list, repr=False)

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
        ``pass_fds`` come from the plan.
        """
        try:
            return subprocess.Popen(
                self.argv, env=self.env, pass_fds=self.pass_fds, close_fds=True, **kwargs
            )
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
) -> LaunchPlan:
    """A plan running ``argv`` under bwrap. "full" adds a user namespace unless
    the host is root (root drops to ``policy.uid`` instead, see ``_bwrap``)."""
    if not argv:
        raise ValueError("argv must not be empty")
    binds = [*interpreter_paths(argv[0]), *ro_binds]
    passwd, group = passwd_data(policy, as_root=as_root)
    owned: list[int] = []
    try:
        owned.append(_memfd("pyisolate-seccomp", build_filter()))
        owned.append(_memfd("pyisolate-passwd", passwd))
        owned.append(_memfd("pyisolate-group", group))
        args = bwrap_args(
            policy,
            bwrap=bwrap,
            as_root=as_root,
            user_namespace=isolation == "full" and not as_root,
            ro_binds=binds,
            rw_binds=rw_binds,
            socket_paths=socket_paths,
            gpu=gpu,
            seccomp_fd=owned[0],
            passwd_fd=owned[1],
            group_fd=owned[2],
        )
        args += prelude(policy, as_root=as_root, use_helpers=use_helpers)
        args += list(argv)
    except BaseException:
        for fd in owned:
            os.close(fd)
        raise
    who = f"uid {policy.uid}" if as_root else "the host uid in a user namespace"
    if isolation == "degraded":
        who = "the host uid, no user namespace (degraded)"
    net = "host network" if policy.network else "no network"
    description = (
        f"bubblewrap sandbox ({isolation}): runs as {who}, {net}, "
        f"seccomp filter, private /tmp and /dev/shm{', GPU devices' if gpu else ''}"
    )
    return LaunchPlan(
        argv=tuple(args),
        env=sandbox_env(policy, env, gpu=gpu),
        pass_fds=(*pass_fds, *owned),
        isolation=isolation,
        description=description,
        owned_fds=owned,
    )


def unsandboxed_plan(
    argv: Sequence[str], *, env: Mapping[str, str], pass_fds: Iterable[int], reason: str
) -> LaunchPlan:
    """A plain child process: the host's environment plus ``env``, like the
    seed's macOS behaviour (the actor runs with the host's rights)."""
    return LaunchPlan(
        argv=tuple(argv),
        env={**os.environ, **env},
        pass_fds=tuple(pass_fds),
        isolation="none",
        description=f"no sandbox: {reason}",
    )
