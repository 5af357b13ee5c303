"""Fixtures of the supervision suite: the actor module's path, a journal file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    path = tmp_path / "journal.txt"
    path.touch()
    return path


@pytest.fixture
async def rt() -> AsyncIterator[object]:
    """An unsandboxed runtime: the tests signal actors through files in
    ``tmp_path``, which a sandbox (rightly) hides. ``test_chaos`` and
    ``test_sandboxed`` run sandboxed."""
    import pyisolate
    from pyisolate.sandbox import SandboxMode

    async with pyisolate.Runtime(sandbox=SandboxMode.DISABLED) as runtime:
        yield runtime
