"""Decide which torch ``scripts/bootstrap`` installs, without installing it.

Run by ``scripts/bootstrap`` with the interpreter of ``.venv`` (its pip is the
one asked), and by ``scripts/bootstrap --print-torch-plan``. Why a plan at
all: from PyPI alone, ``pip install torch`` on x86-64 Linux resolves to the
CUDA build and about 19 nvidia/cuda/triton packages, several GB, silently. So
the default (``PYISOLATE_TORCH=cpu``) installs a CPU build only where one can
be had cheaply, and otherwise installs no torch and says so: torch is optional
for pyisolate, only actors that move tensors need it.

Choices (environment variables):

``PYISOLATE_TORCH``
    ``cpu`` (the default): PyTorch's CPU wheel index when it answers, else a
    CPU build that pip already offers (a local wheel, or an index whose torch
    is a CPU build), else none. ``cuda``: the CUDA build from PyPI, on purpose.
    ``none``: no torch. Anything else is pip arguments, e.g. ``torch==2.13.0``.
    When unset and torch is already installed, it is kept as it is.
``PYISOLATE_TORCH_VERSION``
    the release to install (default below).
``PYISOLATE_TORCH_INDEX``
    the CPU wheel index to try first (a mirror of PyTorch's, say).
``PYISOLATE_TORCH_PROBE_TIMEOUT``, ``PYISOLATE_TORCH_RESOLVE_TIMEOUT``
    seconds to wait for the index and for pip's dry run.

Output, one ``key=value`` per line, read by ``scripts/bootstrap``::

    kind=cpu-index | cpu-local | cpu-remote | cuda | spec | installed | none
    why=<one line for a person>
    hint=<what to do instead>           (only when the default installs none)
    arg=<one pip install argument>      (repeated; none for installed/none)
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_VERSION = "2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# Names of the GPU runtime packages the CUDA build of torch depends on.
_GPU_DEPENDENCY = re.compile(r"^(nvidia-|cuda-|triton)", re.IGNORECASE)
CUDA_SIZE = (
    "several GB: torch's CUDA wheel (about 0.5 GB for 2.13.0) plus about 19 "
    "nvidia-*/cuda-*/triton packages"
)

HINT = (
    "torch is NOT installed. pyisolate runs without it; tensor features and their "
    "tests need it (the tests skip). To get it: PYISOLATE_TORCH=cuda ./scripts/bootstrap "
    f"for the CUDA build ({CUDA_SIZE}), PYISOLATE_TORCH_INDEX=<a mirror of {CPU_INDEX}> "
    "./scripts/bootstrap, or .venv/bin/pip install torch yourself"
)


def probe_index(index: str, version: str, timeout: float) -> str | None:
    """None when ``index`` offers torch ``version``, else why not (one line)."""
    url = index.rstrip("/") + "/torch/"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            page = response.read(32 << 20).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{index} did not answer within {timeout:g} s ({reason})"
    if f"torch-{version}" not in page:
        return f"{index} answered but offers no torch {version}"
    return None


def resolve(spec: str, timeout: float) -> tuple[dict[str, Any] | None, str]:
    """What ``pip install spec`` would pick, by pip's dry run (metadata only;
    no wheel is downloaded where the index serves wheel metadata, as PyPI
    does; the timeout bounds the rest). Returns (pip's report entry, why)."""
    with tempfile.TemporaryDirectory(prefix="torch-plan-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = [
            sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
            "--no-deps", "--quiet", "--report", str(report), spec,
        ]  # fmt: skip
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, f"pip could not say within {timeout:g} s which {spec} it would install"
        if done.returncode != 0 or not report.exists():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return None, f"pip offers no {spec} ({last.strip()})"
        entries = json.loads(report.read_text())["install"]
    if not entries:
        return None, f"pip offers no {spec}"
    return entries[0], ""


def _marker_applies(requirement: str) -> bool:
    """Whether a Requires-Dist line applies on this machine (True when unsure)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        try:
            from pip._vendor.packaging.requirements import Requirement  # type: ignore[assignment]
        except ImportError:
            return True
    try:
        marker = Requirement(requirement).marker
    except Exception:
        return True
    return marker is None or bool(marker.evaluate({"extra": ""}))


def gpu_build(entry: dict[str, Any]) -> str | None:
    """None for a CPU build, else what makes ``entry`` a GPU build."""
    metadata = entry.get("metadata", {})
    version = str(metadata.get("version", ""))
    local = version.partition("+")[2].lower()
    if local.startswith(("cu", "rocm")):
        return f"its version {version} is a {local} build"
    if local == "cpu":
        return None
    gpu = [
        re.split(r"[\s;\[<>=!~(]", r.strip(), maxsplit=1)[0]
        for r in metadata.get("requires_dist") or []
        if _GPU_DEPENDENCY.match(r) and _marker_applies(r)
    ]
    if gpu:
        return f"it needs {', '.join(gpu)}"
    return None


def plan(env: dict[str, str]) -> tuple[str, str, list[str]]:
    """(kind, why, pip install arguments) for the environment ``env``."""
    choice = env.get("PYISOLATE_TORCH", "").strip()
    version = env.get("PYISOLATE_TORCH_VERSION", "").strip() or DEFAULT_VERSION
    spec = f"torch=={version}"
    if not choice:
        try:
            installed = importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:
            choice = "cpu"
        else:
            return (
                "installed",
                f"torch {installed} is already installed; kept "
                "(PYISOLATE_TORCH=cpu|cuda|none to change it)",
                [],
            )
    if choice == "none":
        return "none", "PYISOLATE_TORCH=none: torch is not installed", []
    if choice == "cuda":
        return (
            "cuda",
            f"PYISOLATE_TORCH=cuda: {spec} from the package index, on x86-64 Linux "
            f"the CUDA build, {CUDA_SIZE}",
            [spec],
        )
    if choice != "cpu":
        return "spec", f"PYISOLATE_TORCH={choice!r}, passed to pip as it is", shlex.split(choice)

    index = env.get("PYISOLATE_TORCH_INDEX", "").strip() or CPU_INDEX
    probe_timeout = float(env.get("PYISOLATE_TORCH_PROBE_TIMEOUT", "") or 5)
    resolve_timeout = float(env.get("PYISOLATE_TORCH_RESOLVE_TIMEOUT", "") or 120)
    unreachable = probe_index(index, version, probe_timeout)
    if unreachable is None:
        return "cpu-index", f"the CPU build from {index}", ["--index-url", index, spec]
    entry, why_not = resolve(spec, resolve_timeout)
    if entry is not None:
        url = str(entry.get("download_info", {}).get("url", "?"))
        exact = f"torch=={entry['metadata']['version']}"
        gpu = gpu_build(entry)
        if gpu is None:
            where = "cpu-local" if url.startswith("file:") else "cpu-remote"
            return where, f"{unreachable}; pip offers a CPU build: {url}", [exact]
        why_not = f"pip offers only a GPU build ({gpu}): {url}"
    return "none", f"no CPU build of torch {version} within reach: {unreachable}; {why_not}", []


def main(argv: list[str]) -> int:
    env = dict(os.environ)
    # Planning for a new .venv: the torch this interpreter may have is moot.
    if "--fresh" in argv and not env.get("PYISOLATE_TORCH", "").strip():
        env["PYISOLATE_TORCH"] = "cpu"
    kind, why, args = plan(env)
    print(f"kind={kind}")
    print(f"why={why}")
    if kind == "none" and env.get("PYISOLATE_TORCH") != "none":
        print(f"hint={HINT}")
    for arg in args:
        print(f"arg={arg}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
