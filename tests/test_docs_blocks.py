"""Every code block in the README and the user guide (docs/) works as printed.

Each ```python block is written, unmodified, to a script file and run in a
fresh interpreter, as a reader who saves it and runs ``python file.py`` would:
blocks are complete programs (imports, classes, an ``if __name__ ==
"__main__":`` guard where actors are defined, since an actor re-imports the
main script), never fragments. Each ```bash block is syntax-checked with
``bash -n`` (many change system settings, so none is run). Blocks that need
torch or numpy skip where those optional packages are missing.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
# Optional packages a block may import: it is skipped where they are missing.
OPTIONAL = ("torch", "numpy")
# Run in `just test-fast` too: the README's first two blocks and the guide's
# first actor (about a second each). Every other block spawns several actors,
# supervisors or torch, so its run is marked slow; all blocks are still
# compiled and checked for undefined names in the fast subset.
FAST_RUNS = {
    ("README.md", 'await ref.cast("inc", 1)'),
    ("README.md", "with pyisolate.Runtime.blocking() as rt:"),
    ("index.md", "class Greeter"),
}
# What a block prints, where the text around it says so: (file, a line of the
# block) -> lines its output must contain, in order.
EXPECTED_OUTPUT = {
    ("README.md", "with pyisolate.Runtime.blocking() as rt:"): ["12 [0, 1, 2]"],
    ("README.md", "T.empty((3, 512, 512)"): ["0.5"],
    ("README.md", "rt.supervise(Supervisor("): ["1 2", "1", "49"],
    ("index.md", "class Greeter"): ["Hello, world!"],
    ("actors.md", "pyisolate.Runtime.blocking() as rt:"): ["12 [0, 1, 2]", "13"],
    ("supervision.md", "print(await sup.supervisor("): [
        "app/inner/a: nested",
        "app/c: added at run time",
        "app/c: started again",
        "['inner', 'b']",
    ],
}


class Block(NamedTuple):
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def extract_blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path``, with its language and first line."""
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match or not match["lang"]:
            i += 1
            continue
        indent, start = len(match["indent"]), i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][indent:])
            i += 1
        assert i < len(lines), f"{path.name}:{start + 1}: unclosed code block"
        blocks.append(Block(path, start + 1, match["lang"], "\n".join(body) + "\n"))
        i += 1
    return blocks


ALL_BLOCKS = [b for p in DOC_FILES for b in extract_blocks(p)]
PYTHON = [b for b in ALL_BLOCKS if b.lang == "python"]
BASH = [b for b in ALL_BLOCKS if b.lang in ("bash", "sh", "shell")]


def imported_modules(code: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.partition(".")[0])
    return names


def _matches(block: Block, key: tuple[str, str]) -> bool:
    return block.path.name == key[0] and key[1] in block.code


def _param(block: Block) -> object:
    fast = any(_matches(block, key) for key in FAST_RUNS) and "torch" not in block.code
    return pytest.param(block, id=block.id, marks=[] if fast else [pytest.mark.slow])


def expected_output(block: Block) -> list[str]:
    return [
        line for key, lines in EXPECTED_OUTPUT.items() if _matches(block, key) for line in lines
    ]


def test_the_docs_have_blocks_to_check() -> None:
    # The extraction itself: a parser that found nothing would pass everything.
    assert len(PYTHON) >= 15, [b.id for b in PYTHON]
    assert len(BASH) >= 5, [b.id for b in BASH]
    assert {b.path.name for b in PYTHON} >= {
        "README.md",
        "index.md",
        "actors.md",
        "tensors.md",
        "sandbox.md",
        "supervision.md",
        "troubleshooting.md",
    }
    # Only languages this test knows how to check (a "py" or "console" block
    # would escape it), plus text blocks, which are not code.
    assert {b.lang for b in ALL_BLOCKS} <= {"python", "bash", "text"}


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in PYTHON])
def test_python_block_is_a_complete_program(block: Block) -> None:
    """No fragments: the block compiles as a script (no top-level await) and,
    where it defines or spawns actors, guards its program with ``__main__``."""
    tree = compile(block.code, block.id, "exec", flags=ast.PyCF_ONLY_AST)
    assert isinstance(tree, ast.Module)
    defines_class = any(isinstance(node, ast.ClassDef) for node in tree.body)
    guarded = any(
        isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body
    )
    if defines_class:
        assert guarded, f"{block.id}: an actor script needs an `if __name__ == '__main__':` guard"


def test_python_blocks_have_no_undefined_or_unused_names(tmp_path: Path) -> None:
    """pyflakes' checks (ruff F): undefined names, unused imports, ... in
    every block at once (fast, and it names the block that is wrong)."""
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (it is in the dev group)")
    files = {}
    for n, block in enumerate(PYTHON):
        script = tmp_path / f"block_{n:02d}.py"
        script.write_text(block.code)
        files[script.name] = block.id
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--select", "F", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = result.stdout
    for name, block_id in files.items():
        report = report.replace(name, block_id)
    assert result.returncode == 0, report


@pytest.mark.parametrize("block", [_param(b) for b in PYTHON])
def test_python_block_runs_as_printed(block: Block, tmp_path: Path) -> None:
    missing = [m for m in OPTIONAL if m in imported_modules(block.code)]
    missing = [m for m in missing if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (optional, not installed)")
    # A sandboxed actor imports the script as another uid when the host is
    # root: the script and its directory must be readable by others (pytest
    # makes tmp_path 0700). A directory of its own, not the temp dir itself,
    # so the sandbox binds just it.
    tmp_path.chmod(0o755)
    script = tmp_path / "block.py"
    script.write_text(block.code)
    script.chmod(0o644)
    env = dict(os.environ)
    # This checkout's pyisolate, whatever the interpreter has installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        f"{block.id} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    # The output the docs promise, in order (other lines may come between).
    printed = iter(line.strip() for line in result.stdout.splitlines())
    for line in expected_output(block):
        assert any(p == line for p in printed), f"{block.id}: no line {line!r} in\n{result.stdout}"


def test_expected_outputs_name_real_blocks() -> None:
    # A renamed or rewritten block must not silently drop its output check.
    for key in [*EXPECTED_OUTPUT, *FAST_RUNS]:
        assert sum(_matches(b, key) for b in PYTHON) == 1, key


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in BASH])
def test_bash_block_parses(block: Block) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    result = subprocess.run(
        [bash, "-n"], input=block.code, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, f"{block.id}: {result.stderr}"
