"""An actor ending itself normally.

OTP distinguishes a process that stops because its work is done from one that
crashed: a TRANSIENT child is restarted only after the second. An actor calls
:func:`exit_actor` to take the first way out: its ``on_stop`` runs, its
pending calls are cancelled, and the process exits with status 0, which the
host reads as a normal exit.
"""

from __future__ import annotations

import threading

__all__ = ["exit_actor"]


def exit_actor() -> None:
    """Stop the calling actor normally, as if its host had stopped it.

    Call it from any method (async or plain, on any of the actor's threads);
    it returns at once and the actor shuts down shortly after, so the calling
    method's own reply may or may not be delivered. Outside an actor process
    it raises RuntimeError.
    """
    from ._child import current_server

    server = current_server()

    def begin() -> None:
        if not server._stopping:
            server._stopping = True
            assert server.tasks is not None
            server.tasks.start(None, server._shutdown)

    if threading.get_ident() == server.calls._loop_thread:
        begin()
        return
    tasks = server.tasks
    loop = getattr(tasks, "_loop", None)
    if loop is not None:  # asyncio: the loop's own thread-safe hand-off
        loop.call_soon_threadsafe(begin)
    else:  # trio: a worker thread started by anyio.to_thread
        import anyio.from_thread

        anyio.from_thread.run_sync(begin)
