"""Test doubles for the runtime's plug points (launchers).

:class:`RecordingLauncher` wraps a real launcher: it records every start and
can fail the next ones on purpose, so that tests can see how a Runtime
starts its actors and how it copes when a start fails, without patching::

    launcher = RecordingLauncher()
    async with pyisolate.Runtime(launcher=launcher) as rt:
        await rt.spawn(Counter)
        assert launcher.started == ["counter-1"]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ActorStartError
from ._launchers import ActorStart, ColdLauncher, Launcher

if TYPE_CHECKING:
    from ._process import ActorProcess

__all__ = ["RecordingLauncher"]


class RecordingLauncher(Launcher):
    """A launcher that records starts (``started``: actor names, in order)
    and fails the next ``fail_next`` of them with ActorStartError."""

    def __init__(self, inner: Launcher | None = None, *, fail_next: int = 0) -> None:
        self.inner = inner or ColdLauncher()
        self.started: list[str] = []
        self.fail_next = fail_next

    def bind(self, task_group: object) -> None:
        self.inner.bind(task_group)

    async def launch(self, start: ActorStart) -> ActorProcess | None:
        self.started.append(start.record.name)
        if self.fail_next > 0:
            self.fail_next -= 1
            raise ActorStartError(
                f"RecordingLauncher failed the start of {start.record.name!r} on purpose",
                actor=start.record.name,
            )
        return await self.inner.launch(start)

    async def aclose(self) -> None:
        await self.inner.aclose()
