"""build_launch: modes, environment filtering, the command it builds, fds."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import pytest

from pyisolate.errors import SandboxError, SandboxUnavailableError
from pyisolate.sandbox import (
    Detection,
    ResourceLimits,
    RestrictionModel,
    SandboxMode,
    SandboxPolicy,
    SandboxWarning,
    build_launch,
    capabilities,
)

if TYPE_CHECKING:
    from pathlib import Path

ARGV = [sys.executable, "-c", "pass"]
FULL_ROOT = Detection(RestrictionModel.NONE, "full", bwrap="/usr/bin/bwrap", as_root=True)
FULL_USER = Detection(RestrictionModel.NONE, "full", bwrap="/usr/bin/bwrap", as_root=False)
DEGRADED = Detection(RestrictionModel.APPARMOR, "degraded", "setting up uid map", "/usr/bin/bwrap")
NONE = Detection(RestrictionModel.SYSCTL, "none", "No permissions", "/usr/bin/bwrap")


def launch(mode: SandboxMode, det: Detection | None, **kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = dict(env={}, ro_binds=[], rw_binds=[], socket_paths=[], pass_fds=[])
    args.update(kw)
    policy = args.pop("policy", SandboxPolicy())
    return build_launch(policy, mode, ARGV, detection=det, **args)  # type: ignore[arg-type]


def test_disabled_runs_plainly_with_host_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYISOLATE_TEST_SECRET", "s3cret")
    with launch(SandboxMode.DISABLED, FULL_ROOT, env={"A": "1"}, pass_fds=[7]) as plan:
        assert plan.isolation == "none"
        assert plan.argv == tuple(ARGV)
        assert plan.env["PYISOLATE_TEST_SECRET"] == "s3cret"
        assert plan.env["A"] == "1"
        assert plan.pass_fds == (7,)


def test_required_refuses_with_reason_and_fix() -> None:
    for det in (DEGRADED, NONE):
        with pytest.raises(SandboxUnavailableError) as info:
            launch(SandboxMode.REQUIRED, det)
        assert det.model.remediation.splitlines()[1] in str(info.value)
        assert det.detail in str(info.value)


def test_auto_degrades_and_says_so() -> None:
    with pytest.warns(SandboxWarning, match="degraded"), launch(SandboxMode.AUTO, DEGRADED) as plan:
        assert plan.isolation == "degraded"
        assert "--unshare-user" not in plan.argv
    with pytest.warns(SandboxWarning, match="kernel.unprivileged_userns_clone=1"):
        plan = launch(SandboxMode.AUTO, NONE)
    assert plan.isolation == "none"


def test_root_host_drops_to_unprivileged_uid() -> None:
    with launch(SandboxMode.REQUIRED, FULL_ROOT) as plan:
        argv = plan.argv
        assert plan.isolation == "full"
        assert "--unshare-user" not in argv
        assert argv[argv.index("--cap-drop") + 1] == "ALL"
        tail = argv[argv.index("--") + 1 :]
        assert any(a == "--reuid=65534" for a in tail)
        assert tail[-3:] == tuple(ARGV)
        assert len(plan.pass_fds) == 3  # seccomp program, passwd, group


def test_unprivileged_host_uses_a_user_namespace() -> None:
    policy = SandboxPolicy(limits=ResourceLimits(processes=None))
    with launch(SandboxMode.REQUIRED, FULL_USER, policy=policy) as plan:
        assert "--unshare-user" in plan.argv
        assert "--cap-drop" not in plan.argv
        # Nothing to do before the actor: no pre-exec step at all.
        assert plan.argv[plan.argv.index("--") + 1 :] == tuple(ARGV)


def test_environment_is_an_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYISOLATE_TEST_SECRET", "s3cret")
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("MY_ALLOWED", "yes")
    policy = SandboxPolicy(env_allow=("LANG", "MY_ALLOWED"), env={"EXPLICIT": "1"})
    with launch(SandboxMode.REQUIRED, FULL_ROOT, policy=policy, env={"RUNTIME": "2"}) as plan:
        assert "PYISOLATE_TEST_SECRET" not in plan.env
        assert plan.env["LANG"] == "C.UTF-8"
        assert plan.env["MY_ALLOWED"] == "yes"
        assert plan.env["EXPLICIT"] == "1"
        assert plan.env["RUNTIME"] == "2"
        assert plan.env["HOME"] == "/tmp"


def test_gpu_passthrough_when_asked_or_cuda_transport() -> None:
    with launch(SandboxMode.REQUIRED, FULL_ROOT) as plan:
        assert "/sys" not in plan.argv
    with launch(SandboxMode.REQUIRED, FULL_ROOT, policy=SandboxPolicy(gpu=True)) as plan:
        assert "/sys" in plan.argv
        assert "GPU" in plan.description
    with launch(SandboxMode.REQUIRED, FULL_ROOT, cuda_transport=True) as plan:
        assert "/sys" in plan.argv


def test_tmpfs_sizes_and_network_flag() -> None:
    policy = SandboxPolicy(tmp_size=1 << 20, shm_size=2 << 20, network=True)
    with launch(SandboxMode.REQUIRED, FULL_ROOT, policy=policy) as plan:
        argv = list(plan.argv)
        assert "--unshare-net" not in argv
        assert argv[argv.index("/tmp") - 5 : argv.index("/tmp")] == [
            "--size",
            str(1 << 20),
            "--perms",
            "1777",
            "--tmpfs",
        ]
        assert str(2 << 20) in argv


def test_binding_the_host_root_is_refused() -> None:
    with pytest.raises(SandboxError, match="root"):
        launch(SandboxMode.REQUIRED, FULL_ROOT, ro_binds=["/"])


def test_missing_socket_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="socket"):
        launch(SandboxMode.REQUIRED, FULL_ROOT, socket_paths=[str(tmp_path / "nope")])


def test_close_is_idempotent_and_closes_owned_fds() -> None:
    plan = launch(SandboxMode.REQUIRED, FULL_ROOT)
    fds = list(plan.owned_fds)
    assert all(os.fstat(fd) for fd in fds)
    plan.close()
    plan.close()
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_policy_is_frozen_and_validated() -> None:
    policy = SandboxPolicy(env={"B": "2", "A": "1"})
    assert policy.env == (("A", "1"), ("B", "2"))
    assert hash(policy) == hash(SandboxPolicy(env={"A": "1", "B": "2"}))
    with pytest.raises(ValueError):
        ResourceLimits(processes=0)
    with pytest.raises(TypeError):
        SandboxPolicy(ro_binds="/usr")


def test_capabilities_rows() -> None:
    rows = dict(capabilities(FULL_ROOT))
    assert rows["sandbox restriction model"].startswith("RestrictionModel.NONE")
    assert "full isolation" in rows["sandbox mode AUTO picks"]
    rows = dict(capabilities(NONE))
    assert "kernel.unprivileged_userns_clone" in rows["sandbox remediation"]
