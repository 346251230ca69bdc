"""Inverted dropout, driven by a counter-based random stream.

In training each unit is kept with probability 1 − p and scaled by 1/(1 − p):

    y = x ⊙ m / (1 − p),   m ~ Bernoulli(1 − p)

so the expected activation is unchanged and evaluation is the identity, with no rescaling.
The backward applies the same mask: ∂L/∂x = dy ⊙ m / (1 − p).

Where the mask comes from. Each call of dropout takes one 64-bit key from its stream, and
the unit at flat index i of the tensor is kept when

    bits(key, i) = h(h(i ⊕ key_lo) ⊕ key_hi) >> 8   ≥   round(p · 2^24)

with h the 32-bit integer hash "lowbias32" (xor-shift, multiply, twice) and key_lo,
key_hi the two halves of the key: 24 uniform bits per unit, compared with p in 24-bit
fixed point. Nothing depends on the order in which units are drawn, so the compiled
kernel (csrc/kernels.h: mt_dropout_bits, the same lines in C) shares a tensor out over
threads and draws exactly these masks, and so does a GPU. A stream is two integers, the
seed and the number of calls so far, which is all that a checkpoint must save to resume
exactly. ``rng`` may also be a ``numpy.random.Generator``, which gives one key per call.
"""

from typing import NamedTuple

import numpy as np

from ..arrays import array_module

MASK_64 = (1 << 64) - 1


def splitmix64(value):
    """SplitMix64's output function on a 64-bit integer: a good 64-bit hash, in Python ints."""
    value = (value + 0x9E3779B97F4A7C15) & MASK_64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & MASK_64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & MASK_64
    return value ^ (value >> 31)


class DropoutStream:
    """The keys of successive dropout calls: key_n = splitmix64(splitmix64(seed) + n)."""

    def __init__(self, seed, calls=0):
        self.seed, self.calls = int(seed) & MASK_64, int(calls)

    def next_key(self):
        key = splitmix64((splitmix64(self.seed) + self.calls) & MASK_64)
        self.calls += 1
        return key

    def state(self):
        return {"seed": self.seed, "calls": self.calls}

    @classmethod
    def from_state(cls, state):
        return cls(state["seed"], state["calls"])


def next_key(rng):
    """The key of one dropout call, from a DropoutStream or a numpy Generator."""
    if hasattr(rng, "next_key"):
        return rng.next_key()
    return int(rng.integers(0, 2**63)) * 2 + int(rng.integers(0, 2))  # 64 bits


def dropout_threshold(p):
    """p in 24-bit fixed point: a unit is dropped when its 24 bits are below this."""
    return int(round(p * (1 << 24)))


def _lowbias32(x):
    """x (uint32 array) -> its lowbias32 hash (uint32 arithmetic wraps, as in C)."""
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x21F0AAAD)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x735A2D97)
    return x ^ (x >> np.uint32(15))


def dropout_bits(key, n, xp=np):
    """The 24 bits of units 0 … n − 1 for one call's key: (n,) uint32 in [0, 2^24)."""
    if n >= 1 << 32:
        raise ValueError(f"the dropout generator numbers elements with 32 bits; {n} is too many")
    return dropout_bits_at(key, xp.arange(n, dtype=xp.uint32))  # (n,)


def dropout_bits_at(key, index):
    """The 24 bits of the units numbered ``index`` (uint32, any shape) for one call's key.

    A unit's bits depend only on its number, so a part of a tensor (one rank's block of
    positions, parallel/sequence_parallel.py) draws the whole tensor's mask for its units."""
    key_lo, key_hi = np.uint32(key & 0xFFFFFFFF), np.uint32(key >> 32)
    return _lowbias32(_lowbias32(index ^ key_lo) ^ key_hi) >> np.uint32(8)


class DropoutCache(NamedTuple):
    keep: object  # bool, the input's shape: the units that were kept
    scale: float  # 1 / (1 − p)


def dropout_forward(x, p, rng, index=None):
    """x (any shape) -> y (same shape). ``rng=None`` or ``p == 0`` means evaluation: y = x.

    ``index`` (uint32, x's shape): the numbers of x's units within a larger tensor whose
    mask x takes a part of; None: 0 … n − 1, x is the whole tensor."""
    if rng is None or p == 0.0:
        return x, None
    xp = array_module(x)
    key = next_key(rng)
    bits = dropout_bits(key, x.size, xp).reshape(x.shape) if index is None else dropout_bits_at(key, index)
    keep = bits >= dropout_threshold(p)  # (same as x)
    scale = 1.0 / (1.0 - p)
    y = xp.where(keep, x * x.dtype.type(scale), x.dtype.type(0))  # (same as x)
    return y, DropoutCache(keep, scale)


def dropout_backward(dy, cache):
    """dy (any shape) -> dx: the gradient flows only through the kept units."""
    if cache is None:
        return dy
    xp = array_module(dy)
    return xp.where(cache.keep, dy * dy.dtype.type(cache.scale), dy.dtype.type(0))
