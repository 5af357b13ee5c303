"""Detection: every restriction model from recorded bwrap errors and a fake
/proc, the real probe on this machine, and the seed's snippets as printed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from pyisolate._internal.sandbox_detect import RestrictionModel, detect_restriction_model
from pyisolate.sandbox import detect

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

NO_PERMS = (
    "bwrap: No permissions to creating new namespace, likely because the kernel does not "
    "allow non-privileged user namespaces. On e.g. debian this can be enabled with "
    "'sysctl kernel.unprivileged_userns_clone=1'.\n"
)


def fake_proc(tmp_path: Path, **files: str) -> str:
    """A /proc stand-in: keyword ``sys__kernel__x='1'`` writes sys/kernel/x."""
    root = tmp_path / "proc"
    for name, content in files.items():
        path = root.joinpath(*name.split("__"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    root.mkdir(exist_ok=True)
    return str(root)


def failing(stderr: str, *, degraded_ok: bool = False):  # type: ignore[no-untyped-def]
    def runner(argv: Sequence[str], pass_fds: Sequence[int]) -> tuple[int, str]:
        if degraded_ok and "--unshare-user" not in argv:
            return 0, ""
        return 1, stderr

    return runner


CASES = [
    ("bwrap: setting up uid map: Permission denied\n", {}, False, RestrictionModel.APPARMOR),
    ("bwrap: loopback: Failed RTM_NEWADDR: Operation not permitted\n", {}, False, RestrictionModel.APPARMOR),
    (NO_PERMS, {"sys__kernel__apparmor_restrict_unprivileged_userns": "1\n"}, False, RestrictionModel.APPARMOR),
    (NO_PERMS, {"sys__kernel__unprivileged_userns_clone": "0\n"}, False, RestrictionModel.SYSCTL),
    (NO_PERMS, {}, False, RestrictionModel.SYSCTL),
    ("bwrap: Creating new namespace failed: No space left on device\n", {"sys__user__max_user_namespaces": "0\n"}, False, RestrictionModel.USERNS_LIMIT),
    ("bwrap: Creating new namespace failed: Operation not permitted\n", {"1__cgroup": "0::/docker/3f2a\n"}, True, RestrictionModel.CONTAINER),
    ("bwrap: Creating new namespace failed: Operation not permitted\n", {"self__status": "Seccomp:\t2\nCapEff:\t00000000a80425fb\n"}, True, RestrictionModel.CONTAINER),
    (NO_PERMS, {"self__status": "Seccomp:\t2\n", "sys__kernel__unprivileged_userns_clone": "1\n"}, False, RestrictionModel.CONTAINER),
    ("bwrap: Can't mount proc on /newroot/proc: Operation not permitted\n", {"1__environ": "container=podman\0"}, False, RestrictionModel.CONTAINER),
    ("bwrap: execvp true: No such file or directory\n", {}, False, RestrictionModel.UNKNOWN),
]  # fmt: skip


@pytest.mark.parametrize(("stderr", "files", "as_root", "expected"), CASES)
def test_classification_from_recorded_errors(
    tmp_path: Path, stderr: str, files: dict[str, str], as_root: bool, expected: RestrictionModel
) -> None:
    det = detect(
        runner=failing(stderr),
        proc_root=fake_proc(tmp_path, **files),
        bwrap="/usr/bin/bwrap",
        as_root=as_root,
    )
    assert det.model is expected
    assert det.level == "none"
    assert det.detail == stderr.strip()
    assert det.model.remediation


def test_apparmor_gets_degraded_mode(tmp_path: Path) -> None:
    det = detect(
        runner=failing("bwrap: setting up uid map: Permission denied", degraded_ok=True),
        proc_root=fake_proc(tmp_path),
        bwrap="/usr/bin/bwrap",
        as_root=False,
    )
    assert (det.model, det.level) == (RestrictionModel.APPARMOR, "degraded")
    assert "apparmor_parser -R /etc/apparmor.d/bwrap" in det.model.remediation


def test_missing_bwrap_and_other_platforms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    det = detect(runner=failing("unused"), proc_root=str(tmp_path), as_root=False)
    assert (det.model, det.level) == (RestrictionModel.BWRAP_MISSING, "none")
    assert "apt-get install bubblewrap" in det.model.remediation
    for platform in ("darwin", "win32"):
        det = detect(runner=failing("unused"), platform=platform)
        assert det.model is RestrictionModel.UNSUPPORTED_PLATFORM


def test_every_model_has_remediation_and_summary() -> None:
    for model in RestrictionModel:
        assert model.summary
        assert bool(model.remediation) is (model is not RestrictionModel.NONE)
    assert (
        "sudo sysctl -w kernel.unprivileged_userns_clone=1" in RestrictionModel.SYSCTL.remediation
    )
    assert "capsh --print | grep cap_sys_admin" in RestrictionModel.CONTAINER.remediation


def test_probe_uses_the_launchers_flags(tmp_path: Path) -> None:
    seen: list[Sequence[str]] = []

    def runner(argv: Sequence[str], pass_fds: Sequence[int]) -> tuple[int, str]:
        seen.append(argv)
        return 0, ""

    det = detect(runner=runner, proc_root=str(tmp_path), bwrap="/usr/bin/bwrap", as_root=True)
    assert det.model is RestrictionModel.NONE
    (argv,) = seen
    for flag in ("--unshare-pid", "--unshare-net", "--seccomp", "--die-with-parent", "--cap-drop"):
        assert flag in argv


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_real_probe_is_none_and_cached() -> None:
    assert detect_restriction_model() is RestrictionModel.NONE
    assert detect() is detect()
    assert str(detect_restriction_model()) == "RestrictionModel.NONE"


SEED_FEATURE_DETECTION = """
from pyisolate._internal.sandbox_detect import (
    detect_restriction_model,
    RestrictionModel,
)

# Check sandbox capability
model = detect_restriction_model()
print(f"Restriction model: {model}")

if model == RestrictionModel.NONE:
    print("Full sandbox support available")
elif model == RestrictionModel.APPARMOR:
    print("Running with AppArmor restrictions")
elif model == RestrictionModel.SYSCTL:
    print("User namespaces disabled via sysctl")
"""

SEED_APPARMOR = """
from pyisolate._internal.sandbox_detect import detect_restriction_model, RestrictionModel

model = detect_restriction_model()
if model == RestrictionModel.APPARMOR:
    print("Running in degraded sandbox mode")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_seed_snippets_run_as_printed() -> None:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SEED_FEATURE_DETECTION)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert out == "Restriction model: RestrictionModel.NONE\nFull sandbox support available\n"
    subprocess.run([sys.executable, "-c", SEED_APPARMOR], check=True, timeout=60)
