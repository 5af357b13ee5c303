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

__all__ = [
    "DEFAULT_ENV_ALLOW",
    "ResourceLimits",
    "SandboxMode",
    "SandboxPolicy",
]


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
    "PYISOLATE_ENABLE_CUDA_IPC",
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


@attrs.frozen
class ResourceLimits:
    """rlimits applied inside the sandbox, before any actor code runs (soft = hard).

    ``None`` keeps the host's limit. ``processes`` counts threads too and is per
    uid: when the host runs as root the runtime gives each actor a uid of its
    own, so the limit is the actor's. ``address_space`` breaks CUDA (it
    reserves terabytes of virtual memory), so it is off by default.
    """

    address_space: int | None = attrs.field(default=None, validator=_positive)
    open_files: int | None = attrs.field(default=None, validator=_positive)
    processes: int | None = attrs.field(default=4096, validator=_positive)
    cpu_seconds: int | None = attrs.field(default=None, validator=_positive)

    def as_prlimit_args(self) -> list[str]:
        """The limits as ``prlimit`` options (util-linux), in a fixed order."""
        pairs = (
            ("--as", self.address_space),
            ("--nofile", self.open_files),
            ("--nproc", self.processes),
            ("--cpu", self.cpu_seconds),
        )
        return [f"{flag}={value}:{value}" for flag, value in pairs if value is not None]


@attrs.frozen
class SandboxPolicy:
    """What an actor may touch. The default is the strictest useful sandbox.

    ``ro_binds`` / ``rw_binds``: extra host paths, bound at the same path.
    ``network``: keep the host network (off: a private loopback only).
    ``env_allow``: host variables passed through by name; ``env``: variables
    set explicitly (they win). Nothing else from the host environment arrives.
    ``gpu``: bind /dev/nvidia*, /dev/dri and /sys (also turned on when the CUDA
    transport is in use). ``tmp_size`` / ``shm_size``: tmpfs sizes in bytes
    (``None``: the kernel default, half of RAM). ``uid`` / ``gid``: who the
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
