"""Actors for the channel's security battery: attackers and their victims.

An attacker uses only what any actor has: its own DEALER socket to the host
(``current_server().sock``), the envelope format, and guesses.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import anyio.lowlevel

import pyisolate
from pyisolate import ActorRef
from pyisolate._wire import HOST, Codec, Kind, encode_batch, encode_header


def _server() -> Any:
    from pyisolate.actors._child import current_server

    return current_server()


def _send(frame: bytes) -> None:
    _server().sock.send(frame)


class Victim(pyisolate.Actor):
    async def secret(self) -> str:
        return "secret"

    async def slow(self, delay: float, value: str) -> str:
        await anyio.sleep(delay)
        return value

    async def guarded(self, delay: float, value: str) -> str:
        """Sleep, counting starts and cancellations (what reached this call)."""
        self.started = getattr(self, "started", 0) + 1
        try:
            await anyio.sleep(delay)
        except BaseException:
            self.cancelled = getattr(self, "cancelled", 0) + 1
            raise
        return value

    def counts(self) -> list[int]:
        return [getattr(self, "started", 0), getattr(self, "cancelled", 0)]

    def whoami(self) -> int:
        return int(_server().actor_id)


class Relay(pyisolate.Actor):
    """An honest actor that uses the references it is given."""

    def __init__(self, given: ActorRef | None = None) -> None:
        self.given = given

    async def use(self, ref: ActorRef, method: str = "secret") -> Any:
        return await ref.call(method)

    async def use_given(self, method: str = "secret") -> Any:
        assert self.given is not None
        return await self.given.call(method)

    async def slow_via(self, ref: ActorRef, delay: float, value: str) -> Any:
        return await ref.slow(delay, value)

    async def guarded_via(self, ref: ActorRef, delay: float, value: str) -> Any:
        return await ref.guarded(delay, value)

    async def pass_on(self, other: ActorRef, ref: ActorRef) -> Any:
        """Give ``other`` the reference ``ref`` (delegation)."""
        return await other.use(ref)


class Attacker(pyisolate.Actor):
    def __init__(self, given: ActorRef | None = None) -> None:
        self.given = given

    async def ping(self) -> str:
        return "pong"

    async def use_given(self, method: str = "secret") -> Any:
        assert self.given is not None
        return await self.given.call(method)

    async def use(self, ref: ActorRef, method: str = "secret") -> Any:
        return await ref.call(method)

    async def forge_replies(self, peer: int, first: int, last: int, value: str) -> str:
        """REPLY envelopes for every call id in [first, last) addressed to
        ``peer`` (0: the host), as if the callee had answered them."""
        body = Codec().encode(value)
        for call_id in range(first, last):
            _send(encode_header(Kind.REPLY, call_id, peer) + body)
        await anyio.sleep(30)
        return "survived"

    async def forge_cancels(self, peer: int, first: int, last: int) -> str:
        """CANCEL and CREDIT envelopes to ``peer`` for every call id in
        [first, last), as if this actor had made those calls."""
        for call_id in range(first, last):
            _send(encode_header(Kind.CANCEL, call_id, peer))
            _send(encode_header(Kind.CREDIT, call_id, peer) + Codec().encode(1000))
        await anyio.sleep(0.2)
        return "sent"

    async def call_guessed(self, actor_id: int, method: str = "secret") -> Any:
        """Make up a reference from a guessed id and call it."""
        return await ActorRef(_server(), actor_id, "guessed").call(method, timeout=10)

    async def cast_guessed(self, actor_id: int, method: str = "secret") -> None:
        await ActorRef(_server(), actor_id, "guessed").cast(method)

    async def forge_introduce(self, actor_id: int) -> str:
        """Claim a reference with a made-up capability token."""
        codec = Codec()
        _send(encode_header(Kind.INTRODUCE) + codec.encode([actor_id, b"\0" * 16]))
        await anyio.sleep(30)
        return "survived"

    async def flood(self, seconds: float, item_bytes: int, max_messages: int) -> int:
        """Stream ITEM envelopes at the host as fast as the socket takes them,
        256 to a BATCH frame; returns how many envelopes were sent."""
        body = Codec().encode(b"x" * item_bytes)
        envelope = encode_header(Kind.ITEM, 999_999, HOST) + body
        batch = encode_batch([envelope] * 256)
        sent = 0
        deadline = time.monotonic() + seconds
        for i in range(max_messages):
            if time.monotonic() > deadline:
                break
            _send(batch)
            sent += 256
            if i % 64 == 0:
                await anyio.lowlevel.checkpoint()
        return sent


class Unsendable:
    """A registered type whose encoder fails with something other than TypeError."""


def _broken_encoder(value: Unsendable) -> Any:
    raise RuntimeError("the encoder broke")


pyisolate.register_type(Unsendable, 77, _broken_encoder, lambda v: Unsendable())


class Awkward(pyisolate.Actor):
    """Results that cannot be sent; each call must still be answered."""

    def huge_int(self) -> int:
        return 2**64

    def broken(self) -> Unsendable:
        return Unsendable()

    def broken_stream(self) -> Any:
        yield 1
        yield Unsendable()
        yield 3

    def length(self, value: Any) -> int:
        return len(value)

    async def sleep(self, seconds: float) -> str:
        await anyio.sleep(seconds)
        return "late"


class ExitsInInit(pyisolate.Actor):
    def __init__(self, code: int) -> None:
        raise SystemExit(code)
