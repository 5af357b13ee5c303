"""Errors keep their meaning across the process boundary; start failures are prompt."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from actors import Counter, Failing, Hooks

import pyisolate
from pyisolate import ActorStartError, RemoteError, RemoteTraceback

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("kind", "exc_type", "text"),
    [
        ("key", KeyError, "missing"),
        ("value", ValueError, "bad value"),
        ("zero", ZeroDivisionError, "division"),
    ],
)
async def test_builtin_errors_keep_their_type(
    rt: pyisolate.Runtime, kind: str, exc_type: type[BaseException], text: str
) -> None:
    ref = await rt.spawn(Counter)
    with pytest.raises(exc_type, match=text) as info:
        await ref.fail(kind)
    assert type(info.value) is exc_type
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    # The remote frame: the actor's method, in the actor's source file.
    assert "in fail" in cause.text
    assert "actors.py" in cause.text
    assert exc_type.__name__ in cause.text
    assert await ref.inc() == 1  # the actor survives its own exceptions
    await ref.stop()


async def test_async_method_error(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Counter)
    with pytest.raises(ValueError, match="async failure") as info:
        await ref.afail()
    assert "in afail" in str(info.value.__cause__)
    await ref.stop()


async def test_custom_error_is_remote_error(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Counter)
    with pytest.raises(RemoteError) as info:
        await ref.fail("custom")
    err = info.value
    assert err.type_name == "actors.CustomError"
    assert err.remote_message == "custom failure"
    assert "custom failure" in str(err)
    assert "in fail" in err.remote_traceback
    assert isinstance(err.__cause__, RemoteTraceback)
    assert isinstance(err, pyisolate.ActorError)
    await ref.stop()


async def test_unencodable_argument_fails_before_sending(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Counter)

    class Opaque:
        pass

    with pytest.raises(TypeError, match="Opaque"):
        await ref.echo(Opaque())
    with pytest.raises(TypeError, match="Opaque"):
        await ref.echo([1, {"deep": Opaque()}])
    with pytest.raises(TypeError, match="Opaque"):
        await ref.cast("bump", Opaque())
    with pytest.raises(TypeError, match="Opaque"):
        ref.stream("count", Opaque())
    assert await ref.call_count() == 0  # nothing reached the actor
    assert rt.calls.pending_count() == 0
    await ref.stop()


async def test_unencodable_constructor_argument(rt: pyisolate.Runtime) -> None:
    with pytest.raises(TypeError, match="object"):
        await rt.spawn(Counter, object())
    assert rt.actors() == []  # and no process was started (see the leak check)


async def test_unencodable_return_value(rt: pyisolate.Runtime) -> None:
    ref = await rt.spawn(Counter)
    with pytest.raises(TypeError, match="object"):
        await ref.bad_return()
    assert await ref.inc() == 1
    await ref.stop()


async def _prompt_start_error(
    rt: pyisolate.Runtime, target: object, *args: object, **kwargs: object
) -> ActorStartError:
    start = time.monotonic()
    with pytest.raises(ActorStartError) as info:
        await rt.spawn(target, *args, **kwargs)  # type: ignore[arg-type]
    assert time.monotonic() - start < 5.0
    return info.value


async def test_start_error_import(rt: pyisolate.Runtime) -> None:
    err = await _prompt_start_error(rt, "nosuchmodule:X")
    assert "nosuchmodule" in str(err)
    err = await _prompt_start_error(rt, "actors:NoSuchClass")
    assert "NoSuchClass" in str(err)
    err = await _prompt_start_error(rt, "actors:module_level_helper")
    assert "not a class" in str(err)


async def test_start_error_constructor(rt: pyisolate.Runtime) -> None:
    err = await _prompt_start_error(rt, Failing, "no thanks")
    assert "no thanks" in str(err)
    assert "RuntimeError" in str(err)
    assert "__init__" in str(err)  # the child's traceback is in the message
    assert err.actor is not None


async def test_start_error_bad_arguments(rt: pyisolate.Runtime) -> None:
    err = await _prompt_start_error(rt, Counter, 1, 2, 3)
    assert "TypeError" in str(err)
    await _prompt_start_error(rt, Counter, nosuchkeyword=1)


async def test_start_error_on_start(rt: pyisolate.Runtime, tmp_path: Path) -> None:
    err = await _prompt_start_error(rt, Hooks, str(tmp_path / "x"), "start_fails")
    assert "on_start refused" in str(err)
    assert not (tmp_path / "x").exists()  # on_stop does not run after a failed start


async def test_start_errors_leave_the_runtime_usable(rt: pyisolate.Runtime) -> None:
    await _prompt_start_error(rt, "nosuchmodule:X")
    ref = await rt.spawn(Counter)
    assert await ref.inc() == 1
    await ref.stop()


async def test_local_class_is_rejected(rt: pyisolate.Runtime) -> None:
    class Local:
        pass

    with pytest.raises(ValueError, match="inside a function"):
        await rt.spawn(Local)
    with pytest.raises(ValueError):
        await rt.spawn("no-colon-here")
    with pytest.raises(TypeError):
        await rt.spawn(42)  # type: ignore[arg-type]
    assert rt.actors() == []


async def test_start_timeout(rt: pyisolate.Runtime) -> None:
    # An actor whose start outlasts start_timeout is killed and reported.
    from pyisolate import SpawnOptions

    start = time.monotonic()
    with pytest.raises(ActorStartError, match="did not start"):
        await rt.spawn(Hooks, "/nonexistent", "ok", options=SpawnOptions(start_timeout=0.01))
    assert time.monotonic() - start < 5.0
