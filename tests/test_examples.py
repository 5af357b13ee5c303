"""Every script in examples/ runs, exits 0 and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED = {
    "counter.py": [
        "echo: hello",
        "after inc(2): 12",
        "after call('inc', 3): 15",
        "after a cast of 100: 115",
        "done",
    ],
    "supervision.py": ["db: 1 2", "after the crash, db: 1", "worker: 49"],
    "tensors.py": [
        "brightness: 0.25",
        "inverted: 0.75, original untouched: 0.25",
        "mask through the actor: 0.00",
        "relayed to another actor: 0.25",
    ],
    "sandboxed.py": [
        "isolation: full",
        "2 + 3 in the sandbox: 5",
        "host file: refused (No such file or directory)",
        "API_TOKEN: <not set>",
        "unsandboxed, for contrast: host data, s3cret",
        "REQUIRED: full isolation",
    ],
    # On a GPU: CUDA IPC between actors; elsewhere the same code on CPU tensors.
    "gpu_tensors.py": ["device: ", "values intact: yes", "done"],
    "streaming.py": ["squares: [0, 1, 4, 9, 16, 25]", "sum of 0..100: 5050"],
    "crash.py": [
        "remote exception, same type: ZeroDivisionError",
        "exited with code 3) | exit code 3",
        "the other actor still answers: 2.5",
    ],
}


def test_every_example_is_checked() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


# Examples that need torch (skipped where it is not installed: it is optional).
NEEDS_TORCH = {"tensors.py", "gpu_tensors.py"}
# Examples that take more than a few seconds: left out of `just test-fast`.
SLOW = {"tensors.py", "gpu_tensors.py"}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else []) for n in sorted(EXPECTED)],
)
def test_example(name: str) -> None:
    if name in NEEDS_TORCH:
        pytest.importorskip("torch")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=EXAMPLES.parent,
    )
    assert result.returncode == 0, result.stderr
    for line in EXPECTED[name]:
        assert line in result.stdout, result.stdout
