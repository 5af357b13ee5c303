"""Actors for the injected-transport tests.

Importing this module registers FakeTransport in the actor's process: the
documented way for an actor to receive by a transport the host was given
(``Runtime(transports=[...])``). ``transport_actors`` does not import it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pyisolate
from pyisolate.transport import FakeTransport

__all__ = ["FakeReceiver", "FakeTransport"]


def _session() -> Any:
    from pyisolate.actors._child import current_server

    return current_server().transport.get()


class FakeReceiver(pyisolate.Actor):
    async def digest(self, buf: Any) -> tuple[str, int, str]:
        view = memoryview(buf)
        return hashlib.sha256(view).hexdigest(), view.nbytes, type(buf).__name__

    async def echo(self, value: Any) -> Any:
        return value

    async def fake_log(self) -> list[tuple[str, int, int]]:
        """What this process's FakeTransport did (empty if it was never made)."""
        fake = _session().transports.get("fake")
        return [] if fake is None else [tuple(entry) for entry in fake.log]

    async def made(self, n: int) -> bytes:
        return bytes(range(256)) * (n // 256)
