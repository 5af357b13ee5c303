"""Launchers: how an actor's process comes to exist.

``Runtime.spawn`` prepares an :class:`ActorStart` (the actor's record and
bootstrap, its command and what it must see, its sandbox), hands it to a
:class:`Launcher`, and then waits for the actor's READY the same way whoever
launched it. Launchers:

* :class:`ColdLauncher`: a new process (``python -c ...``), wrapped by the
  sandbox. Always able to start an actor.
* :class:`ForkLauncher`: a fork of a warm template process (see
  ``_template``): milliseconds instead of an interpreter's start-up. Asked
  first when the spawn wants a template; it declines (returns None) where it
  cannot fork, and the cold launcher starts the actor instead.
* later: another interpreter or virtual environment, another machine.

A launcher is injected into the Runtime (``Runtime(launcher=...)``); tests use
:class:`pyisolate.actors.testing.RecordingLauncher` to see and steer starts.
"""

from __future__ import annotations

import abc
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import ActorStartError
from ._bootstrap import write_bootstrap
from ._process import ActorProcess
from ._template import TemplatePool, template_command

if TYPE_CHECKING:
    import socket

    from ..sandbox import LaunchRequest, Sandbox
    from ._options import SpawnOptions
    from ._record import _Record

__all__ = ["ActorStart", "ColdLauncher", "ForkLauncher", "Launcher"]

log = logging.getLogger("pyisolate.template")


@attrs.define(eq=False)
class ActorStart:
    """Everything prepared for one start of one actor.

    ``request`` is the actor's command with its environment, binds, sockets
    and the child's end of its side channel (``child_end``, inherited as
    ``boot["channel_fd"]``). ``template_scope``: None to start cold; True for
    a template shared by every actor of the same settings; any other value
    scopes a template to one owner (a supervised child's id).
    ``pkg_root``: where this pyisolate is, for a template's command.
    """

    record: _Record
    boot: dict[str, Any]
    request: LaunchRequest
    sandbox: Sandbox
    options: SpawnOptions
    child_end: socket.socket
    pkg_root: str
    template_scope: Any = None

    @property
    def logger(self) -> logging.Logger:
        return logging.getLogger(f"pyisolate.actor.{self.record.name}")


class Launcher(abc.ABC):
    """Starts actor processes; see the module docstring."""

    def bind(self, task_group: Any) -> None:  # noqa: B027 (optional hook)
        """Called once as the runtime opens: where background tasks may run."""

    @abc.abstractmethod
    async def launch(self, start: ActorStart) -> ActorProcess | None:
        """Start ``start``'s actor and return its process (not yet READY);
        None if this launcher cannot start it. Sets ``start.record.isolation``.
        Raises ActorStartError (or SandboxUnavailableError) when it fails."""

    async def aclose(self) -> None:  # noqa: B027 (optional hook)
        """Release what the launcher keeps (warm templates)."""


class ColdLauncher(Launcher):
    """A new process for each actor."""

    async def launch(self, start: ActorStart) -> ActorProcess:
        record = start.record
        plan = start.sandbox.plan(start.request)
        record.isolation = plan.isolation
        try:
            return ActorProcess(
                plan.argv,
                env=plan.env,
                bootstrap=start.boot,
                pass_fds=plan.pass_fds,
                logger=start.logger,
                cwd=start.options.cwd,
                returncode_map=plan.actor_returncode,
                cgroup=plan.cgroup,
            )
        except OSError as exc:
            raise ActorStartError(
                f"could not start actor {record.name!r}: {exc}", actor=record.name
            ) from exc
        finally:
            plan.close()


class ForkLauncher(Launcher):
    """Forks actors from warm templates, one template per distinct setting."""

    def __init__(self) -> None:
        self._pool: TemplatePool | None = None

    def bind(self, task_group: Any) -> None:
        self._pool = TemplatePool(task_group)

    def release(self, scope: Any) -> None:
        """Shut down the templates scoped to ``scope`` (a supervised child
        stopped for good needs its own no more)."""
        if self._pool is not None:
            self._pool.release(scope)

    async def launch(self, start: ActorStart) -> ActorProcess | None:
        record = start.record
        if start.template_scope is None or self._pool is None:
            return None
        if not hasattr(os, "fork") or not sys.platform.startswith("linux"):
            log.debug("actor %r starts cold: no fork on %s", record.name, sys.platform)
            return None
        opts = start.options
        scope = None if start.template_scope is True else start.template_scope
        request = start.request
        key = (
            repr(start.sandbox),
            opts.python,
            tuple(sorted(request.env.items())),
            request.ro_binds,
            scope,
        )
        template_request = attrs.evolve(
            request,
            argv=template_command(opts.python, start.pkg_root if opts.python is None else ""),
            pass_fds=(),
        )
        preload = _preload_for(start.boot["target"])
        config = {
            "sys_path": start.boot["sys_path"],
            "cwd": start.boot.get("cwd"),
            "preload": preload,
        }
        try:
            template = await self._pool.get(key, start.sandbox, template_request, config)
            process = await template.fork(
                preload,
                start.child_end,
                int(start.boot["channel_fd"]),
                start.logger,
                opts.start_timeout,
            )
        except Exception as exc:
            log.debug("actor %r starts cold: the template failed: %s", record.name, exc)
            return None
        record.isolation = getattr(template, "isolation", "none")
        write_bootstrap(process._stdin.fileno(), start.boot)
        return process

    async def aclose(self) -> None:
        if self._pool is not None:
            for template in list(self._pool.templates.values()):
                template.close()


def _preload_for(target: str) -> list[str]:
    module = target.partition(":")[0]
    return [] if module in ("__main__", "__mp_main__") else [module]
