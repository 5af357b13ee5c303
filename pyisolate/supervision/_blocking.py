"""The blocking facade of a supervisor: ``brt.supervise(spec)`` on a
:class:`~pyisolate.actors.BlockingRuntime` returns a :class:`BlockingSupervisor`.

Every method runs the async one on the runtime's event loop and waits for it.
``ref(child_id)`` returns a :class:`~pyisolate.actors.BlockingActorRef`
around the child's :class:`SupervisedRef`, so it follows the child across
restarts (a call made while the child restarts waits for the next
incarnation, up to its timeout).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..actors import BlockingActorRef
from ._handle import SupervisorHandle

if TYPE_CHECKING:
    from ..actors import BlockingRuntime
    from ._spec import ChildSpec
    from ._stats import ChildCounts, ChildInfo, SupervisorStats

__all__ = ["BlockingSupervisor"]


class BlockingSupervisor:
    """Synchronous twin of :class:`SupervisorHandle`; ``.handle`` is the async one."""

    def __init__(self, owner: BlockingRuntime, handle: SupervisorHandle) -> None:
        self._owner = owner
        self.handle = handle

    def __repr__(self) -> str:
        return f"<BlockingSupervisor {self.handle.name!r}>"

    @property
    def name(self) -> str:
        return self.handle.name

    @property
    def stats(self) -> SupervisorStats:
        return self.handle.stats

    @property
    def done(self) -> bool:
        return self.handle.done

    def _wrap(self, child: Any) -> Any:
        if isinstance(child, SupervisorHandle):
            return BlockingSupervisor(self._owner, child)
        return BlockingActorRef(self._owner, child)

    def ref(self, child_id: str) -> BlockingActorRef:
        """The child's reference, valid across restarts."""
        return BlockingActorRef(self._owner, self._owner.run_async(self.handle.ref, child_id))

    def supervisor(self, child_id: str) -> BlockingSupervisor:
        """Nested supervisor ``child_id`` (follows its restarts)."""
        return BlockingSupervisor(
            self._owner, self._owner.run_async(self.handle.supervisor, child_id)
        )

    def which_children(self) -> list[ChildInfo]:
        return self._owner.run_async(self.handle.which_children)  # type: ignore[no-any-return]

    def count_children(self) -> ChildCounts:
        return self._owner.run_async(self.handle.count_children)  # type: ignore[no-any-return]

    def start_child(self, spec: ChildSpec) -> Any:
        """Add and start a child; returns its blocking reference (or supervisor)."""
        return self._wrap(self._owner.run_async(self.handle.start_child, spec))

    def terminate_child(self, child_id: str) -> None:
        self._owner.run_async(self.handle.terminate_child, child_id)

    def restart_child(self, child_id: str) -> None:
        self._owner.run_async(self.handle.restart_child, child_id)

    def delete_child(self, child_id: str) -> None:
        self._owner.run_async(self.handle.delete_child, child_id)

    def stop(self) -> None:
        """Stop every child in reverse start order, then the supervisor."""
        self._owner.run_async(self.handle.stop)

    def wait(self) -> None:
        """Block until the supervisor stops; RestartIntensityError if it gave up."""
        self._owner.run_async(self.handle.wait)
