"""LazySession: a process's transport session, made when the first tensor moves.

The runtime core (the host's Runtime, each actor's server) holds one and
passes it as ``EncodeContext.session`` / ``DecodeContext.session``. Until a
tensor, array or large buffer crosses, nothing of the transports is imported:
an actor that never moves one starts without paying for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import DEFAULT_INLINE_THRESHOLD

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._session import TransportSession

__all__ = ["LazySession"]


class LazySession:
    """Stands for the :class:`TransportSession` that ``factory`` makes on first
    use. The lifetime calls (:meth:`flush`, :meth:`peer_died`, :meth:`close`)
    do nothing before it started: there is nothing to release yet."""

    def __init__(self, factory: Callable[[], TransportSession]) -> None:
        self._factory = factory
        self._real: TransportSession | None = None

    @property
    def started(self) -> bool:
        return self._real is not None

    @property
    def inline_threshold(self) -> int:
        """Asked by the codec of every large message: answered without
        starting the session (the factory makes one with the default)."""
        if self._real is None:
            return DEFAULT_INLINE_THRESHOLD
        return self._real.inline_threshold

    def get(self) -> TransportSession:
        """The session, made now if it was not yet."""
        if self._real is None:
            self._real = self._factory()
        return self._real

    def handle_control(self, peer: int, body: Any) -> None:
        self.get().handle_control(peer, body)

    def peer_connected(self, peer: int) -> None:
        if self._real is not None:
            self._real.peer_connected(peer)

    def flush(self) -> None:
        if self._real is not None:
            self._real.flush()

    def peer_died(self, peer: int) -> None:
        if self._real is not None:
            self._real.peer_died(peer)

    def close(self) -> None:
        if self._real is not None:
            self._real.close()
