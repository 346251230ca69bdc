"""Attention over the positions of a feature map, through the project's attention core.

Sizes: B batch, N query positions, S key positions, Dk the query/key width, Dv the value width.

Non-local, DA-Net's position module, ANLNet and GC-Net all compute

    out_i = Σ_j softmax_j(q_i · k_j / √Dk) · v_j                 q (B, N, Dk), k (B, S, Dk), v (B, S, Dv)

which is the Transformer's scaled dot-product attention with one head, so they call the core
of minitransformer/layers/attention.py through a backend (numpy, cython or cupy; see
minitransformer/backends/). The core wants the values as wide as the queries. Where they
differ, the narrower side is padded with zero columns, which changes no dot product:

    Dv > Dk:  q and k padded to Dv; the core then divides by √Dv, so q is multiplied by √(Dv/Dk)
              first and the scores are exactly q·k/√Dk
    Dv < Dk:  v padded to Dk; the extra output columns are 0 and dropped

The published modules use the unscaled dot product exp(θᵢᵀφⱼ) (the "embedded Gaussian"); the
scale 1/√Dk is absorbed by the learned θ, so the family of functions is the same.

Backward: the core's backward, then the padding's (keep the real columns, undo the factor).

The vision layers are NumPy code. With a backend whose arrays live elsewhere (CuPy's, on a
GPU) the padded q, k, v are copied to the device for the core and its results copied back;
the copies are O(B·(N + S)·D), small beside the core's O(B·N·S·D).
"""

import math
from typing import NamedTuple

import numpy as np

from ..arrays import to_numpy


class PixelAttentionCache(NamedTuple):
    q: np.ndarray  # (B, 1, N, D) as the core saw them, D = max(Dk, Dv)
    k: np.ndarray  # (B, 1, S, D)
    v: np.ndarray  # (B, 1, S, D)
    probs: np.ndarray  # (B, 1, N, S)
    widths: tuple  # (Dk, Dv)
    q_factor: float
    backend: object


def _pad_columns(x, width):
    """(B, L, D) -> (B, 1, L, width) contiguous, zero-padded on the right."""
    if x.shape[-1] == width:
        return np.ascontiguousarray(x[:, None])
    padded = np.zeros((x.shape[0], 1, x.shape[1], width), dtype=x.dtype)
    padded[..., : x.shape[-1]] = x[:, None]
    return padded


def pixel_attention_forward(q, k, v, backend):
    """q (B, N, Dk), k (B, S, Dk), v (B, S, Dv) -> out (B, N, Dv), probs (B, N, S), cache."""
    if q.ndim != 3 or k.ndim != 3 or v.ndim != 3 or q.shape[-1] != k.shape[-1] or k.shape[1] != v.shape[1]:
        raise ValueError(f"expected q (B, N, Dk), k (B, S, Dk), v (B, S, Dv); got {q.shape}, {k.shape}, {v.shape}")
    key_width, value_width = k.shape[-1], v.shape[-1]
    width = max(key_width, value_width)
    # the core divides by √width; this factor makes the scores q·k/√Dk
    q_factor = math.sqrt(width / key_width)
    q4 = _pad_columns(q * q.dtype.type(q_factor) if q_factor != 1.0 else q, width)  # (B, 1, N, D)
    k4, v4 = _pad_columns(k, width), _pad_columns(v, width)  # (B, 1, S, D)
    xp = getattr(backend, "xp", np)
    if xp is not np:  # the core runs on another device: copy there once
        q4, k4, v4 = xp.asarray(q4), xp.asarray(k4), xp.asarray(v4)
    out4, probs = backend.attention_forward(q4, k4, v4, None)  # (B, 1, N, D), (B, 1, N, S)
    cache = PixelAttentionCache(q4, k4, v4, probs, (key_width, value_width), q_factor, backend)
    return to_numpy(out4[:, 0, :, :value_width]), to_numpy(probs[:, 0]), cache


def pixel_attention_backward(dout, cache):
    """dout (B, N, Dv) -> dq (B, N, Dk), dk (B, S, Dk), dv (B, S, Dv)."""
    q4, k4, v4, probs, (key_width, value_width), q_factor, backend = cache
    dout4 = _pad_columns(dout, q4.shape[-1])  # (B, 1, N, D): the dropped columns had no gradient
    xp = getattr(backend, "xp", np)
    if xp is not np:
        dout4 = xp.asarray(dout4)
    dq4, dk4, dv4 = backend.attention_backward(dout4, q4, k4, v4, probs)
    dq = to_numpy(dq4[:, 0, :, :key_width]) * q_factor  # (B, N, Dk)
    return dq, to_numpy(dk4[:, 0, :, :key_width]), to_numpy(dv4[:, 0, :, :value_width])
