"""Which sandbox this machine can give, and if none, why and how to fix it.

Detection probes bwrap for real, with the launcher's own flags (a sandbox that
starts with other flags proves nothing), and classifies a failure from bwrap's
error text and the kernel's sysctls. Inputs are injectable (``runner`` runs
the probe, ``proc_root`` stands for /proc) so every classification is tested
from recorded error texts; the default call is cached per process because a
probe costs a few milliseconds and the answer cannot change under us.
"""

from __future__ import annotations

import enum
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Literal

import attrs

from ._plan import sandboxed_plan
from ._policy import SandboxPolicy

__all__ = [
    "Detection",
    "RestrictionModel",
    "Runner",
    "clear_cache",
    "detect",
    "detect_restriction_model",
    "subprocess_runner",
]

#: Runs a probe: (argv, pass_fds) -> (exit status, stderr text).
Runner = Callable[[Sequence[str], Sequence[int]], "tuple[int, str]"]

_CAP_SYS_ADMIN = 21


class RestrictionModel(enum.Enum):
    """What stands between this machine and a full bubblewrap sandbox.

    ``model.remediation`` is the fix, as commands a user can run.
    """

    NONE = "none"  # full sandbox support
    APPARMOR = "apparmor"  # AppArmor forbids bwrap's user namespace (Ubuntu 22.04+)
    SYSCTL = "sysctl"  # kernel.unprivileged_userns_clone=0
    USERNS_LIMIT = "userns_limit"  # user.max_user_namespaces=0
    CONTAINER = "container"  # a container without CAP_SYS_ADMIN or with a seccomp filter
    BWRAP_MISSING = "bwrap_missing"  # bubblewrap is not installed
    UNSUPPORTED_PLATFORM = "unsupported_platform"  # not Linux: macOS, Windows
    UNKNOWN = "unknown"  # bwrap failed for a reason not recognised

    @property
    def summary(self) -> str:
        """One line: what this model means."""
        return _SUMMARY[self]

    @property
    def remediation(self) -> str:
        """What to run to get a full sandbox ("" for NONE)."""
        return _REMEDIATION[self]


_SUMMARY = {
    RestrictionModel.NONE: "Full sandbox support available",
    RestrictionModel.APPARMOR: "AppArmor restricts bubblewrap's user namespaces",
    RestrictionModel.SYSCTL: "User namespaces disabled via sysctl",
    RestrictionModel.USERNS_LIMIT: "User namespaces limited to zero (user.max_user_namespaces=0)",
    RestrictionModel.CONTAINER: "Inside a container without CAP_SYS_ADMIN or with a seccomp filter",
    RestrictionModel.BWRAP_MISSING: "bubblewrap (bwrap) is not installed",
    RestrictionModel.UNSUPPORTED_PLATFORM: f"No namespace support on this platform ({sys.platform})",
    RestrictionModel.UNKNOWN: "bubblewrap failed for an unrecognised reason",
}

_REMEDIATION = {
    RestrictionModel.NONE: "",
    RestrictionModel.APPARMOR: (
        "# Check if bwrap is restricted\n"
        "aa-status | grep bwrap\n"
        "# Check current AppArmor mode\n"
        "cat /sys/module/apparmor/parameters/enabled\n"
        "# Disable AppArmor for bwrap (not recommended for production)\n"
        "sudo ln -s /etc/apparmor.d/bwrap /etc/apparmor.d/disable/\n"
        "sudo apparmor_parser -R /etc/apparmor.d/bwrap\n"
        "# Ubuntu 24.04+: or allow unprivileged user namespaces again\n"
        "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
    ),
    RestrictionModel.SYSCTL: (
        "# Check current setting\n"
        "cat /proc/sys/kernel/unprivileged_userns_clone\n"
        "# Enable (requires root)\n"
        "sudo sysctl -w kernel.unprivileged_userns_clone=1\n"
        "# Make persistent\n"
        "echo 'kernel.unprivileged_userns_clone=1' | sudo tee /etc/sysctl.d/99-userns.conf"
    ),
    RestrictionModel.USERNS_LIMIT: (
        "# Check current setting\n"
        "cat /proc/sys/user/max_user_namespaces\n"
        "# Enable (requires root)\n"
        "sudo sysctl -w user.max_user_namespaces=15000\n"
        "# Make persistent\n"
        "echo 'user.max_user_namespaces=15000' | sudo tee /etc/sysctl.d/99-userns.conf"
    ),
    RestrictionModel.CONTAINER: (
        "# Inside container\n"
        "capsh --print | grep cap_sys_admin\n"
        "# In docker run:\n"
        "docker run --cap-add SYS_ADMIN --security-opt seccomp=unconfined ...\n"
        "# Kubernetes: securityContext.capabilities.add: [SYS_ADMIN] and "
        "seccompProfile.type: Unconfined"
    ),
    RestrictionModel.BWRAP_MISSING: (
        "# Install bubblewrap\n"
        "sudo apt-get install bubblewrap   # Debian, Ubuntu\n"
        "sudo dnf install bubblewrap       # Fedora, RHEL\n"
        "sudo apk add bubblewrap           # Alpine"
    ),
    RestrictionModel.UNSUPPORTED_PLATFORM: (
        "# No sandbox outside Linux; actors run unsandboxed (SandboxMode.DISABLED).\n"
        "# On Windows use WSL2 and check its kernel:\n"
        "uname -r\n"
        "# Should be 5.10+ for best compatibility"
    ),
    RestrictionModel.UNKNOWN: (
        "# Run bubblewrap by hand to see the error:\n"
        "bwrap --unshare-all --ro-bind / / true\n"
        "# WSL2: check the kernel version (5.10+)\n"
        "uname -r"
    ),
}


@attrs.frozen
class Detection:
    """The outcome of a probe: the model, the isolation AUTO gets here, and the
    probe's error text (empty when it worked)."""

    model: RestrictionModel
    level: Literal["full", "degraded", "none"]
    detail: str = ""
    bwrap: str | None = None
    as_root: bool = False


def subprocess_runner(argv: Sequence[str], pass_fds: Sequence[int]) -> tuple[int, str]:
    """The real probe runner: run bwrap, return its status and stderr."""
    try:
        proc = subprocess.run(
            list(argv),
            pass_fds=tuple(pass_fds),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return 124, "bwrap probe timed out"
    except OSError as exc:
        return 127, f"could not run bwrap: {exc}"
    return proc.returncode, proc.stderr.decode(errors="replace")


def _read(proc_root: str, rel: str) -> str | None:
    try:
        with open(os.path.join(proc_root, rel), encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def _sysctl(proc_root: str, name: str) -> int | None:
    text = _read(proc_root, os.path.join("sys", *name.split(".")))
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def _in_container(proc_root: str) -> bool:
    cgroup = _read(proc_root, "1/cgroup") or ""
    markers = ("docker", "kubepods", "containerd", "libpod", "lxc")
    environ = _read(proc_root, "1/environ") or ""
    return any(m in cgroup for m in markers) or "container=" in environ


def _status_field(proc_root: str, field: str) -> str | None:
    for line in (_read(proc_root, "self/status") or "").splitlines():
        key, _, value = line.partition(":")
        if key == field:
            return value.strip()
    return None


def classify(stderr: str, *, proc_root: str = "/proc", as_root: bool = False) -> RestrictionModel:
    """Name the restriction behind a failed probe from its error text and sysctls."""
    text = stderr.lower()
    if (
        "apparmor" in text
        or "setting up uid map" in text
        or "rtm_newaddr" in text
        or (not as_root and _sysctl(proc_root, "kernel.apparmor_restrict_unprivileged_userns") == 1)
    ):
        return RestrictionModel.APPARMOR
    if _sysctl(proc_root, "user.max_user_namespaces") == 0 or "no space left on device" in text:
        return RestrictionModel.USERNS_LIMIT
    if not as_root and _sysctl(proc_root, "kernel.unprivileged_userns_clone") == 0:
        return RestrictionModel.SYSCTL
    cap_eff = _status_field(proc_root, "CapEff")
    lacks_admin = as_root and cap_eff is not None and not int(cap_eff, 16) >> _CAP_SYS_ADMIN & 1
    filtered = _status_field(proc_root, "Seccomp") == "2"
    denied = "operation not permitted" in text or "no permissions to creat" in text
    if _in_container(proc_root) or lacks_admin or (filtered and denied) or (as_root and denied):
        return RestrictionModel.CONTAINER
    if "no permissions to creat" in text:
        # bwrap's own hint: the kernel refuses unprivileged user namespaces.
        return RestrictionModel.SYSCTL
    return RestrictionModel.UNKNOWN


def _probe(
    runner: Runner, bwrap: str, *, as_root: bool, isolation: Literal["full", "degraded"]
) -> tuple[int, str]:
    true = shutil.which("true", path="/usr/bin:/bin") or "/usr/bin/true"
    plan = sandboxed_plan(
        SandboxPolicy(),
        [os.path.realpath(true)],
        bwrap=bwrap,
        isolation=isolation,
        as_root=as_root,
        env={},
        ro_binds=(),
        rw_binds=(),
        socket_paths=(),
        pass_fds=(),
        gpu=False,
    )
    with plan:
        return runner(plan.argv, plan.pass_fds)


def detect(
    *,
    runner: Runner | None = None,
    proc_root: str = "/proc",
    bwrap: str | None = None,
    platform: str | None = None,
    as_root: bool | None = None,
) -> Detection:
    """Probe this machine (cached when called without arguments)."""
    if (runner, bwrap, platform, as_root) == (None, None, None, None) and proc_root == "/proc":
        return _detect_cached()
    return _detect(
        runner or subprocess_runner,
        proc_root=proc_root,
        bwrap=bwrap,
        platform=platform or sys.platform,
        as_root=(os.geteuid() == 0) if as_root is None else as_root,
    )


@functools.lru_cache(maxsize=1)
def _detect_cached() -> Detection:
    return _detect(
        subprocess_runner,
        proc_root="/proc",
        bwrap=None,
        platform=sys.platform,
        as_root=hasattr(os, "geteuid") and os.geteuid() == 0,
    )


def clear_cache() -> None:
    """Forget the cached detection (tests; after installing bubblewrap)."""
    _detect_cached.cache_clear()


def _detect(
    runner: Runner, *, proc_root: str, bwrap: str | None, platform: str, as_root: bool
) -> Detection:
    if not platform.startswith("linux"):
        return Detection(RestrictionModel.UNSUPPORTED_PLATFORM, "none")
    bwrap = bwrap or shutil.which("bwrap")
    if not bwrap:
        return Detection(RestrictionModel.BWRAP_MISSING, "none")
    rc, err = _probe(runner, bwrap, as_root=as_root, isolation="full")
    if rc == 0:
        return Detection(RestrictionModel.NONE, "full", bwrap=bwrap, as_root=as_root)
    model = classify(err, proc_root=proc_root, as_root=as_root)
    if model is RestrictionModel.NONE:  # pragma: no cover - classify never says NONE
        model = RestrictionModel.UNKNOWN
    level: Literal["full", "degraded", "none"] = "none"
    if not as_root:
        # The degraded mode: the same sandbox without a user namespace (works
        # where bwrap may create the other namespaces itself, e.g. under
        # Ubuntu's AppArmor restriction).
        rc2, _ = _probe(runner, bwrap, as_root=as_root, isolation="degraded")
        level = "degraded" if rc2 == 0 else "none"
    return Detection(model, level, detail=err.strip(), bwrap=bwrap, as_root=as_root)


def detect_restriction_model() -> RestrictionModel:
    """What restricts the sandbox on this machine (``NONE``: nothing does).

    The short form of :func:`detect`; ``model.summary`` says what it means and
    ``model.remediation`` how to fix it, as ``python -m pyisolate doctor``
    prints them (docs/troubleshooting.md explains each).
    """
    return detect().model
