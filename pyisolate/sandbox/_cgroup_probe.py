"""What cgroups this host may create: the cgroup v2 mount, the host's own
cgroup, the topmost one above it the host may write, and which controllers
(memory, pids, cpu) it hands down. Read-only: nothing is created here.
"""

from __future__ import annotations

import functools
import os

import attrs

__all__ = ["CONTROLLERS", "CgroupSupport", "cgroup_support", "probe"]

#: The controllers used, when the hierarchy has them.
CONTROLLERS = ("memory", "pids", "cpu")
_SHARED_NAME = "pyisolate"


@attrs.frozen
class CgroupSupport:
    """What this host can do with cgroups (v2).

    ``base``: the directory the shared ``pyisolate`` cgroup goes in (None:
    cgroups unavailable, ``reason`` says why). ``controllers``: which of
    memory, pids and cpu actor cgroups get. ``kill``: ``cgroup.kill`` exists
    (Linux 5.14+; older kernels freeze the cgroup and kill each process).
    """

    base: str | None
    controllers: frozenset[str] = frozenset()
    kill: bool = False
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.base is not None

    def describe(self) -> str:
        """One line for ``doctor``."""
        if self.base is None:
            return f"rlimits only (no cgroup: {self.reason})"
        have = ", ".join(c for c in CONTROLLERS if c in self.controllers) or "none"
        missing = [c for c in CONTROLLERS if c not in self.controllers]
        text = f"cgroup v2 per actor under {self.base}/{_SHARED_NAME} (controllers: {have})"
        if missing:
            text += f"; not available: {', '.join(missing)}" + (
                f" ({self.reason})" if self.reason else ""
            )
        return text + " + rlimits"


def _cgroup2_mount(mountinfo: str) -> str | None:
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if right.split()[:1] == ["cgroup2"] and len(fields) >= 5 and fields[3] == "/":
            return fields[4].replace("\\040", " ")
    return None


def _own_cgroup(proc_cgroup: str) -> str | None:
    try:
        with open(proc_cgroup, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return None


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as fh:
        return fh.read()


def _write(path: str, value: str) -> None:
    with open(path, "w", encoding="ascii") as fh:
        fh.write(value)


def _words(path: str) -> set[str]:
    try:
        return set(_read(path).split())
    except OSError:
        return set()


def _kernel_has_kill() -> bool:
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 14)


def _choose_base(mount: str, own: str) -> str | None:
    """The topmost cgroup at or above ours (ours only if it is the root: a
    cgroup holding processes cannot delegate controllers) that we may write."""
    parts = [p for p in own.strip("/").split("/") if p]
    candidates = [mount] + [os.path.join(mount, *parts[:i]) for i in range(1, len(parts))]
    if not parts:
        candidates = [mount]
    for path in candidates:
        if os.access(path, os.W_OK) and os.access(os.path.join(path, "cgroup.procs"), os.W_OK):
            return path
    return None


def probe(
    *, mountinfo: str = "/proc/self/mountinfo", proc_cgroup: str = "/proc/self/cgroup"
) -> CgroupSupport:
    """Find what cgroups this host may create, without creating any."""
    if not hasattr(os, "geteuid"):
        return CgroupSupport(None, reason="not Linux")
    mount = _cgroup2_mount(mountinfo)
    if mount is None:
        return CgroupSupport(None, reason="no cgroup v2 hierarchy mounted")
    own = _own_cgroup(proc_cgroup)
    if own is None:
        return CgroupSupport(None, reason="this process has no cgroup v2 path")
    base = _choose_base(mount, own)
    if base is None:
        return CgroupSupport(
            None, reason=f"no writable cgroup above {own} in {mount} (run as root or delegate one)"
        )
    shared = os.path.join(base, _SHARED_NAME)
    if os.path.isdir(shared):
        # Set up before (by us or another host process): what it hands down.
        usable = _words(os.path.join(shared, "cgroup.controllers"))
    else:
        usable = _words(os.path.join(base, "cgroup.subtree_control"))
        is_root = base == mount
        if is_root or not _read_procs(base):
            usable |= _words(os.path.join(base, "cgroup.controllers"))
    controllers = frozenset(c for c in CONTROLLERS if c in usable)
    reason = ""
    if len(controllers) < len(CONTROLLERS):
        reason = "held by a cgroup v1 hierarchy or not delegated to " + base
    return CgroupSupport(base, controllers, _kernel_has_kill(), reason)


def _read_procs(path: str) -> list[int]:
    try:
        return [int(p) for p in _read(os.path.join(path, "cgroup.procs")).split()]
    except (OSError, ValueError):
        return []


@functools.lru_cache(maxsize=1)
def cgroup_support() -> CgroupSupport:
    """This host's cgroup support (cached: it does not change under us)."""
    return probe()
