"""What a sandbox allows (``SandboxPolicy``) and how hard to insist on one (``SandboxMode``).

A policy is a frozen value: the runtime builds one per actor spec and hands it
to :func:`pyisolate.sandbox.build_launch` on every (re)start, so a restart gets
exactly the sandbox the first start had.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ..environment import ENABLE_CUDA_IPC
from ._host import physical_memory, task_ceiling

__all__ = [
    "DEFAULT_ENV_ALLOW",
    "DEFAULT_MEMORY_FRACTION",
    "DEFAULT_TMPFS_FRACTION",
    "ResourceLimits",
    "SandboxMode",
    "SandboxPolicy",
    "SandboxWarning",
]


class SandboxWarning(UserWarning):
    """AUTO ran an actor with less isolation than full (degraded or none), or
    a resource ceiling could not be applied as asked."""


class SandboxMode(enum.Enum):
    """How hard to insist on isolation.

    AUTO: full isolation where the machine allows it; the degraded sandbox
    (filesystem isolation, no user namespace) under AppArmor restrictions; no
    sandbox, with a warning naming the fix, where none is possible.
    REQUIRED: full isolation or :class:`~pyisolate.errors.SandboxUnavailableError`.
    DISABLED: run unsandboxed (what macOS, Windows and other non-Linux systems get).
    """

    AUTO = "auto"
    REQUIRED = "required"
    DISABLED = "disabled"


# Variables a Python process needs to behave like the host (locale, terminal,
# time zone) and that carry no secrets. Everything else is dropped unless the
# policy names it: a host token in the environment must not reach a plugin.
DEFAULT_ENV_ALLOW: tuple[str, ...] = (
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "LC_NUMERIC",
    "TERM",
    "TZ",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
)

# Added when GPU passthrough is on: CUDA needs them to pick the same device.
GPU_ENV_ALLOW: tuple[str, ...] = (
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "NVIDIA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
    ENABLE_CUDA_IPC,
)


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise TypeError("expected a sequence of strings, got a single string")
    return tuple(value)


def _env_pairs(value: Mapping[str, str] | Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    # Stored as sorted pairs so the policy stays hashable and compares by value.
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted((str(k), str(v)) for k, v in items))


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be positive or None, got {value}")


# -- default ceilings ------------------------------------------------------------
#
# Actors share one machine; the defaults keep any one of them (or a runaway
# crowd of them) from taking it down, while leaving an ordinary actor, torch
# included, far from every limit. Each is a documented fraction of what the
# machine has (``_host``), so they scale from a 2 GiB CI box to a GPU server.

#: An actor's default memory ceiling: half of physical RAM. One actor can then
#: never take the host below half its memory, yet a single big model still fits
#: (the kernel's own default for a tmpfs is the same half).
DEFAULT_MEMORY_FRACTION = 0.5
#: Each of an actor's private /tmp and /dev/shm is capped by default at a
#: quarter of its memory ceiling: both together stay within half of it, and a
#: write past the cap fails with ENOSPC instead of an out-of-memory kill.
DEFAULT_TMPFS_FRACTION = 0.25
#: The default per-actor task ceiling assumes this many actors at once: the
#: machine's task ceiling (the smaller of pid_max and threads-max) divided by
#: it, clamped to [DEFAULT_PROCESSES_MIN, DEFAULT_PROCESSES_MAX].
EXPECTED_ACTORS = 128
DEFAULT_PROCESSES_MIN = 64
DEFAULT_PROCESSES_MAX = 512


def default_memory() -> int:
    """The default ``ResourceLimits.memory``: DEFAULT_MEMORY_FRACTION of RAM."""
    return int(physical_memory() * DEFAULT_MEMORY_FRACTION)


def default_processes() -> int:
    """The default ``ResourceLimits.processes``: the machine's task ceiling over
    EXPECTED_ACTORS, clamped to 64..512 (256 where pid_max is 32768).

    A torch actor runs some tens of threads; 64 fork-bombing actors at this
    default still leave half of the pids to the host.
    """
    share = task_ceiling() // EXPECTED_ACTORS
    return max(DEFAULT_PROCESSES_MIN, min(DEFAULT_PROCESSES_MAX, share))


def _positive_float(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be positive or None, got {value}")


@attrs.frozen
class ResourceLimits:
    """Ceilings for one actor. ``None`` removes a ceiling (keeps the host's limit).

    Two mechanisms enforce them; ``python -m pyisolate doctor`` says which are
    in force here:

    * a cgroup v2 per actor, where the host may create one (root, or a
      delegated subtree, with the controllers enabled): ``memory`` becomes
      ``memory.max`` (swap off, ``memory.swap.max=0``, and ``memory.oom.group``
      so an actor past its ceiling dies whole), ``processes`` ``pids.max``,
      ``cpus`` ``cpu.max``. The pages of the actor's private /tmp and /dev/shm
      are charged to it too. The cgroup also kills every process the actor
      left behind when it ends, sandboxed or not;
    * rlimits, set inside the sandbox before any actor code runs (soft =
      hard): ``address_space``, ``open_files``, ``cpu_seconds`` and
      ``processes`` (RLIMIT_NPROC).

    ``memory`` (bytes): default :func:`default_memory`, half of RAM. Without a
    memory controller it is not enforced, but it still sizes the default
    /tmp and /dev/shm caps (see :class:`SandboxPolicy`).

    ``processes`` (tasks: processes *and* threads): default
    :func:`default_processes`. As ``pids.max`` it bounds exactly the actor's
    tasks. As RLIMIT_NPROC it counts the tasks of the actor's real uid: when
    the host is root each actor has a uid of its own (forks of one shared
    template share one), and in a user namespace (non-root host, Linux 5.14+)
    the count is the namespace's, so either way it is the actor's. In the
    degraded sandbox (no user namespace) it would count every process of the
    host's uid, so the rlimit is not set there; only ``pids.max`` bounds it.

    ``cpus`` (cores, e.g. 1.5): CPU bandwidth, ``cpu.max``; default no limit.
    ``address_space`` breaks CUDA (it reserves terabytes of virtual memory),
    so it is off by default; ``memory`` is the ceiling to use.
    """

    address_space: int | None = attrs.field(default=None, validator=_positive)
    open_files: int | None = attrs.field(default=None, validator=_positive)
    processes: int | None = attrs.field(factory=default_processes, validator=_positive)
    cpu_seconds: int | None = attrs.field(default=None, validator=_positive)
    memory: int | None = attrs.field(factory=default_memory, validator=_positive)
    cpus: float | None = attrs.field(default=None, validator=_positive_float)

    def as_prlimit_args(self) -> list[str]:
        """The limits as ``prlimit`` options (util-linux), in a fixed order."""
        pairs = (
            ("--as", self.address_space),
            ("--nofile", self.open_files),
            ("--nproc", self.processes),
            ("--cpu", self.cpu_seconds),
        )
        return [f"{flag}={value}:{value}" for flag, value in pairs if value is not None]

    def memory_bound(self) -> int | None:
        """The smallest memory ceiling set (``memory`` or ``address_space``)."""
        bounds = [b for b in (self.memory, self.address_space) if b is not None]
        return min(bounds) if bounds else None


@attrs.frozen
class SandboxPolicy:
    """What an actor may touch. The default is the strictest useful sandbox.

    ``ro_binds`` / ``rw_binds``: extra host paths, bound at the same path.
    ``network``: keep the host network (off: a private loopback only).
    ``env_allow``: host variables passed through by name; ``env``: variables
    set explicitly (they win). Nothing else from the host environment arrives.
    ``gpu``: bind /dev/nvidia*, /dev/dri and /sys (also turned on when the CUDA
    transport is in use). ``tmp_size`` / ``shm_size``: the private /tmp and
    /dev/shm sizes in bytes; ``None`` (the default) caps each at
    DEFAULT_TMPFS_FRACTION (a quarter) of the memory ceiling
    (``limits.memory_bound()``, else of RAM), so that what an actor writes
    there stays within its memory (an actor limited to 512 MiB gets 128 MiB
    each; past it, writes fail with ENOSPC). ``uid`` / ``gid``: who the
    actor runs as when the host is root (root inside a sandbox can still write
    kernel settings and read root-only files within its binds). Left at the
    default, the runtime replaces them with a uid and gid of the actor's own.
    """

    ro_binds: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    rw_binds: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    network: bool = False
    env_allow: tuple[str, ...] = attrs.field(default=DEFAULT_ENV_ALLOW, converter=_str_tuple)
    env: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_env_pairs)
    gpu: bool = False
    tmp_size: int | None = attrs.field(default=None, validator=_positive)
    shm_size: int | None = attrs.field(default=None, validator=_positive)
    limits: ResourceLimits = attrs.field(factory=ResourceLimits)
    uid: int = 65534
    gid: int = 65534
    hostname: str = "pyisolate"

    def tmpfs_sizes(self) -> tuple[int, int]:
        """The sizes of the private /tmp and /dev/shm, in bytes, defaults applied."""
        bound = self.limits.memory_bound() or physical_memory()
        default = max(1 << 20, int(bound * DEFAULT_TMPFS_FRACTION))
        return (
            self.tmp_size if self.tmp_size is not None else default,
            self.shm_size if self.shm_size is not None else default,
        )
