"""The documentation's code runs as printed: the README's tour and the seed
specification's Python snippets (``platform_compatibility.md``)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SEED = REPO.parent / "shared" / "seed" / "platform_compatibility.md"


def python_blocks(text: str) -> list[str]:
    return [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", text, re.S)]


def run_script(code: str, tmp_path: Path, name: str) -> str:
    # Sandboxed actors run as an unprivileged uid: the script they import must
    # be readable by it (pytest makes tmp_path 0700).
    tmp_path.chmod(0o755)
    script = tmp_path / name
    script.write_text(code)
    script.chmod(0o644)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.slow
def test_readme_tour_runs_as_printed(tmp_path: Path) -> None:
    tour, blocking = python_blocks((REPO / "README.md").read_text())[:2]
    run_script(tour, tmp_path, "tour.py")
    # The blocking example uses the tour's Counter: run it in the same module.
    combined = tour + '\n\nif __name__ == "__main__":\n' + textwrap.indent(blocking, "    ")
    out = run_script(combined, tmp_path, "tour_blocking.py")
    assert out.strip().endswith("12 [0, 1, 2]")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the seed's rows are Linux's")
def test_seed_snippets_run_as_printed(tmp_path: Path) -> None:
    if not SEED.exists():
        pytest.skip(f"the seed specification is not beside this checkout ({SEED})")
    blocks = python_blocks(SEED.read_text())
    assert len(blocks) >= 2
    outputs = [run_script(b, tmp_path, f"seed_{i}.py") for i, b in enumerate(blocks)]
    detection = outputs[-1]
    assert "Restriction model: RestrictionModel.NONE" in detection
    assert "Full sandbox support available" in detection
    assert "/dev/shm available for tensor IPC" in detection
