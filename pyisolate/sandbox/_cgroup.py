"""A cgroup (v2) per actor: memory, task and CPU ceilings, and a kill switch.

Where the host may create cgroups (root, or a delegated subtree it owns), every
actor the runtime starts gets one, sandboxed or not:

    <base>/pyisolate/<pidns>-<pid>-<start>/a-<n>
     |      |         |                     the actor: memory.max, pids.max, cpu.max
     |      |         one per host process: all its actors together get at most
     |      |         RUNTIME_MEMORY_FRACTION of RAM and RUNTIME_TASK_FRACTION of
     |      |         the machine's tasks, so no crowd of actors exhausts them
     |      shared by every pyisolate process on the machine
     the topmost cgroup above the host's own that the host may write (root:
     the hierarchy's root)

The launched process joins its cgroup before anything else runs: the plan's
argv starts with ``/bin/sh -c 'echo $$ >cgroup.procs; exec "$@"'``, a trusted
step that moves itself, then execs bwrap (or the unsandboxed interpreter).
Nothing the actor runs is ever outside it. (Python's subprocess cannot use
clone3's CLONE_INTO_CGROUP, and ``preexec_fn`` is unsafe in a host with
threads.) The shell costs well under a millisecond; the move itself waits for
one RCU grace period in the kernel (measured 2-12 ms on a loaded 2-core VM),
less where cgroup2 is mounted with ``favordynmods`` (Linux 6.0+).

When the actor ends, ``cgroup.kill`` SIGKILLs whatever it left (this is how an
unsandboxed actor's daemonised grandchildren die with it) and the directory is
removed. A host process's own cgroup goes with its last actor; those of a host
that was SIGKILLed are swept by the next host process in the same pid
namespace, like stale runtime directories.

Where no cgroup can be made (not root, no cgroup v2, controllers held by a v1
hierarchy), :func:`cgroup_support` says why, plans carry no cgroup, and the
rlimits and tmpfs caps are what remains (``doctor`` shows which).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import signal
import threading
import time
import warnings
from typing import TYPE_CHECKING

from ._cgroup_probe import (
    _SHARED_NAME,
    CgroupSupport,
    _read,
    _read_procs,
    _words,
    _write,
    cgroup_support,
    probe,
)
from ._host import physical_memory, task_ceiling

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ._policy import ResourceLimits

__all__ = [
    "RUNTIME_MEMORY_FRACTION",
    "RUNTIME_TASK_FRACTION",
    "ActorCgroup",
    "CgroupSupport",
    "cgroup_support",
    "new_actor_cgroup",
    "probe",
]

#: All actors of one host process together: at most this much of RAM ...
RUNTIME_MEMORY_FRACTION = 0.75
#: ... and of the machine's task ceiling (the smaller of pid_max and threads-max).
RUNTIME_TASK_FRACTION = 0.5
_CPU_PERIOD_US = 100_000
# How long close() waits in the caller (often the host's event loop) for killed
# processes to leave before it hands the removal to a thread: an exiting
# process with gigabytes mapped takes a while to tear down.
_INLINE_WAIT_S = 0.005
_DEFERRED_WAIT_S = 30.0
# $0 is the cgroup.procs path; "$@" the real command. Fails closed: a process
# that could not join never runs the actor.
_JOIN_SCRIPT = (
    '{ echo $$ >"$0"; } 2>/dev/null || '
    '{ echo "pyisolate: could not join the actor cgroup ($0)" >&2; exit 125; }; '
    'exec "$@"'
)


def _populated(path: str) -> bool:
    try:
        for line in _read(os.path.join(path, "cgroup.events")).splitlines():
            key, _, value = line.partition(" ")
            if key == "populated":
                return value.strip() != "0"
    except OSError:
        return False
    return False


def _kill_tree(path: str) -> None:
    """SIGKILL every process in the cgroup at ``path`` and below it."""
    try:
        _write(os.path.join(path, "cgroup.kill"), "1")
        return
    except FileNotFoundError:
        if not os.path.isdir(path):
            return
    except OSError:
        return
    # Before Linux 5.14: freeze (nothing forks meanwhile), kill each process the
    # kernel lists (pids it translated for us), thaw so that they die.
    freeze = os.path.join(path, "cgroup.freeze")
    with contextlib.suppress(OSError):
        _write(freeze, "1")
    for dirpath, _dirs, _files in os.walk(path):
        for pid in _read_procs(dirpath):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        _write(freeze, "0")


def _remove_tree(path: str, wait_s: float) -> bool:
    """Kill and remove the cgroup at ``path`` and below; False if it is still busy."""
    if not os.path.isdir(path):
        return True
    if _populated(path):
        _kill_tree(path)
        deadline = time.monotonic() + wait_s
        while _populated(path):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
    for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda t: -len(t[0])):
        try:
            os.rmdir(dirpath)
        except FileNotFoundError:
            pass
        except OSError:
            return False
    return True


def _remove_later(path: str, then: Callable[[], None]) -> None:
    def run() -> None:
        deadline = time.monotonic() + _DEFERRED_WAIT_S
        while not _remove_tree(path, 0.05) and time.monotonic() < deadline:
            time.sleep(0.05)
        then()

    threading.Thread(target=run, name="pyisolate-cgroup-reaper", daemon=True).start()


def _start_time(pid: int) -> str | None:
    try:
        stat = _read(f"/proc/{pid}/stat")
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()[19]


def _pidns() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "0"


def _enable(path: str, controllers: frozenset[str]) -> None:
    have = _words(os.path.join(path, "cgroup.subtree_control"))
    for name in controllers - have:
        with contextlib.suppress(OSError):
            _write(os.path.join(path, "cgroup.subtree_control"), f"+{name}")


class _HostCgroup:
    """This host process's cgroup: the parent of its actors' cgroups."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._path: str | None = None
        self._owner = 0
        self._live = 0
        self._swept = False
        self._names = itertools.count(1)
        self._atexit = False

    def _create(self, support: CgroupSupport) -> str:
        assert support.base is not None
        shared = os.path.join(support.base, _SHARED_NAME)
        _enable(support.base, support.controllers)
        os.makedirs(shared, exist_ok=True)
        _enable(shared, support.controllers)
        ns, pid = _pidns(), os.getpid()
        if not self._swept:
            self._swept = True
            sweep_stale(shared, pidns=ns)
        path = os.path.join(shared, f"{ns}-{pid}-{_start_time(pid)}")
        os.makedirs(path, exist_ok=True)
        have = _words(os.path.join(path, "cgroup.controllers"))
        if "memory" in have:
            _write(
                os.path.join(path, "memory.max"),
                str(int(physical_memory() * RUNTIME_MEMORY_FRACTION)),
            )
        if "pids" in have:
            _write(os.path.join(path, "pids.max"), str(int(task_ceiling() * RUNTIME_TASK_FRACTION)))
        _enable(path, support.controllers)
        if not self._atexit:
            self._atexit = True
            atexit.register(self.remove_all)
        return path

    def acquire(self, support: CgroupSupport) -> tuple[str, str]:
        """A new actor cgroup's path (not yet created) under ours, creating ours."""
        with self._lock:
            if self._owner != os.getpid():  # a forked host: its own cgroup, not ours
                self._path, self._owner, self._live = None, os.getpid(), 0
            if self._path is None or not os.path.isdir(self._path):
                self._path = self._create(support)
            self._live += 1
            return self._path, os.path.join(self._path, f"a-{next(self._names)}")

    def release(self) -> None:
        """One actor cgroup is gone; ours goes with the last one."""
        with self._lock:
            if self._owner != os.getpid():
                return
            self._live -= 1
            if self._live <= 0 and self._path is not None:
                self._live = 0
                with contextlib.suppress(OSError):
                    os.rmdir(self._path)  # EBUSY while a deferred removal runs
                if not os.path.isdir(self._path):
                    self._path = None

    def remove_all(self) -> None:
        """At exit: whatever actors are left die with the host."""
        with self._lock:
            if self._path is not None and self._owner == os.getpid():
                _remove_tree(self._path, 1.0)
                self._path = None


_HOST = _HostCgroup()


def sweep_stale(shared: str, *, pidns: str | None = None) -> list[str]:
    """Kill and remove host cgroups under ``shared`` whose owner is gone
    (same pid namespace, and that pid is dead or now another process)."""
    ns = pidns or _pidns()
    removed: list[str] = []
    try:
        entries = os.listdir(shared)
    except OSError:
        return removed
    for name in entries:
        parts = name.split("-")
        if len(parts) != 3 or parts[0] != ns or not parts[1].isdigit():
            continue
        if _start_time(int(parts[1])) == parts[2]:
            continue  # alive
        path = os.path.join(shared, name)
        if _remove_tree(path, 1.0):
            removed.append(path)
    return removed


class ActorCgroup:
    """One actor's cgroup. The launched process joins it first (:meth:`join_argv`);
    :meth:`kill` ends everything in it; :meth:`close` kills and removes it."""

    def __init__(self, path: str, *, release: bool = True) -> None:
        self.path = path
        self._release = release
        self._closed = False

    @property
    def procs_path(self) -> str:
        return os.path.join(self.path, "cgroup.procs")

    def join_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed with the trusted step that moves into this cgroup."""
        sh = shutil.which("sh", path="/usr/bin:/bin") or "/bin/sh"
        return [os.path.realpath(sh), "-c", _JOIN_SCRIPT, self.procs_path, *argv]

    def read(self, name: str) -> str:
        """A control file's content, stripped (``memory.max``, ``pids.current``)."""
        return _read(os.path.join(self.path, name)).strip()

    def populated(self) -> bool:
        return _populated(self.path)

    def kill(self) -> None:
        """SIGKILL every process in the cgroup (idempotent; nothing if gone)."""
        if not self._closed:
            _kill_tree(self.path)

    def close(self) -> None:
        """Kill what is left and remove the cgroup (idempotent). Waits briefly
        for the processes to leave, then leaves the removal to a thread."""
        if self._closed:
            return
        self._closed = True
        if _remove_tree(self.path, _INLINE_WAIT_S):
            self._released()
        else:
            _remove_later(self.path, self._released)

    def _released(self) -> None:
        if self._release:
            _HOST.release()

    def __repr__(self) -> str:
        return f"ActorCgroup({self.path!r})"


_warned = False


def _configure(path: str, limits: ResourceLimits) -> None:
    have = _words(os.path.join(path, "cgroup.controllers"))
    if "memory" in have and limits.memory is not None:
        _write(os.path.join(path, "memory.max"), str(limits.memory))
        for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
            if os.path.exists(os.path.join(path, name)):
                _write(os.path.join(path, name), value)
    if "pids" in have and limits.processes is not None:
        _write(os.path.join(path, "pids.max"), str(limits.processes))
    if "cpu" in have and limits.cpus is not None:
        quota = max(1000, int(limits.cpus * _CPU_PERIOD_US))
        _write(os.path.join(path, "cpu.max"), f"{quota} {_CPU_PERIOD_US}")


def new_actor_cgroup(
    limits: ResourceLimits, support: CgroupSupport | None = None
) -> ActorCgroup | None:
    """Create and configure a cgroup for one actor; None where cgroups are
    unavailable (or creating one failed: warned once, the rlimits remain)."""
    support = support or cgroup_support()
    if not support.available:
        return None
    try:
        _parent, path = _HOST.acquire(support)
    except OSError as exc:
        _warn_once(f"could not create the host's cgroup: {exc}")
        return None
    cgroup = ActorCgroup(path)
    try:
        os.mkdir(path)
        _configure(path, limits)
    except OSError as exc:
        cgroup.close()
        _warn_once(f"could not create an actor cgroup at {path}: {exc}")
        return None
    return cgroup


def _warn_once(message: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        from ._policy import SandboxWarning

        warnings.warn(SandboxWarning(message + "; actors run with rlimits only"), stacklevel=3)
