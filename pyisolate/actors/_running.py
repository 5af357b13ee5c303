"""Running one call or stream inside the actor, and answering it.

A mixin of the actor's server (``_server``): a call looks its method up in
the actor's public method table, runs it (an ``async def`` on the loop, a
``def`` on a worker thread), and answers with the result or the error; a
stream pulls its generator as far as the consumer's credit allows. Every
call is answered, and a generator is closed however its stream ends.
"""

from __future__ import annotations

import traceback
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from .._wire import Kind
from ._actor import ASYNC, ASYNC_GEN, GEN, SYNC

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._calls import CallTable
    from ._tasks import AnyioTasks, AsyncioTasks

__all__ = ["CallRunner"]

_DONE = object()


class CallRunner:
    """Runs calls and streams (the server owns the state declared here)."""

    actor: Any
    name: str
    methods: dict[str, str]
    calls: CallTable
    tasks: AsyncioTasks | AnyioTasks | None
    _credits: dict[tuple[int, int], list[Any]]
    _send: Callable[[Kind, int, int, Any], None]
    _send_error: Callable[[int, int, BaseException], None]
    _send_result: Callable[[Kind, int, int, Any], bool]

    def _lookup(self, method: Any) -> tuple[Any, str]:
        if not isinstance(method, str) or method not in self.methods:
            raise AttributeError(f"actor {self.name!r} has no public method {method!r}")
        return getattr(self.actor, method), self.methods[method]

    async def _run_call(self, peer: int, call_id: int | None, body: Any) -> None:
        try:
            method, args, kwargs = body
            fn, kind = self._lookup(method)
            if kind == ASYNC:
                result = await fn(*args, **kwargs)
            elif kind == SYNC:
                assert self.tasks is not None
                result = await self.tasks.run_sync(partial(fn, *args, **kwargs))
            else:
                raise TypeError(f"{method}() is a generator: use stream() to iterate it")
        except Exception as exc:
            if call_id is None:
                traceback.print_exc()
            else:
                self._send_error(peer, call_id, exc)
        else:
            if call_id is not None:
                self._send_result(Kind.REPLY, peer, call_id, result)

    async def _run_stream(self, peer: int, call_id: int, body: Any) -> None:
        key = (peer, call_id)
        tasks = self.tasks
        assert tasks is not None
        state: list[Any] = [0, self.calls.new_event()]
        self._credits[key] = state
        gen: Any = None
        try:
            method, args, kwargs, credit = body
            state[0] = int(credit)
            fn, kind = self._lookup(method)
            if kind not in (ASYNC_GEN, GEN):
                raise TypeError(f"{method}() is not a generator: use call()")
            if kind == ASYNC_GEN:
                gen = fn(*args, **kwargs)
                next_item = gen.__anext__
            else:
                gen = await tasks.run_sync(partial(fn, *args, **kwargs))
                # StopIteration cannot cross a thread future: use a sentinel.
                sync_next = partial(next, gen, _DONE)

                async def next_item() -> Any:
                    item = await tasks.run_sync(sync_next)
                    if item is _DONE:
                        raise StopAsyncIteration
                    return item

            while True:
                while state[0] <= 0:
                    state[1] = self.calls.new_event()
                    await state[1].wait()
                try:
                    item = await next_item()
                except StopAsyncIteration:
                    break
                state[0] -= 1
                if not self._send_result(Kind.ITEM, peer, call_id, item):
                    return  # the stream ended with the error that says why
            self._send(Kind.END, call_id, peer, None)
        except Exception as exc:
            self._send_error(peer, call_id, exc)
        finally:
            self._credits.pop(key, None)
            if gen is not None:
                await _close_generator(gen, tasks)


async def _close_generator(gen: Any, tasks: AsyncioTasks | AnyioTasks) -> None:
    with anyio.CancelScope(shield=True):
        try:
            if hasattr(gen, "aclose"):
                await gen.aclose()
            else:
                await tasks.run_sync(gen.close)
        except Exception:
            traceback.print_exc()
