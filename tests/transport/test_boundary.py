"""The transport package's boundary: no import cycle between its modules, and
the rest of pyisolate reaches it only through its public names
(``pyisolate.transport`` and ``pyisolate.transport.lowlevel``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pyisolate

ROOT = Path(pyisolate.__file__).parent
PUBLIC = {"transport", "transport.lowlevel", "transport.testing"}


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path, source: str | None = None) -> set[str]:
    """pyisolate modules (relative to the package) that ``path`` imports when
    it runs: imports under ``if TYPE_CHECKING:`` are for annotations only."""
    tree = ast.parse(source if source is not None else path.read_text())
    skip = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for sub in ast.walk(node)
    }
    me = _name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("pyisolate."):
                target = node.module.removeprefix("pyisolate.")  # type: ignore[union-attr]
            else:
                continue
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(
                a.name.removeprefix("pyisolate.")
                for a in node.names
                if a.name.startswith("pyisolate.")
            )
    return found


MODULES = {_name(p): p for p in sorted((ROOT / "transport").glob("*.py"))}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _graph(sources: dict[str, Path], extra: dict[str, str] | None = None) -> dict[str, set[str]]:
    graph = {name: _runtime_imports(path) & set(sources) for name, path in sources.items()}
    for name, source in (extra or {}).items():
        graph[name] = _runtime_imports(sources[name], source) & set(sources)
    return {name: deps - {name} for name, deps in graph.items()}


def test_no_import_cycle_between_transport_modules() -> None:
    assert _cycle(_graph(MODULES)) is None


def test_the_cycle_check_sees_a_cycle() -> None:
    # Positive control: _detect importing _session at run time (as it once did)
    # closes a circle, since _session imports _detect; under TYPE_CHECKING it does not.
    source = MODULES["transport._detect"].read_text()
    assert _cycle(_graph(MODULES, {"transport._detect": source + "\nfrom . import _session\n"}))
    guarded = source + "\nif TYPE_CHECKING:\n    from . import _session\n"
    assert _cycle(_graph(MODULES, {"transport._detect": guarded})) is None


OUTSIDE = [p for p in sorted(ROOT.rglob("*.py")) if not _name(p).startswith("transport")]


def _private_transport_imports(path: Path, source: str | None = None) -> list[str]:
    return sorted(
        t
        for t in _runtime_imports(path, source)
        if t.startswith("transport.") and t not in PUBLIC and t.split(".")[1].startswith("_")
    )


@pytest.mark.parametrize("path", OUTSIDE, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_rest_of_pyisolate_uses_only_public_transport_names(path: Path) -> None:
    assert not _private_transport_imports(path)


def test_the_private_import_check_sees_one() -> None:
    where = ROOT / "actors" / "_oob.py"
    assert _private_transport_imports(where, "from ..transport._fdpass import send_fds")
    assert _private_transport_imports(where, "import pyisolate.transport._session")
    assert not _private_transport_imports(where, "from ..transport.lowlevel import send_fds")
