"""The gates that apply attention: f in Attention = f(g(x), x).

Sizes: B batch, C channels, H × W the map, M branches.

Most of the modules in this package end the same way: g(x) produces weights a, and f
multiplies the input by them, y = a ⊙ x, with a broadcast over the axes it does not vary
along ((B, C, 1, 1) for channel attention, (B, 1, H, W) for spatial attention). Two
functions make the weights:

    sigmoid  a = σ(s) = 1 / (1 + e^(−s))         each weight on its own, in (0, 1)
             ∂L/∂s = ∂L/∂a ⊙ a ⊙ (1 − a)
    softmax  a_m = e^(s_m) / Σ_m' e^(s_m')        the weights along one axis compete, sum 1
             ∂L/∂s = a ⊙ (∂L/∂a − Σ_m a_m ∂L/∂a_m)

A sigmoid gate can keep every channel (all a near 1) or none; a softmax has to share one unit
of weight, which is what attention over keys does and what SK-Net's choice between
branches does. docs/14-attention-over-channels-and-space.md sets them side by side.

The product's backward sums over the axes along which a was broadcast:

    y = a ⊙ x:   ∂L/∂x = dy ⊙ a,   ∂L/∂a = Σ_broadcast dy ⊙ x
"""

from typing import NamedTuple

import numpy as np


def sigmoid_forward(s):
    """s (any shape) -> a (same), cache. Written as two branches so exp never overflows."""
    positive = s >= 0
    exp_neg_abs = np.exp(-np.abs(s))  # e^(−|s|) ≤ 1
    a = np.where(positive, 1.0 / (1.0 + exp_neg_abs), exp_neg_abs / (1.0 + exp_neg_abs)).astype(s.dtype, copy=False)
    return a, a  # the output is all the backward needs


def sigmoid_backward(da, cache):
    """da (any shape) -> ds (same)."""
    a = cache
    return da * a * (1.0 - a)


def softmax_forward(s, axis):
    """s (any shape) -> a (same, summing to 1 along ``axis``), cache."""
    shifted = s - s.max(axis=axis, keepdims=True)  # the softmax ignores a common shift; exp stays ≤ 1
    weights = np.exp(shifted)
    a = weights / weights.sum(axis=axis, keepdims=True)
    return a, (a, axis)


def softmax_backward(da, cache):
    """da (any shape) -> ds (same): one sum along the axis replaces the Jacobian."""
    a, axis = cache
    return a * (da - (da * a).sum(axis=axis, keepdims=True))


class GateCache(NamedTuple):
    x: np.ndarray
    weights: np.ndarray


def gate_forward(x, weights):
    """x (B, C, H, W), weights broadcastable to x -> y = weights ⊙ x (B, C, H, W), cache."""
    if weights.ndim != x.ndim or any(w not in (1, n) for w, n in zip(weights.shape, x.shape)):
        raise ValueError(f"gate weights of shape {weights.shape} do not broadcast to x of shape {x.shape}")
    return x * weights, GateCache(x, weights)


def gate_backward(dy, cache):
    """dy (B, C, H, W) -> dx (B, C, H, W), dweights (the weights' shape)."""
    x, weights = cache
    dx = dy * weights  # (B, C, H, W)
    broadcast = tuple(axis for axis, size in enumerate(weights.shape) if size == 1 and x.shape[axis] != 1)
    dweights = (dy * x).sum(axis=broadcast, keepdims=True) if broadcast else dy * x
    return dx, dweights
