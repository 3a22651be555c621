"""Channel-blocked index maps: `blocked_linear` against numpy's own blocked copy of an array, and the lane rule
that lets floordiv/mod take a channel (block of channels) * block + lane apart without a division."""

import numpy as np
import pytest

from dnnfusion.kir.emit import Emitter
from dnnfusion.kir.expr import Bin, Lit, Var, blocked_linear, floordiv, mod


def evaluate(e, env):
    """The value of an index expression with variables bound by `env` (C semantics for non-negative indices)."""
    return eval(Emitter().c(e).replace("/", "//"), {}, dict(env))


@pytest.mark.parametrize("shape,block", [((2, 32, 3, 5), 16), ((1, 24, 4, 4), 8), ((1, 16, 2, 3, 2), 8)])
def test_blocked_offsets_are_numpys_blocked_copy(shape, block):
    x = np.arange(np.prod(shape)).reshape(shape)
    n, c, *spatial = shape
    blocked = x.reshape(n, c // block, block, *spatial)
    blocked = np.moveaxis(blocked, 2, -1).reshape(-1)          # [N][C / block][*spatial][block]
    names = [f"i{d}" for d in range(len(shape))]
    offset = blocked_linear(tuple(Var(v) for v in names), shape, block)
    rng = np.random.default_rng(0)
    for _ in range(50):
        index = tuple(int(rng.integers(d)) for d in shape)
        assert blocked[evaluate(offset, zip(names, index))] == x[index]


def test_a_bounded_lane_splits_out_of_a_blocked_channel():
    q, lane = Var("q"), Var("l", below=16)
    channel = q * 16 + lane
    assert floordiv(channel, 16) == q and mod(channel, 16) == lane
    assert floordiv(lane, 16) == Lit(0) and mod(lane, 16) == lane
    assert floordiv(Lit(32) + lane, 16) == Lit(2) and mod(Lit(32) + lane, 16) == lane
    narrow = Var("l8", below=8)                     # a lane of a smaller block splits out of a larger one too
    assert floordiv(q * 16 + narrow, 16) == q


def test_unbounded_or_mismatched_indices_keep_their_division():
    q, free, wide = Var("q"), Var("f"), Var("w", below=32)
    for e in (floordiv(q * 16 + free, 16), floordiv(q * 16 + wide, 16), floordiv(q * 8 + Var("l", below=8), 16),
              mod(q * 16 + free, 16)):
        assert isinstance(e, Bin) and e.op in ("floordiv", "mod")
