"""A newcomer's first commands: ``python -m pyisolate`` (bare, ``--version``,
``demo``), ``just`` with no recipe, and which torch ``scripts/bootstrap``
would install (its plan, checked without installing anything)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import pyisolate

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[1]
BOOTSTRAP = REPO / "scripts" / "bootstrap"


def pyisolate_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyisolate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


# -- python -m pyisolate ------------------------------------------------------------


def test_version_prints_the_projects_version() -> None:
    result = pyisolate_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"pyisolate {pyisolate.__version__}"
    # ...which is the version the package is built with.
    declared = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert declared is not None
    assert declared.group(1) == pyisolate.__version__


def test_bare_invocation_prints_help_not_an_error() -> None:
    result = pyisolate_cli()
    assert result.returncode == 0, result.stderr
    assert "usage: python -m pyisolate" in result.stdout
    for command in ("demo", "doctor", "--version"):
        assert command in result.stdout
    assert "error" not in result.stderr


def test_an_unknown_command_is_still_an_error() -> None:
    result = pyisolate_cli("bogus")
    assert result.returncode == 2
    assert "invalid choice: 'bogus'" in result.stderr


@pytest.mark.slow
def test_demo_times_async_and_sync_methods_each_labelled() -> None:
    result = pyisolate_cli("demo", timeout=120)
    assert result.returncode == 0, result.stderr
    latency = [line for line in result.stdout.splitlines() if line.startswith("latency:")]
    assert len(latency) == 2, result.stdout
    assert re.match(r"latency:  async method: \d+ us per call \(median of \d+", latency[0])
    assert re.match(r"latency:  sync method \(worker thread\): \d+ us per call", latency[1])
    assert "crash:    actor 'crasher' died (exited with code 3)" in result.stdout


# -- just -----------------------------------------------------------------------------


def just_executable() -> str:
    for candidate in (REPO / ".venv" / "bin" / "just", Path(sys.executable).parent / "just"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("just")
    if found is None:
        pytest.skip("just is not installed (./scripts/bootstrap installs it into .venv)")
    return found


def test_just_with_no_recipe_lists_the_recipes(tmp_path: Path) -> None:
    # A PATH without just, as for `.venv/bin/just` from a fresh shell: the
    # default recipe must not call a bare `just`.
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [just_executable(), "--justfile", str(REPO / "justfile")],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    for recipe in ("demo", "test ", "test-fast", "lint", "typecheck", "check", "install"):
        assert f"    {recipe}" in result.stdout, result.stdout


def test_just_test_fast_leaves_out_the_slow_tests() -> None:
    result = subprocess.run(
        [just_executable(), "--justfile", str(REPO / "justfile"), "--dry-run", "test-fast", "-x"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert '-m pytest -m "not slow" -x' in result.stderr


# -- scripts/bootstrap's torch plan ---------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


UNREACHABLE = f"http://127.0.0.1:{closed_port()}/whl/cpu"


def fresh_pip_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """The environment of a fresh machine's pip: no configuration file, no
    index, PyTorch's index unreachable; plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYISOLATE_"))}
    (tmp_path / "nothing").mkdir(exist_ok=True)
    clean.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INDEX="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_FIND_LINKS=str(tmp_path / "nothing"),
        PYTHON=sys.executable,  # used where the checkout has no .venv yet
        PYISOLATE_TORCH_INDEX=UNREACHABLE,
        PYISOLATE_TORCH_PROBE_TIMEOUT="3",
        PYISOLATE_TORCH_RESOLVE_TIMEOUT="60",
    )
    clean.update(env)
    return clean


def parse_plan(result: subprocess.CompletedProcess[str]) -> dict[str, list[str]]:
    assert result.returncode == 0, result.stderr
    lines: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        lines.setdefault(key, []).append(value)
    assert len(lines["kind"]) == 1 and len(lines["why"]) == 1, result.stdout
    return lines


def torch_plan(tmp_path: Path, **env: str) -> dict[str, list[str]]:
    """``scripts/bootstrap --print-torch-plan``'s key=value lines, on a fresh
    machine's pip (see fresh_pip_env) with ``env``."""
    result = subprocess.run(
        ["bash", str(BOOTSTRAP), "--print-torch-plan"],
        capture_output=True,
        text=True,
        timeout=90,
        env=fresh_pip_env(tmp_path, **env),
        cwd=tmp_path,
    )
    return parse_plan(result)


def fake_torch_wheel(directory: Path, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A tiny installable wheel named torch: stands for a wheel pip offers."""
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"torch-{version}-py3-none-any.whl"
    info = f"torch-{version}.dist-info"
    metadata = "Metadata-Version: 2.1\nName: torch\nVersion: " + version + "\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("torch/__init__.py", "")
        z.writestr(f"{info}/METADATA", metadata)
        z.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        z.writestr(f"{info}/RECORD", "")
    return wheel


@contextlib.contextmanager
def served(directory: Path) -> Iterator[str]:
    """``directory`` over HTTP on loopback, as a package index."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cpu"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_plan_on_a_fresh_machine_installs_no_torch_rather_than_gigabytes(tmp_path: Path) -> None:
    # PyTorch's CPU index unreachable, pip offering nothing: no torch, said plainly.
    plan = torch_plan(tmp_path, PYISOLATE_TORCH="cpu")
    assert plan["kind"] == ["none"]
    assert "arg" not in plan
    assert UNREACHABLE in plan["why"][0]
    assert "did not answer" in plan["why"][0]
    assert "torch is NOT installed" in plan["hint"][0]
    assert "PYISOLATE_TORCH=cuda" in plan["hint"][0]


def test_plan_takes_a_cpu_wheel_that_pip_offers_locally(tmp_path: Path) -> None:
    fake_torch_wheel(tmp_path / "wheels", "2.13.0+cpu")
    plan = torch_plan(tmp_path, PYISOLATE_TORCH="cpu", PIP_FIND_LINKS=str(tmp_path / "wheels"))
    assert plan["kind"] == ["cpu-local"]
    assert plan["arg"] == ["torch==2.13.0+cpu"]
    assert "file://" in plan["why"][0]


def test_plan_refuses_a_cuda_build_even_when_it_is_at_hand(tmp_path: Path) -> None:
    # The CUDA build's own wheel may be local; its nvidia dependencies are GBs.
    fake_torch_wheel(
        tmp_path / "wheels",
        "2.13.0",
        requires=('nvidia-cudnn-cu13==9.20.0.48; platform_system == "Linux"', "filelock"),
    )
    plan = torch_plan(tmp_path, PYISOLATE_TORCH="cpu", PIP_FIND_LINKS=str(tmp_path / "wheels"))
    if not sys.platform.startswith("linux"):
        assert plan["kind"] == ["cpu-local"]  # the marker does not apply there
        return
    assert plan["kind"] == ["none"]
    assert "arg" not in plan
    assert "only a GPU build" in plan["why"][0]
    assert "nvidia-cudnn-cu13" in plan["why"][0]


def test_plan_uses_the_cpu_index_when_it_answers(tmp_path: Path) -> None:
    root = tmp_path / "index"
    (root / "cpu" / "torch").mkdir(parents=True)
    page = root / "cpu" / "torch" / "index.html"
    page.write_text('<a href="torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl">torch</a>\n')
    with served(root) as index:
        plan = torch_plan(tmp_path, PYISOLATE_TORCH_INDEX=index, PYISOLATE_TORCH="cpu")
        assert plan["kind"] == ["cpu-index"]
        assert plan["arg"] == ["--index-url", index, "torch==2.13.0"]
        # An index that answers without the release is passed over.
        other = torch_plan(
            tmp_path,
            PYISOLATE_TORCH_INDEX=index,
            PYISOLATE_TORCH="cpu",
            PYISOLATE_TORCH_VERSION="9.9.9",
        )
        assert other["kind"] == ["none"]
        assert "offers no torch 9.9.9" in other["why"][0]


def test_plan_for_explicit_choices(tmp_path: Path) -> None:
    cuda = torch_plan(tmp_path, PYISOLATE_TORCH="cuda")
    assert cuda["kind"] == ["cuda"]
    assert cuda["arg"] == ["torch==2.13.0"]
    assert "several GB" in cuda["why"][0]
    none = torch_plan(tmp_path, PYISOLATE_TORCH="none")
    assert none["kind"] == ["none"]
    assert "arg" not in none
    assert "hint" not in none
    spec = torch_plan(tmp_path, PYISOLATE_TORCH="torch==2.12.0 --index-url http://x/simple")
    assert spec["kind"] == ["spec"]
    assert spec["arg"] == ["torch==2.12.0", "--index-url", "http://x/simple"]


def test_plan_keeps_an_installed_torch_unless_told(tmp_path: Path) -> None:
    # A re-run must not swap a torch the user installed (a CUDA one, say).
    pytest.importorskip("torch")
    script = [sys.executable, str(REPO / "scripts" / "torch_plan.py")]

    def plan(*args: str, **env: str) -> dict[str, list[str]]:
        return parse_plan(
            subprocess.run(
                [*script, *args],
                capture_output=True,
                text=True,
                timeout=90,
                env=fresh_pip_env(tmp_path, **env),
            )
        )

    assert plan()["kind"] == ["installed"]
    assert plan(PYISOLATE_TORCH="none")["kind"] == ["none"]  # told otherwise
    # Planning for a new .venv (--fresh), this interpreter's torch is moot.
    assert plan("--fresh")["kind"] == ["none"]  # and nothing else is offered
