"""Sandboxed actors: a plugin cannot see the host's files or secrets.

Every actor runs in a bubblewrap sandbox by default (``SandboxMode.AUTO``):
only the interpreter and the code it needs are visible, read-only; /tmp is
private; the environment is cleared to an allowlist; there is no network.
``SandboxMode.REQUIRED`` refuses to start an actor without full isolation
(SandboxUnavailableError, with the fix); ``SandboxMode.DISABLED`` runs it
unsandboxed, as on macOS.

    python examples/sandboxed.py
"""

from __future__ import annotations

import os
import tempfile

import anyio

import pyisolate
from pyisolate import SandboxMode, SandboxUnavailableError


class Plugin(pyisolate.Actor):
    def add(self, a: int, b: int) -> int:
        return a + b

    def read(self, path: str) -> str:
        try:
            with open(path) as f:
                return f.read()
        except OSError as exc:
            return f"refused ({exc.strerror})"

    def env(self, name: str) -> str:
        return os.environ.get(name, "<not set>")


async def main() -> None:
    os.environ["API_TOKEN"] = "s3cret"  # a host secret
    fd, secret_file = tempfile.mkstemp(prefix="host-secret-")
    os.write(fd, b"host data")
    os.close(fd)
    try:
        async with pyisolate.Runtime() as rt:
            plugin = await rt.spawn(Plugin)  # sandbox=SandboxMode.AUTO
            print(f"isolation: {rt.isolation(plugin)}")
            print(f"2 + 3 in the sandbox: {await plugin.add(2, 3)}")
            print(f"host file: {await plugin.read(secret_file)}")
            print(f"API_TOKEN: {await plugin.env('API_TOKEN')}")

            trusted = await rt.spawn(Plugin, sandbox=SandboxMode.DISABLED)
            print(
                f"unsandboxed, for contrast: {await trusted.read(secret_file)}, "
                f"{await trusted.env('API_TOKEN')}"
            )

            try:
                strict = await rt.spawn(Plugin, sandbox=SandboxMode.REQUIRED)
                print(f"REQUIRED: {rt.isolation(strict)} isolation")
            except SandboxUnavailableError as exc:
                print(f"REQUIRED refused to start: {exc}")
    finally:
        os.unlink(secret_file)


if __name__ == "__main__":
    anyio.run(main)
