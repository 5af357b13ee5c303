"""An actor's exit, as the host handles it: every call answered, every
reference holder told.

A mixin of the Runtime. When an actor's process ends (seen at once through its
pidfd), its record becomes stopped (exit status 0 from a running actor, or a
stop that was asked for) or dead; every call waiting on it fails with the
death (ActorDiedError naming the exit code or signal); calls other actors made
on it are answered with that error, calls it made on others are cancelled;
and everyone that exchanged tensors with it releases what it held for it. A
start that fails waits a moment for the actor's last words (its START_FAILED
traceback, the end of its output): they say more than an exit status.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio

from .._wire import Kind
from ..errors import ActorDiedError, ActorError, ActorStartError
from ._process import describe_exit

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..transport.lowlevel import LazySession
    from ._calls import CallTable
    from ._record import _Record

__all__ = ["ExitHandling"]

log = logging.getLogger("pyisolate.runtime")

_LAST_WORDS_GRACE = 0.5


class ExitHandling:
    """Exit handling of the Runtime (which owns the state declared here)."""

    _records: dict[int, _Record]
    _by_routing: dict[bytes, _Record]
    calls: CallTable
    transport: LazySession
    _close_channel: Callable[[_Record], None]
    _send_error_to: Callable[[int, int, int, BaseException], None]
    _raw_send: Callable[..., None]
    _send_to: Callable[[Kind, int, int, Any], None]

    async def _watch(self, record: _Record) -> None:
        assert record.process is not None
        await record.process.watch()
        if record.state == "starting":  # its start error quotes its last words
            await record.process.output_drained(timeout=1.0)
        if record.state == "starting" and not record.ready.is_set():
            # Its last words (START_FAILED with the traceback) may still be on
            # their way through ZeroMQ: they say more than the exit status.
            with anyio.move_on_after(_LAST_WORDS_GRACE):
                await record.ready.wait()
        self._on_exit(record, record.process.returncode)

    def _on_exit(self, record: _Record, code: int | None) -> None:
        was = record.state
        if was == "starting" and record.start_error is None:
            tail = "\n".join(record.process.stderr_tail) if record.process else ""
            record.start_error = ActorStartError(
                f"actor {record.name!r} {describe_exit(code)} before it was ready"
                + (f"; its stderr ended with:\n{tail}" if tail else ""),
                actor=record.name,
            )
        if was in ("stopping", "stopped") or (was == "running" and code == 0):
            # Exit status 0 from a running actor is the actor ending itself
            # (exit_actor()): a normal stop, not a death.
            record.state = "stopped"
        else:
            record.state = "dead"
            if record.death is None:
                record.death = ActorDiedError(
                    f"actor {record.name!r} died ({describe_exit(code)})",
                    actor=record.name,
                    exitcode=code,
                )
            if was == "running":
                log.info("%s", record.death)
        record.ready.set()
        if record.routing is not None:
            self._by_routing.pop(record.routing, None)
            record.routing = None
        self._close_channel(record)
        self.calls.fail_peer(record.id, record.closed_error)
        # Calls that other actors made on this one, and calls this one made on
        # others: answer the first with the death, cancel the second.
        for caller, call_id in record.inbound:
            self._send_error_to(caller, call_id, record.id, record.closed_error())
        record.inbound.clear()
        for other in self._records.values():
            for caller, call_id in [k for k in other.inbound if k[0] == record.id]:
                other.inbound.discard((caller, call_id))
                try:
                    self._raw_send(other, Kind.CANCEL, call_id, record.id)
                except ActorError:
                    pass  # that one is gone too: nothing left to cancel
        if self.transport.started:
            self.transport.peer_died(record.id)
        # Actors that exchanged tensors with it release what they hold for it.
        for other in self._records.values():
            if other.state == "running" and other.routing is not None:
                try:
                    self._send_to(
                        Kind.TRANSPORT, 0, other.id, {"op": "peer_died", "peer": record.id}
                    )
                except ActorError:
                    pass
