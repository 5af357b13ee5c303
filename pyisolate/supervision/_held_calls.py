"""Actor-to-actor calls that wait for a supervised child's next incarnation.

A call from one actor to another is routed by the host. When its target is a
supervised child that is down but will be started again (it died a moment
ago, is restarting, or is being started), the host's router offers the frame
here (:meth:`HeldCalls.offer`) instead of answering ActorClosedError, and has
the held frames delivered in their order once the next incarnation is READY
(:meth:`HeldCalls.deliver`, before any frame that arrives after the READY).
A caller that gives up (its timeout) sends a CANCEL, which removes its frame;
a caller that dies has its frames dropped at delivery. When the child will
not run again (terminated, deleted, its supervisor stopped or gave up), the
held calls fail with that error.

Calls in flight at the death are not held: they fail once with
ActorDiedError, as for any actor. Held frames keep the file descriptors that
came with them (tensors), forwarded on delivery, closed on failure. The queue
is bounded in frames and in fds; past either bound a call fails at once.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

import attrs

from .._wire import Kind
from ..errors import ActorClosedError

if TYPE_CHECKING:
    from ._host import SupervisorHost
    from ._slot import Slot

__all__ = ["MAX_HELD_FDS", "MAX_HELD_FRAMES", "HeldCalls"]

MAX_HELD_FRAMES = 1024
MAX_HELD_FDS = 256
_HELD = frozenset({Kind.CALL, Kind.STREAM, Kind.CAST})


@attrs.define(eq=False)
class _Frame:
    src: Any  # the sender, as the router handed it to offer(): opaque here
    kind: Kind
    call_id: int
    frame: bytes
    fds: list[int]


class HeldCalls:
    """Frames waiting for the next incarnation of one supervised actor id.

    Made at the child's first start and registered with the host
    (``hold_calls``); ``slot`` is the child slot that decides whether the
    child will run again (a restarted nested supervisor's slot takes over)."""

    def __init__(self, host: SupervisorHost, actor_id: int, slot: Slot) -> None:
        self.host = host
        self.actor_id = actor_id
        self.slot = slot
        self._frames: collections.deque[_Frame] = collections.deque()
        self._nfds = 0

    def __len__(self) -> int:
        return len(self._frames)

    def offer(self, src: Any, kind: Kind, call_id: int, frame: bytes, fds: list[int]) -> bool:
        """Called by the router for a frame to this id while no incarnation
        runs. True: held (or, a CANCEL, consumed); False: route it as usual."""
        if kind is Kind.CANCEL:
            for held in self._frames:
                if held.src is src and held.call_id == call_id and held.kind is not Kind.CAST:
                    self._frames.remove(held)
                    self._drop(held)
                    return True
            return False
        if kind not in _HELD or not self.slot.holds_calls():
            return False
        if len(self._frames) >= MAX_HELD_FRAMES or self._nfds + len(fds) > MAX_HELD_FDS:
            self.host.discard_fds(fds)
            if kind is not Kind.CAST:
                self.host.answer_with_error(
                    src.id,
                    call_id,
                    self.actor_id,
                    ActorClosedError(
                        f"supervised actor {self.slot.id!r} is restarting and too many calls "
                        f"({len(self._frames)}, {self._nfds} fds) already wait for it",
                        actor=self.slot.id,
                    ),
                )
            return True
        self._frames.append(_Frame(src, kind, call_id, frame, fds))
        self._nfds += len(fds)
        return True

    def deliver(self) -> None:
        """The next incarnation is READY: forward the held frames in order."""
        frames, self._frames, self._nfds = self._frames, collections.deque(), 0
        for held in frames:
            self.host.forward_held(
                held.src, held.kind, held.call_id, self.actor_id, held.frame, held.fds
            )

    def recheck(self) -> None:
        """The slot changed: deliver if an incarnation runs, fail the held
        calls if none will."""
        if not self._frames:
            return
        current = self.host.incarnation(self.actor_id)
        if current is not None and current.connected:
            self.deliver()
        elif not self.slot.holds_calls():
            self.fail(self.slot.final_error())

    def fail(self, error: BaseException) -> None:
        """Fail every held call with ``error`` (the child will not run again)."""
        while self._frames:
            held = self._frames.popleft()
            self._drop(held, error)
        self._nfds = 0

    def _drop(self, held: _Frame, error: BaseException | None = None) -> None:
        self._nfds -= len(held.fds)
        self.host.discard_fds(held.fds)
        if error is not None and held.kind is not Kind.CAST:
            self.host.answer_with_error(held.src.id, held.call_id, self.actor_id, error)
