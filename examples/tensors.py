"""Tensors between actors: shared memory, no pickling, one copy at most.

Tensors anywhere in arguments, results and stream items travel out of band
(memfd shared memory passed as file descriptors); the envelope carries only a
small handle. A tensor made with ``pyisolate.transport.empty`` is already in
shared memory and is sent without any copy; a received tensor can be passed
on to another actor without a copy too. The receiver's writes never reach the
sender's memory.

    python examples/tensors.py
"""

from __future__ import annotations

import anyio
import torch

import pyisolate
from pyisolate import transport as T


class Model(pyisolate.Actor):
    async def brightness(self, image: torch.Tensor) -> float:
        return float(image.mean())

    async def invert(self, image: torch.Tensor) -> torch.Tensor:
        image.mul_(-1).add_(1)  # in place on the received copy-on-write view
        return image

    async def relay(self, other: pyisolate.ActorRef, image: torch.Tensor) -> float:
        # A tensor received is already shared: passing it on costs no copy.
        return float(await other.brightness(image))


async def main() -> None:
    async with pyisolate.Runtime() as rt:
        model = await rt.spawn(Model, name="model")
        helper = await rt.spawn(Model, name="helper")

        image = T.empty((3, 256, 256), dtype=torch.float32)  # shared memory: no copy
        image.fill_(0.25)
        print(f"brightness: {await model.brightness(image):.2f}")

        inverted = await model.invert(image)
        print(
            f"inverted: {float(inverted.mean()):.2f}, original untouched: {float(image.mean()):.2f}"
        )

        mask = torch.rand(256, 256) > 2  # an ordinary tensor: one copy
        print(f"mask through the actor: {await model.brightness(mask.float()):.2f}")
        print(f"relayed to another actor: {await model.relay(helper, image):.2f}")


if __name__ == "__main__":
    anyio.run(main)
