"""Actors of the process-ownership tests: each plays one hostile move from
inside its own process (a real actor, sandboxed or not)."""

from __future__ import annotations

import os
import signal
import subprocess

import anyio

import pyisolate


class Prowler(pyisolate.Actor):
    """Plays with its parent (a template, when forked) and its own children."""

    def __init__(self) -> None:
        self._children: list[subprocess.Popen[bytes]] = []

    def ping(self) -> str:
        return "pong"

    def parent_pid(self) -> int:
        return os.getppid()

    def stop_parent(self) -> None:
        """SIGSTOP our parent: a forked actor freezes its template."""
        os.kill(os.getppid(), signal.SIGSTOP)

    def stop_parent_and_exit(self) -> None:
        os.kill(os.getppid(), signal.SIGSTOP)
        os._exit(0)

    def start_sleeper(self) -> int:
        """Start a ``sleep 60`` grandchild of the host; its pid as we see it."""
        child = subprocess.Popen(["sleep", "60"])
        self._children.append(child)
        return child.pid

    def sleeper_alive(self) -> bool:
        return all(child.poll() is None for child in self._children)

    def write_tmp(self, name: str, text: str) -> None:
        with open(os.path.join("/tmp", name), "w") as f:
            f.write(text)

    def read_tmp(self, name: str) -> str | None:
        try:
            with open(os.path.join("/tmp", name)) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def visible_pids(self) -> list[int]:
        """Every process this actor can see in /proc."""
        return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())

    def own_pids(self) -> list[int]:
        """Itself, its parent and its sandbox's init (1): what it may see."""
        return sorted({os.getpid(), os.getppid(), 1})

    async def hang(self) -> None:
        await anyio.sleep(3600)
