"""Fixtures for the sandbox tests."""

from __future__ import annotations

import os
import sys

import pytest

# The helpers module sits beside this file; the package layout keeps this
# conftest from shadowing the root one, so put its directory on the path.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from typing import TYPE_CHECKING

from sandbox_helpers import RunScript, run_script

from pyisolate.sandbox import detect

if TYPE_CHECKING:
    from collections.abc import Iterator


def _fd_set() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def no_fd_leak() -> Iterator[None]:
    """Every test must close what it opened (plan memfds, pipes, sockets)."""
    before = _fd_set()
    yield
    leaked = {fd for fd in _fd_set() - before if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not leaked, f"fds left open: {leaked}"


@pytest.fixture
def full_sandbox() -> None:
    """Skip where this machine cannot give a full sandbox (CI as root can)."""
    if not sys.platform.startswith("linux") or detect().level != "full":
        pytest.skip(f"no full sandbox here: {detect().model}")


@pytest.fixture
def run() -> RunScript:
    return run_script
