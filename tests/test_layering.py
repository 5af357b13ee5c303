"""The design's layering and the public API surface, enforced.

Lower layers never import higher ones (errors < _wire < transport < sandbox <
actors < supervision < the package's top-level modules). Every ``__all__`` names things that
exist, the top-level ``__all__`` is sorted, and importing pyisolate or an
actor's entry module does not import torch or numpy (tensors are an option).
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import pyisolate

ROOT = Path(pyisolate.__file__).parent

LAYERS = {
    "errors": 0,
    "_lazy": 0,
    "_wire": 1,
    "transport": 2,
    "_internal.tensor_serializer": 2,
    "sandbox": 3,
    "_internal.sandbox_detect": 3,
    "actors": 4,
    "supervision": 5,
}
TOP = 6  # __init__, __main__, _demo, _doctor and anything else at the top


def _layer_of(parts: tuple[str, ...]) -> int:
    for depth in (2, 1):
        key = ".".join(parts[:depth])
        if key in LAYERS:
            return LAYERS[key]
    return TOP


def _module_parts(path: Path) -> tuple[str, ...]:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imported(path: Path, source: str | None = None) -> list[tuple[str, ...]]:
    """pyisolate modules imported by ``path`` (absolute or relative imports)."""
    tree = ast.parse(source if source is not None else path.read_text())
    package = _module_parts(path) if path.name == "__init__.py" else _module_parts(path)[:-1]
    found: list[tuple[str, ...]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = base + tuple(node.module.split(".")) if node.module else base
                found.append(target)
                found.extend((*target, alias.name) for alias in node.names)
            elif node.module and node.module.split(".")[0] == "pyisolate":
                target = tuple(node.module.split(".")[1:])
                found.append(target)
                # "from pyisolate(.x) import y": y may be a module
                found.extend((*target, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "pyisolate":
                    found.append(tuple(alias.name.split(".")[1:]))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", "") == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            name = str(node.args[0].value)
            if name.startswith("pyisolate."):
                found.append(tuple(name.split(".")[1:]))
    return [t for t in found if t]


SOURCES = sorted(ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_lower_layers_never_import_higher_ones(path: Path) -> None:
    own = _layer_of(_module_parts(path))
    for target in _imported(path):
        assert _layer_of(target) <= own, (
            f"{path.relative_to(ROOT)} (layer {own}) imports pyisolate.{'.'.join(target)} "
            f"(layer {_layer_of(target)})"
        )


@pytest.mark.parametrize(
    "source",
    [
        "from ..actors import Runtime",
        "from ..actors._runtime import Runtime",
        "import pyisolate.actors",
        "from pyisolate import sandbox",
        "from .. import actors",
    ],
)
def test_the_layering_check_sees_upward_imports(source: str) -> None:
    # Positive controls: each line, written in transport/_x.py, is a violation.
    fake = ROOT / "transport" / "_x.py"
    own = _layer_of(_module_parts(fake))
    assert any(_layer_of(t) > own for t in _imported(fake, source)), source


@pytest.mark.parametrize(
    "source", ["from ..supervision import Supervisor", "from pyisolate.supervision._spec import X"]
)
def test_the_layering_check_sees_actors_importing_supervision(source: str) -> None:
    # Positive controls: the runtime must not import the supervisors above it.
    fake = ROOT / "actors" / "_x.py"
    own = _layer_of(_module_parts(fake))
    assert any(_layer_of(t) > own for t in _imported(fake, source)), source


PUBLIC_MODULES = [
    "pyisolate",
    "pyisolate.errors",
    "pyisolate.actors",
    "pyisolate.supervision",
    "pyisolate.sandbox",
    "pyisolate.transport",
    "pyisolate._internal.sandbox_detect",
    "pyisolate._internal.tensor_serializer",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported, f"{name} has no __all__"
    assert len(set(exported)) == len(exported), f"duplicates in {name}.__all__"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names {attr!r}, which does not exist"


def test_top_level_all_is_complete() -> None:
    # The order is ruff's (RUF022: constants, classes, then functions, each sorted).
    assert len(set(pyisolate.__all__)) == len(pyisolate.__all__)
    for cls in (
        "Runtime",
        "Actor",
        "ActorRef",
        "SpawnOptions",
        "ActorDiedError",
        "ActorStartError",
        "ActorClosedError",
        "RemoteError",
        "ProtocolError",
    ):
        assert cls in pyisolate.__all__


def test_importing_pyisolate_does_not_import_torch_or_numpy() -> None:
    code = (
        "import sys, pyisolate, pyisolate.transport, pyisolate.sandbox; "
        "from pyisolate.actors._child import main; "
        "import pyisolate.actors._runtime; "
        "bad = [m for m in ('torch', 'numpy') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
