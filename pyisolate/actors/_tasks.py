"""Where an actor's calls run: one task each, cancellable by (caller, call id).

Two implementations of the same small interface: native asyncio tasks (the
fast path) and anyio task groups with cancel scopes (trio). Sync methods run
on a bounded pool of worker threads.
"""

from __future__ import annotations

from typing import Any

import anyio

__all__ = ["AnyioTasks", "AsyncioTasks"]


class AsyncioTasks:
    """Call tasks on asyncio: plain ``create_task`` and ``task.cancel()``.

    anyio's task groups and cancel scopes cost more than the rest of a small
    call; on asyncio the native primitives give the same semantics.
    """

    def __init__(self, sync_threads: int) -> None:
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        self._loop = asyncio.get_running_loop()
        self._pool = ThreadPoolExecutor(sync_threads, thread_name_prefix="pyisolate-sync")
        self._tasks: dict[tuple[int, int], Any] = {}

    def start(self, key: tuple[int, int] | None, fn: Any, *args: Any) -> None:
        task = self._loop.create_task(fn(*args))
        if key is not None:
            self._tasks[key] = task
            task.add_done_callback(lambda _t: self._tasks.pop(key, None))

    def cancel(self, key: tuple[int, int]) -> None:
        task = self._tasks.get(key)
        if task is not None:
            task.cancel()

    def cancel_all(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()

    async def run_sync(self, fn: Any) -> Any:
        return await self._loop.run_in_executor(self._pool, fn)


class AnyioTasks:
    """Call tasks on any anyio backend (trio): a task group and a cancel scope each."""

    def __init__(self, tg: Any, sync_threads: int) -> None:
        self._tg = tg
        self._limiter = anyio.CapacityLimiter(sync_threads)
        self._scopes: dict[tuple[int, int], anyio.CancelScope] = {}

    def start(self, key: tuple[int, int] | None, fn: Any, *args: Any) -> None:
        self._tg.start_soon(self._scoped, key, fn, args)

    async def _scoped(self, key: tuple[int, int] | None, fn: Any, args: Any) -> None:
        with anyio.CancelScope() as scope:
            if key is not None:
                self._scopes[key] = scope
            try:
                await fn(*args)
            finally:
                if key is not None:
                    self._scopes.pop(key, None)

    def cancel(self, key: tuple[int, int]) -> None:
        scope = self._scopes.get(key)
        if scope is not None:
            scope.cancel()

    def cancel_all(self) -> None:
        for scope in list(self._scopes.values()):
            scope.cancel()

    async def run_sync(self, fn: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter)
