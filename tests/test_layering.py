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
    "environment": 0,
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


# -- the import graph: no cycles, no private modules across packages ------------


def _module_name(path: Path) -> str:
    return ".".join(("pyisolate", *_module_parts(path)))


MODULES = {_module_name(p): p for p in SOURCES}


def _runtime_imports(path: Path, source: str | None = None) -> set[str]:
    """pyisolate modules ``path`` imports when it runs (anywhere in the file,
    functions included), leaving out ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(source if source is not None else path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = [ast.Pass()]
    stripped = ast.unparse(tree)
    found = set()
    for target in _imported(path, stripped):
        name = ".".join(("pyisolate", *target))
        if name in MODULES:
            found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    return {name: _runtime_imports(path) - {name} for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _package_of(name: str) -> str:
    module = MODULES[name]
    return _module_name(module.parent / "__init__.py") if module.name != "__init__.py" else name


def _is_private(name: str) -> bool:
    return any(part.startswith("_") and part != "__init__" for part in name.split(".")[1:])


def test_no_import_cycles() -> None:
    # Package __init__ files re-export lazily, so they are left out: a cycle
    # through a facade is not one at run time.
    graph = {
        name: {t for t in targets if MODULES[t].name != "__init__.py"}
        for name, targets in _graph().items()
        if MODULES[name].name != "__init__.py"
    }
    assert _cycles(graph) == []


def test_the_cycle_check_finds_cycles() -> None:
    # Positive control: a made-up graph with one cycle of three and a self-loop free tail.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_runtime_imports_leave_out_type_checking_blocks() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..actors._runtime import Runtime\n"
        "def f():\n    from ..sandbox import _policy\n"
    )
    found = _runtime_imports(ROOT / "transport" / "_x.py", source)
    assert "pyisolate.actors._runtime" not in found
    assert "pyisolate.sandbox._policy" in found


# The root package's helper for lazy facades: every facade uses it, and it is
# the one private module of the root that subpackages may import.
_SHARED_HELPERS = {"pyisolate._lazy"}


def _private_imports_across_packages() -> list[str]:
    bad = []
    for name, targets in _graph().items():
        own = _package_of(name)
        for target in targets:
            if target in _SHARED_HELPERS:
                continue
            if _package_of(target) != own and _is_private(target.removeprefix(_package_of(target))):
                # A private module of another package (its facade is the door);
                # the top-level _internal modules are the seed's documented paths.
                bad.append(f"{name} -> {target}")
    return sorted(bad)


def test_no_private_module_is_imported_across_packages() -> None:
    assert _private_imports_across_packages() == []


def test_transport_and_sandbox_are_siblings() -> None:
    graph = _graph()
    for name, targets in graph.items():
        if name.startswith("pyisolate.transport"):
            assert not any(t.startswith("pyisolate.sandbox") for t in targets), name
        if name.startswith("pyisolate.sandbox"):
            assert not any(t.startswith("pyisolate.transport") for t in targets), name


# -- environment variables are named once -------------------------------------------


def test_every_environment_variable_is_spelled_once() -> None:
    import re

    seen: dict[str, list[str]] = {}
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and re.fullmatch(r"PYISOLATE_[A-Z0-9_]+", node.value)
            ):
                seen.setdefault(node.value, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    repeated = {name: where for name, where in seen.items() if len(where) > 1}
    assert repeated == {}, "define each variable's name once and import it"


# -- facades: the lazy map, the type checkers' imports and __all__ agree -------


def _lazy_map(module: object) -> dict[str, str] | None:
    for attr in ("_WHERE", "_LAZY"):
        found = getattr(module, attr, None)
        if isinstance(found, dict):
            return found
    return None


def _type_checking_names(name: str) -> set[str]:
    path = Path(importlib.import_module(name).__file__ or "")
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom):
                    names.update(alias.asname or alias.name for alias in inner.names)
    return names


LAZY_FACADES = [
    "pyisolate",
    "pyisolate.actors",
    "pyisolate.supervision",
    "pyisolate.transport",
    "pyisolate.transport.lowlevel",
]


@pytest.mark.parametrize("name", LAZY_FACADES)
def test_facade_lists_agree(name: str) -> None:
    module = importlib.import_module(name)
    lazy = _lazy_map(module)
    assert lazy is not None, f"{name} has no lazy map"
    assert set(lazy) <= set(module.__all__), "every lazily exported name is in __all__"
    assert set(lazy) <= _type_checking_names(name), "type checkers see every lazy name"
