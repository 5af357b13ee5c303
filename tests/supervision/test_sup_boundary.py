"""Supervision's boundary: it reaches the runtime only through its narrow
interface (``SupervisorHost``), and imports only other packages' public names.

Each check has a positive control: a line that breaks the rule is caught.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pyisolate
from pyisolate.actors import Runtime

ROOT = Path(pyisolate.__file__).parent
SUPERVISION = sorted((ROOT / "supervision").glob("*.py"))
# Modules that own the runtime's private state.
OWNERS = {ROOT / "actors" / "_runtime.py", ROOT / "actors" / "_router.py"}


def _runtime_private_names() -> set[str]:
    """Runtime's private attributes: its methods and what its owners assign."""
    names = {n for n in dir(Runtime) if n.startswith("_") and not n.startswith("__")}
    for path in OWNERS:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                names.add(node.attr)
    return names


PRIVATE = _runtime_private_names()


def _reaches_into_runtime(source: str) -> list[str]:
    """``x._name`` where ``_name`` is a Runtime private and ``x`` is not ``self``."""
    return [
        ast.unparse(node)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and node.attr in PRIVATE
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    ]


def _private_imports(source: str) -> list[str]:
    """Imports of another package's ``_private`` module (relative ``..`` or absolute)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom):
            continue
        module = node.module or ""
        if node.level == 1:
            continue  # this package's own modules
        parts = module.split(".")
        if node.level == 0:
            if parts[0] != "pyisolate":
                continue
            parts = parts[1:]
        if parts[:1] == ["supervision"]:
            continue
        # pyisolate._wire and pyisolate._lazy are packages/modules of the root
        # that other layers use by their public names.
        if any(p.startswith("_") for p in parts[1:]) or (
            parts and parts[0].startswith("_") and parts[0] not in ("_wire", "_lazy")
        ):
            found.append(f"{'.' * node.level}{module}")
        found.extend(f"{module}.{a.name}" for a in node.names if a.name.startswith("_") and parts)
    return found


def test_runtime_privates_are_known() -> None:
    # The rule below is only as good as this list.
    assert {"_records", "_holds", "_tg", "_ids", "_forward", "_send_error_to"} <= PRIVATE


@pytest.mark.parametrize("path", SUPERVISION, ids=lambda p: p.name)
def test_supervision_uses_no_runtime_private(path: Path) -> None:
    assert _reaches_into_runtime(path.read_text()) == []


@pytest.mark.parametrize(
    "source",
    ["rt._records.get(1)", "self.runtime._holds[1] = h", "await host._tg.start(f)", "rt._ids"],
)
def test_reaching_into_the_runtime_is_caught(source: str) -> None:
    assert _reaches_into_runtime(source)


@pytest.mark.parametrize("path", SUPERVISION, ids=lambda p: p.name)
def test_supervision_imports_only_public_names(path: Path) -> None:
    assert _private_imports(path.read_text()) == []


@pytest.mark.parametrize(
    "source",
    [
        "from ..actors._process import KILL_GRACE",
        "from pyisolate.actors._ref import Endpoint",
        "from ..actors import _private_thing",
        "from ..transport._fdpass import close_unused_fds",
    ],
)
def test_private_imports_are_caught(source: str) -> None:
    assert _private_imports(source)


def test_public_imports_pass() -> None:
    # Negative control: what the package does import is allowed.
    source = "from ..actors import ActorRef\nfrom .._wire import Kind\nfrom ._spec import ChildSpec"
    assert _private_imports(source) == []


def test_supervise_is_a_thin_adapter() -> None:
    # The runtime names no supervision module: the spec starts itself.
    for path in [ROOT / "actors" / "_runtime.py", ROOT / "actors" / "_blocking.py"]:
        assert "supervision" not in {
            part
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom)
            for part in (node.module or "").split(".")
        }
