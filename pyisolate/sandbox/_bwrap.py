"""Turn a policy into a bubblewrap command line.

Kept apart from the launcher so detection can probe bwrap with *exactly* the
flags the launcher uses: a probe with other flags would say "works" on a
machine where the real launch fails.

Two shapes, chosen by who runs the host:

* host is root: bwrap runs privileged, **without** a user namespace (an
  ``--unshare-user --uid 65534`` sandbox started by real root is still uid 0
  to the kernel outside, so root-owned files in its binds stay writable). All
  other namespaces are unshared, every capability is dropped except
  SETUID/SETGID/SETPCAP, and a tiny pre-exec step (util-linux ``setpriv``, or
  a Python fallback) drops the bounding set and switches to the policy's
  unprivileged uid/gid, which clears the remaining capabilities, before the
  actor's interpreter starts;
* host is not root: bwrap creates a user namespace (level "full") or, where
  AppArmor forbids that, runs without one (level "degraded").

Resource limits are applied in the same pre-exec step (``prlimit``), inside the
sandbox, so the process limit counts the sandbox's processes, not the host's.
RLIMIT_NPROC counts the tasks of a real uid, so it is set only where that uid
is the actor's alone (see :func:`nproc_is_actors`). The private /tmp and
/dev/shm get ``--size`` caps (bwrap 0.6+; older ones get the kernel default).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from glob import glob
from typing import TYPE_CHECKING

import attrs

from ..errors import SandboxError
from ._policy import ResourceLimits, SandboxPolicy

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "SYSTEM_RO_DIRS",
    "bwrap_args",
    "interpreter_paths",
    "nproc_is_actors",
    "passwd_data",
    "prelude",
    "supports_tmpfs_size",
]

# Host paths every interpreter needs. /usr holds libc and the dynamic loader;
# the merged-/usr top-level links are recreated as links.
SYSTEM_RO_DIRS = ("/usr",)
_TOP_LEVEL_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/alternatives",
    "/etc/mime.types",
)
_NETWORK_ETC_FILES = ("/etc/resolv.conf", "/etc/gai.conf")
_GPU_DEVICE_GLOBS = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/dri")
# Capabilities the pre-exec step needs to drop to the unprivileged uid; setuid
# to a non-zero uid clears them all again.
_ROOT_KEEP_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")
# Only helpers under /usr are visible inside the sandbox.
_HELPER_PATH = "/usr/bin:/usr/sbin"

# Fallback pre-exec step where util-linux is missing: same effect as
# prlimit + setpriv, costs one extra interpreter start (-I -S keeps it short).
_PY_PRELUDE = r"""
import os, sys, resource
uid, gid, spec = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for item in filter(None, spec.split(",")):
    name, value = item.split("=")
    resource.setrlimit(getattr(resource, name), (int(value), int(value)))
if uid >= 0:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(64):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP; EINVAL past the last cap
    hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    if libc.capget(hdr, data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    data[2] = data[5] = 0  # inheritable set, both words
    if libc.capset(hdr, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "no_new_privs")
os.execv(sys.argv[5], sys.argv[5:])
"""

_RLIMIT_NAMES = (
    ("RLIMIT_AS", "address_space"),
    ("RLIMIT_NOFILE", "open_files"),
    ("RLIMIT_NPROC", "processes"),
    ("RLIMIT_CPU", "cpu_seconds"),
)


def _helper(name: str) -> str | None:
    found = shutil.which(name, path=_HELPER_PATH)
    return os.path.realpath(found) if found else None


def nproc_is_actors(policy: SandboxPolicy, *, as_root: bool, user_namespace: bool) -> bool:
    """Whether RLIMIT_NPROC would count this actor's tasks alone.

    It counts the tasks of the real uid: in a user namespace (Linux 5.14+)
    those of the namespace, and on a root host those of the actor's own uid;
    but not the shared default uid (nobody, which forks of a shared template
    and other programs run as) nor, in the degraded sandbox, the host's uid.
    """
    return user_namespace or (as_root and policy.uid != SandboxPolicy().uid)


@functools.lru_cache(maxsize=8)
def supports_tmpfs_size(bwrap: str) -> bool:
    """Whether this bwrap knows ``--size`` (0.6 and later). A path that cannot
    be run (tests name one that need not exist) is assumed to."""
    try:
        out = subprocess.run(
            [bwrap, "--help"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return True
    return "--size" in out.stdout + out.stderr


def prelude(
    policy: SandboxPolicy, *, as_root: bool, use_helpers: bool = True, nproc: bool = True
) -> list[str]:
    """The command prefix run inside the sandbox before the actor's argv.

    Empty when nothing is to be done (non-root host, no limits): the fast path.
    ``use_helpers=False`` forces the Python fallback (tests cover both).
    ``nproc=False`` leaves RLIMIT_NPROC unset (see :func:`nproc_is_actors`).
    """
    limits: ResourceLimits = policy.limits
    if not nproc:
        limits = attrs.evolve(limits, processes=None)
    prlimit, setpriv = _helper("prlimit"), _helper("setpriv")
    if use_helpers and prlimit and setpriv:
        cmd: list[str] = []
        if limits.as_prlimit_args():
            cmd += [prlimit, *limits.as_prlimit_args(), "--"]
        if as_root:
            cmd += [
                setpriv,
                f"--reuid={policy.uid}",
                f"--regid={policy.gid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--ambient-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "--",
            ]
        return cmd
    spec = ",".join(
        f"{rname}={getattr(limits, field)}"
        for rname, field in _RLIMIT_NAMES
        if getattr(limits, field) is not None
    )
    if not spec and not as_root:
        return []
    uid, gid = (policy.uid, policy.gid) if as_root else (-1, -1)
    return [sys.executable, "-I", "-S", "-c", _PY_PRELUDE, str(uid), str(gid), spec, "--"]


def passwd_data(policy: SandboxPolicy, *, as_root: bool) -> tuple[bytes, bytes]:
    """Synthesised /etc/passwd and /etc/group: the sandbox user must resolve
    (``getpass.getuser()``, torch caches) without exposing the host's accounts."""
    if as_root:
        uid, gid, name = policy.uid, policy.gid, "nobody" if policy.uid == 65534 else "actor"
    else:
        uid, gid, name = os.getuid(), os.getgid(), "actor"
    passwd = (
        f"root:x:0:0:root:/root:/usr/sbin/nologin\n{name}:x:{uid}:{gid}::/tmp:/usr/sbin/nologin\n"
    )
    group = f"root:x:0:\n{name}:x:{gid}:\n"
    return passwd.encode(), group.encode()


def interpreter_paths(executable: str) -> list[str]:
    """Directories the interpreter ``executable`` needs: its prefix, a venv's
    base installation, and for the running interpreter every site directory."""
    paths = [os.path.dirname(os.path.dirname(os.path.realpath(executable)))]
    venv_root = os.path.dirname(os.path.dirname(os.path.abspath(executable)))
    cfg = os.path.join(venv_root, "pyvenv.cfg")
    if os.path.isfile(cfg):
        paths.append(venv_root)
        with open(cfg, encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition("=")
                if key.strip() == "home":
                    paths.append(os.path.dirname(value.strip()))
    if os.path.realpath(executable) == os.path.realpath(sys.executable):
        import site

        paths += [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
        paths += site.getsitepackages()
    return paths


class _Mounts:
    """Collects bind operations; creates parent directories 0755 (bwrap would
    copy 0700 from a host parent such as /root, locking the uid out)."""

    def __init__(self) -> None:
        self.args: list[str] = []
        self._bound: list[str] = []
        self._made: set[str] = {"/"}

    def covered(self, path: str) -> bool:
        return any(path == b or path.startswith(b.rstrip("/") + "/") for b in self._bound)

    def _parents(self, dest: str) -> None:
        parts = dest.strip("/").split("/")[:-1]
        cur = ""
        for part in parts:
            cur += "/" + part
            if cur not in self._made and not self.covered(cur):
                self.args += ["--perms", "0755", "--dir", cur]
                self._made.add(cur)

    def bind(self, flag: str, path: str, *, skip_covered: bool) -> None:
        real = os.path.realpath(path)
        if real == "/":
            raise SandboxError("refusing to bind the host's root directory into a sandbox")
        if not os.path.lexists(real) or (skip_covered and self.covered(real)):
            return
        self._parents(real)
        self.args += [flag, real, real]
        self._bound.append(real)
        self._made.add(real)
        alias = os.path.abspath(path)
        if alias != real and not self.covered(alias) and alias not in self._made:
            self._parents(alias)
            self.args += ["--symlink", real, alias]
            self._made.add(alias)

    def mark(self, path: str) -> None:
        self._made.add(path)


def bwrap_args(
    policy: SandboxPolicy,
    *,
    bwrap: str,
    as_root: bool,
    user_namespace: bool,
    ro_binds: Iterable[str],
    rw_binds: Iterable[str],
    socket_paths: Iterable[str],
    gpu: bool,
    seccomp_fd: int,
    passwd_fd: int,
    group_fd: int,
) -> list[str]:
    """The bwrap invocation up to and including ``--``; the caller appends the
    pre-exec step and the actor's argv. Order matters: bwrap mounts in order,
    so system directories and tmpfs come before the binds that land in them."""
    args = [bwrap]
    if user_namespace:
        args.append("--unshare-user")
    args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not policy.network:
        args.append("--unshare-net")
    args += ["--hostname", policy.hostname, "--new-session", "--die-with-parent"]
    if as_root:
        args += ["--cap-drop", "ALL"]
        for cap in _ROOT_KEEP_CAPS:
            args += ["--cap-add", cap]

    m = _Mounts()
    for path in SYSTEM_RO_DIRS:
        m.bind("--ro-bind", path, skip_covered=True)
    for link in _TOP_LEVEL_LINKS:
        if os.path.islink(link):
            m.args += ["--symlink", os.readlink(link), link]
            m.mark(link)
        elif os.path.isdir(link):
            m.bind("--ro-bind", link, skip_covered=True)
    m.args += ["--perms", "0755", "--dir", "/etc"]
    m.mark("/etc")
    etc = _ETC_FILES + (_NETWORK_ETC_FILES if policy.network else ())
    for path in etc:
        if os.path.lexists(path):
            m.bind("--ro-bind", path, skip_covered=True)
    m.args += ["--ro-bind-data", str(passwd_fd), "/etc/passwd"]
    m.args += ["--ro-bind-data", str(group_fd), "/etc/group"]
    # A fresh procfs for the new pid namespace; /proc/sys re-bound read-only
    # (sysctl files resolve against the reader's namespaces, so values are the
    # sandbox's own).
    m.args += ["--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys"]
    m.args += ["--ro-bind-try", "/proc/sysrq-trigger", "/proc/sysrq-trigger"]
    m.args += ["--dev", "/dev"]
    sized = supports_tmpfs_size(bwrap)
    for dest, size in zip(("/tmp", "/dev/shm"), policy.tmpfs_sizes(), strict=True):
        if sized:
            m.args += ["--size", str(size)]
        m.args += ["--perms", "1777", "--tmpfs", dest]
    for path in ("/proc", "/dev", "/tmp", "/dev/shm"):
        m.mark(path)

    for path in sorted(set(policy.ro_binds) | set(ro_binds), key=_depth):
        m.bind("--ro-bind", path, skip_covered=True)
    for path in sorted(set(policy.rw_binds) | set(rw_binds), key=_depth):
        m.bind("--bind", path, skip_covered=False)
    if gpu:
        for pattern in _GPU_DEVICE_GLOBS:
            for dev in sorted(glob(pattern)):
                m.bind("--dev-bind", dev, skip_covered=False)
        m.bind("--ro-bind", "/sys", skip_covered=True)
    # Socket files last, at their own path, so nothing mounted later hides them.
    for path in socket_paths:
        if not os.path.exists(path):
            raise SandboxError(f"socket path {path!r} does not exist")
        m.bind("--bind", path, skip_covered=False)

    args += m.args
    args += ["--chdir", "/tmp", "--seccomp", str(seccomp_fd), "--"]
    return args


def _depth(path: str) -> tuple[int, str]:
    real = os.path.realpath(path)
    return (real.count("/"), real)


def gpu_devices() -> Sequence[str]:
    """The GPU device nodes present on this host (what ``gpu=True`` binds)."""
    return [dev for pattern in _GPU_DEVICE_GLOBS for dev in sorted(glob(pattern))]
