"""Rows for ``python -m pyisolate doctor``: what the sandbox can do here and,
where something is missing, the commands that fix it."""

from __future__ import annotations

import subprocess

from ._bwrap import gpu_devices, supports_tmpfs_size
from ._cgroup import RUNTIME_MEMORY_FRACTION, RUNTIME_TASK_FRACTION, CgroupSupport, cgroup_support
from ._detect import Detection, detect
from ._host import physical_memory, task_ceiling
from ._policy import (
    DEFAULT_MEMORY_FRACTION,
    DEFAULT_TMPFS_FRACTION,
    EXPECTED_ACTORS,
    SandboxPolicy,
)

__all__ = ["capabilities"]

_AUTO_TEXT = {
    "full": "full isolation (bubblewrap, all namespaces, seccomp)",
    "degraded": "degraded sandbox (filesystem isolation, no user namespace)",
    "none": "no sandbox (actors run unsandboxed, with a warning)",
}


def _bwrap_version(bwrap: str) -> str:
    try:
        out = subprocess.run(
            [bwrap, "--version"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return bwrap
    return f"{bwrap} ({out.stdout.strip() or 'unknown version'})"


def _gib(size: float) -> str:
    return f"{size / (1 << 30):.1f} GiB"


def ceiling_rows(det: Detection, support: CgroupSupport | None = None) -> list[tuple[str, str]]:
    """What bounds an actor's memory and tasks here, and the defaults."""
    support = support or cgroup_support()
    policy = SandboxPolicy()
    limits = policy.limits
    memory_by = (
        "enforced: cgroup memory.max, /tmp and /dev/shm included"
        if "memory" in support.controllers
        else "NOT enforced: no cgroup memory controller; only the tmpfs caps below hold"
    )
    tmp, _shm = policy.tmpfs_sizes()
    if det.level == "none":
        tmpfs = "none (no sandbox: actors use the host's /tmp)"
    elif det.bwrap and not supports_tmpfs_size(det.bwrap):
        tmpfs = "kernel default, half of RAM each (bwrap too old for --size; 0.6+ needed)"
    else:
        tmpfs = (
            f"/tmp and /dev/shm {_gib(tmp)} each ({DEFAULT_TMPFS_FRACTION:g} of the memory ceiling)"
        )
    pids_by = []
    if "pids" in support.controllers:
        pids_by.append("cgroup pids.max")
    if det.level != "none":
        pids_by.append(
            "RLIMIT_NPROC (per actor uid as root, per user namespace otherwise; "
            "not in the degraded sandbox)"
        )
    rows = [
        ("resource ceilings", support.describe()),
        (
            "default memory ceiling per actor",
            f"{_gib(limits.memory or 0)} ({DEFAULT_MEMORY_FRACTION:g} of RAM; {memory_by})",
        ),
        ("default tmpfs caps per actor", tmpfs),
        (
            "default task ceiling per actor",
            f"{limits.processes} processes+threads (task ceiling {task_ceiling()} / "
            f"{EXPECTED_ACTORS} expected actors; "
            f"{' and '.join(pids_by) or 'NOT enforced: no cgroup, no sandbox'})",
        ),
    ]
    if support.available:
        together = []
        if "memory" in support.controllers:
            together.append(f"{_gib(physical_memory() * RUNTIME_MEMORY_FRACTION)} of memory")
        if "pids" in support.controllers:
            together.append(f"{int(task_ceiling() * RUNTIME_TASK_FRACTION)} tasks")
        rows.append(
            (
                "all actors of one host process",
                (" and ".join(together) or "no shared ceiling (controllers missing)")
                + "; every process an actor started is killed with it (cgroup.kill)",
            )
        )
    else:
        rows.append(
            (
                "all actors of one host process",
                "no shared ceiling; an unsandboxed actor's daemonised children can outlive it",
            )
        )
    return rows


def capabilities(detection: Detection | None = None) -> list[tuple[str, str]]:
    """(label, value) rows describing sandbox support; remediation when not full."""
    det = detection or detect()
    rows = [
        ("sandbox restriction model", f"{det.model} - {det.model.summary}"),
        ("sandbox mode AUTO picks", _AUTO_TEXT[det.level]),
    ]
    if det.bwrap:
        rows.append(("bubblewrap", _bwrap_version(det.bwrap)))
    if det.level != "none":
        who = (
            "an unprivileged uid of their own each (host is root)"
            if det.as_root
            else "the host uid in a user namespace"
        )
        rows.append(("sandboxed actors run as", who))
    rows.extend(ceiling_rows(det))
    devices = gpu_devices()
    rows.append(("GPU devices for passthrough", ", ".join(devices) if devices else "none"))
    if det.detail:
        rows.append(("sandbox probe error", det.detail))
    if det.model.remediation:
        rows.append(("sandbox remediation", det.model.remediation))
    return rows
