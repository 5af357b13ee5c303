"""Reading other actors' tensors through the shm pool (issue 8, item 2).

The attack, played from inside a real actor: it receives a pooled tensor,
keeps its copy-on-write mapping, and tells the host it released the segment.
Before the fix the host's next tensor of that size, for *any* actor, was
written into that segment, and the liar read it. Now a segment is recycled
only for the actor it was lent to.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from conftest import eventually

from .pool_actors import PoolPeer

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.anyio

N = 100_000  # float32: 400 KB, far over the 64 KiB inline threshold: pooled shm


def _pool(rt: Any) -> Any:
    session = rt.transport.get()
    if not session.shm_available():
        pytest.skip("no usable /dev/shm here: tensors move by file, with no pool")
    return session.transports["shm"].pool


async def test_a_lying_release_never_shows_another_actors_tensor(rt: Any) -> None:
    pool = _pool(rt)
    liar = await rt.spawn(PoolPeer)
    victim = await rt.spawn(PoolPeer)
    with anyio.fail_after(60):
        ids = await liar.keep_and_lie(torch.full((N,), 1.0))
        assert ids, "the tensor did not arrive in a pooled segment: the attack is not armed"
        assert pool.idle_count() == 1  # the host believed it...
        assert await victim.total(torch.full((N,), 2.0)) == 2.0 * N
        assert await liar.kept_sums() == [1.0 * N]  # ...but the victim's tensor went elsewhere
        # The lie was acted on, for the liar only: its own next tensor lands
        # in the segment it still maps. That is all a lie can buy.
        assert set(await liar.keep(torch.full((N,), 3.0))) == set(ids)
        assert await liar.kept_sums() == [3.0 * N, 3.0 * N]
        assert await victim.total(torch.full((N,), 5.0)) == 5.0 * N
        assert await liar.kept_sums() == [3.0 * N, 3.0 * N]


async def test_an_honest_release_lets_the_pool_reuse_the_segment(rt: Any) -> None:
    pool = _pool(rt)
    peer = await rt.spawn(PoolPeer)
    with anyio.fail_after(60):
        ids = await peer.keep(torch.full((N,), 1.0))
        assert ids
        created = pool.created
        await peer.drop_honestly()
        await eventually(lambda: pool.idle_count() == 1)
        assert await peer.keep(torch.full((N,), 4.0)) == ids  # the same segment again
        assert pool.created == created  # no new memfd
        assert await peer.kept_sums() == [4.0 * N]
