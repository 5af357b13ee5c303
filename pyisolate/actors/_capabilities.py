"""Who may address whom: the host's table of the references each actor holds.

Actors are third-party code and may be hostile to each other. An actor may
open a call, stream or cast only to an actor whose reference it was given, as
in the object-capability model (E; Erlang's "you can send only to a pid you
were given"). Actor ids are small integers anyone can guess, so an id grants
nothing: each actor id has a secret capability token, and a reference on the
wire carries it.

How an actor comes to hold a reference:

* the host sends it one (constructor arguments, call arguments): the host
  encodes the reference and records the grant at once;
* another actor sends it one: the host relays such messages without reading
  them, so the receiving actor presents the token once, in an INTRODUCE
  envelope, before it first addresses that actor. A wrong token is a forgery
  and cuts the sender off.

Answers need no reference: a callee may answer exactly the calls it was sent
(the router tracks them), and transport control messages (releases of
tensors) may go to any actor that the sender holds a reference to or has
heard from.

Grants are kept per actor id, not per process, so they survive a supervised
restart (the new incarnation is the same actor, given the same arguments).
"""

from __future__ import annotations

import hmac
import secrets

__all__ = ["Capabilities"]

TOKEN_BYTES = 16


class Capabilities:
    """The host's capability table; see the module docstring."""

    def __init__(self) -> None:
        self._tokens: dict[int, bytes] = {}
        self._held: dict[int, set[int]] = {}
        self._heard: dict[int, set[int]] = {}

    def new_actor(self, actor_id: int) -> None:
        """Make ``actor_id``'s token (kept when a restart reuses the id)."""
        if actor_id not in self._tokens:
            self._tokens[actor_id] = secrets.token_bytes(TOKEN_BYTES)

    def token(self, actor_id: int) -> bytes:
        return self._tokens.get(actor_id, b"")

    def verify(self, actor_id: int, token: bytes) -> bool:
        """True if ``token`` is ``actor_id``'s (constant time)."""
        expected = self._tokens.get(actor_id)
        return expected is not None and hmac.compare_digest(expected, token)

    def grant(self, holder: int, target: int) -> None:
        """``holder`` was given a reference to ``target``."""
        if holder != target:
            self._held.setdefault(holder, set()).add(target)

    def introduce(self, holder: int, target: int, token: bytes) -> bool:
        """``holder`` presents ``target``'s token; grant if it is the right one."""
        if not self.verify(target, token):
            return False
        self.grant(holder, target)
        return True

    def may_open(self, src: int, dst: int) -> bool:
        """May ``src`` open a call, stream or cast to ``dst``?"""
        held = self._held.get(src)
        return held is not None and dst in held

    def heard_from(self, receiver: int, sender: int) -> None:
        """``receiver`` got a message relayed from ``sender``."""
        heard = self._heard.get(receiver)
        if heard is None:
            self._heard[receiver] = {sender}
        elif sender not in heard:
            heard.add(sender)

    def may_control(self, src: int, dst: int) -> bool:
        """May ``src`` send transport control (tensor releases) to ``dst``?"""
        return self.may_open(src, dst) or dst in self._heard.get(src, ())
