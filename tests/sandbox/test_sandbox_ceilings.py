"""Default resource ceilings in the policy and the plan, and the cgroup layer's
pure parts (probing a recorded /proc, writing limits into a fake cgroup)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import pytest

from pyisolate.sandbox import (
    Detection,
    ResourceLimits,
    RestrictionModel,
    SandboxMode,
    SandboxPolicy,
    build_launch,
    capabilities,
)
from pyisolate.sandbox import _cgroup as cg
from pyisolate.sandbox._host import physical_memory, task_ceiling
from pyisolate.sandbox._policy import DEFAULT_PROCESSES_MAX, DEFAULT_PROCESSES_MIN

if TYPE_CHECKING:
    from pathlib import Path

ARGV = [sys.executable, "-c", "pass"]
FULL_ROOT = Detection(RestrictionModel.NONE, "full", bwrap="/usr/bin/bwrap", as_root=True)
FULL_USER = Detection(RestrictionModel.NONE, "full", bwrap="/usr/bin/bwrap", as_root=False)
DEGRADED = Detection(RestrictionModel.APPARMOR, "degraded", "uid map", "/usr/bin/bwrap")
MIB = 1 << 20


def launch(mode: SandboxMode, det: Detection, policy: SandboxPolicy, **kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = dict(env={}, ro_binds=[], rw_binds=[], socket_paths=[], pass_fds=[])
    args.update(kw)
    return build_launch(policy, mode, ARGV, detection=det, **args)  # type: ignore[arg-type]


def _sizes(argv: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for i, arg in enumerate(argv):
        if arg == "--tmpfs":
            assert argv[i - 4] == "--size", argv[i - 4 : i + 2]
            out[argv[i + 1]] = int(argv[i - 3])
    return out


def test_defaults_are_documented_fractions_of_the_machine() -> None:
    limits = ResourceLimits()
    assert limits.memory == physical_memory() // 2
    assert DEFAULT_PROCESSES_MIN <= (limits.processes or 0) <= DEFAULT_PROCESSES_MAX
    # 128 actors at the default cannot take every pid of the machine.
    assert (limits.processes or 0) * 64 <= max(task_ceiling(), 64 * DEFAULT_PROCESSES_MIN)
    # The old default (half of RAM per tmpfs) is gone: a quarter of the ceiling each.
    assert SandboxPolicy().tmpfs_sizes() == (physical_memory() // 8,) * 2


def test_tmpfs_caps_follow_the_smallest_memory_ceiling() -> None:
    assert SandboxPolicy(limits=ResourceLimits(memory=256 * MIB)).tmpfs_sizes() == (64 * MIB,) * 2
    # The case: an actor limited to 512 MiB of address space.
    limited = SandboxPolicy(limits=ResourceLimits(address_space=512 * MIB))
    assert limited.tmpfs_sizes() == (128 * MIB, 128 * MIB)
    explicit = SandboxPolicy(tmp_size=5 * MIB, limits=ResourceLimits(memory=256 * MIB))
    assert explicit.tmpfs_sizes() == (5 * MIB, 64 * MIB)
    unbounded = SandboxPolicy(limits=ResourceLimits(memory=None))
    assert unbounded.tmpfs_sizes() == (physical_memory() // 4,) * 2


def test_every_sandbox_gets_sized_tmpfs() -> None:
    policy = SandboxPolicy(limits=ResourceLimits(memory=256 * MIB))
    with launch(SandboxMode.REQUIRED, FULL_ROOT, policy) as plan:
        assert _sizes(plan.argv) == {"/tmp": 64 * MIB, "/dev/shm": 64 * MIB}
        assert "/tmp (64 MiB)" in plan.description
    with launch(SandboxMode.REQUIRED, FULL_ROOT, SandboxPolicy()) as plan:
        assert _sizes(plan.argv) == {
            "/tmp": physical_memory() // 8,
            "/dev/shm": physical_memory() // 8,
        }


def test_nproc_only_where_it_counts_the_actor_alone() -> None:
    own = SandboxPolicy(uid=1_700_000_123, gid=1_700_000_123, limits=ResourceLimits(processes=77))
    with launch(SandboxMode.REQUIRED, FULL_ROOT, own) as plan:
        assert "--nproc=77:77" in plan.argv
    shared = SandboxPolicy(limits=ResourceLimits(processes=77))  # uid nobody: shared
    with launch(SandboxMode.REQUIRED, FULL_ROOT, shared) as plan:
        assert not any(a.startswith("--nproc") for a in plan.argv)
    with launch(SandboxMode.REQUIRED, FULL_USER, shared) as plan:  # per user namespace
        assert "--nproc=77:77" in plan.argv
    with pytest.warns(UserWarning), launch(SandboxMode.AUTO, DEGRADED, shared) as plan:
        # Without a user namespace it would count every process of the host's uid.
        assert not any(a.startswith("--nproc") for a in plan.argv)


def test_validation_of_new_fields() -> None:
    with pytest.raises(ValueError):
        ResourceLimits(memory=0)
    with pytest.raises(ValueError):
        ResourceLimits(cpus=0.0)
    assert ResourceLimits(cpus=1.5).cpus == 1.5


def test_no_cgroup_unless_asked() -> None:
    with launch(SandboxMode.REQUIRED, FULL_ROOT, SandboxPolicy()) as plan:
        assert plan.cgroup is None
        assert plan.argv[0].endswith("bwrap")
    with launch(SandboxMode.DISABLED, FULL_ROOT, SandboxPolicy()) as plan:
        assert plan.cgroup is None
        assert plan.argv == tuple(ARGV)


needs_cgroup = pytest.mark.skipif(
    not cg.cgroup_support().available, reason=f"no cgroup v2 here: {cg.cgroup_support().reason}"
)


@needs_cgroup
@pytest.mark.parametrize("mode", [SandboxMode.DISABLED, SandboxMode.REQUIRED])
def test_asked_for_cgroup_is_joined_first_and_removed_on_close(mode: SandboxMode) -> None:
    plan = launch(mode, FULL_ROOT, SandboxPolicy(), cgroup=True)
    try:
        assert plan.cgroup is not None
        assert os.path.isdir(plan.cgroup.path)
        # The trusted join step comes first; the real command follows untouched.
        assert plan.argv[1] == "-c"
        assert plan.argv[3] == plan.cgroup.procs_path
        assert os.path.basename(plan.argv[0]) in ("sh", "dash", "bash", "busybox")
        rest = plan.argv[4:]
        assert rest == tuple(ARGV) if mode is SandboxMode.DISABLED else rest[0].endswith("bwrap")
        assert plan.cgroup.path in plan.description
    finally:
        plan.close()
        assert plan.cgroup is not None
        plan.cgroup.close()
    assert not os.path.exists(plan.cgroup.path)
    plan.cgroup.close()  # idempotent


@needs_cgroup
def test_a_plan_that_cannot_be_built_leaves_no_cgroup(tmp_path: Path) -> None:
    before = _actor_cgroups()
    with pytest.raises(Exception, match="socket"):
        launch(
            SandboxMode.REQUIRED,
            FULL_ROOT,
            SandboxPolicy(),
            cgroup=True,
            socket_paths=[str(tmp_path / "nope")],
        )
    assert _actor_cgroups() == before


def _actor_cgroups() -> set[str]:
    base = cg.cgroup_support().base
    assert base is not None
    found = set()
    for dirpath, _dirs, _files in os.walk(os.path.join(base, "pyisolate")):
        if os.path.basename(dirpath).startswith("a-"):
            found.add(dirpath)
    return found


def _fake_proc(tmp_path: Path, own: str, mount: Path) -> tuple[str, str]:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 0:20 / /proc rw - proc proc rw\n"
        f"41 31 0:38 / {mount} rw,relatime - cgroup2 cgroup2 rw\n"
    )
    proc_cgroup = tmp_path / "cgroup"
    proc_cgroup.write_text(f"4:memory:/x\n0::{own}\n")
    return str(mountinfo), str(proc_cgroup)


def test_probe_reads_the_hierarchy(tmp_path: Path) -> None:
    mount = tmp_path / "cg"
    (mount / "user.slice").mkdir(parents=True)
    for d in (mount, mount / "user.slice"):
        (d / "cgroup.procs").write_text("")
    (mount / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (mount / "cgroup.subtree_control").write_text("cpu memory\n")
    support = cg.probe(
        *(),
        **dict(
            zip(
                ("mountinfo", "proc_cgroup"),
                _fake_proc(tmp_path, "/user.slice/session-1.scope", mount),
                strict=True,
            )
        ),
    )
    # Root may write the hierarchy's root, whose controllers it may hand down.
    if os.geteuid() == 0:
        assert support.base == str(mount)
        assert support.controllers == {"memory", "pids", "cpu"}
        assert "controllers: memory, pids, cpu" in support.describe()
    mountinfo = tmp_path / "none"
    mountinfo.write_text("22 1 0:20 / /proc rw - proc proc rw\n")
    missing = cg.probe(mountinfo=str(mountinfo), proc_cgroup=str(tmp_path / "cgroup"))
    assert not missing.available
    assert "no cgroup v2" in missing.reason
    assert missing.describe().startswith("rlimits only")


def test_limits_are_written_in_the_kernels_units(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("memory pids cpu\n")
    (tmp_path / "memory.swap.max").write_text("max\n")
    (tmp_path / "memory.oom.group").write_text("0\n")
    cg._configure(str(tmp_path), ResourceLimits(memory=300 * MIB, processes=100, cpus=0.5))
    assert (tmp_path / "memory.max").read_text() == str(300 * MIB)
    assert (tmp_path / "memory.swap.max").read_text() == "0"
    assert (tmp_path / "memory.oom.group").read_text() == "1"
    assert (tmp_path / "pids.max").read_text() == "100"
    assert (tmp_path / "cpu.max").read_text() == "50000 100000"
    # A controller the hierarchy lacks is left alone.
    other = tmp_path / "other"
    other.mkdir()
    (other / "cgroup.controllers").write_text("pids\n")
    cg._configure(str(other), ResourceLimits(memory=300 * MIB, processes=9))
    assert sorted(p.name for p in other.iterdir()) == ["cgroup.controllers", "pids.max"]


def test_doctor_shows_the_mechanism_and_defaults() -> None:
    rows = dict(capabilities(FULL_ROOT))
    assert rows["resource ceilings"] == cg.cgroup_support().describe()
    assert "0.5 of RAM" in rows["default memory ceiling per actor"]
    assert "0.25 of the memory ceiling" in rows["default tmpfs caps per actor"]
    assert str(ResourceLimits().processes) in rows["default task ceiling per actor"]
    assert "all actors of one host process" in rows
