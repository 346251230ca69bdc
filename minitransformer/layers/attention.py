"""The scaled dot-product attention core: the NumPy reference every backend is checked against.

    Attention(Q, K, V) = softmax(Q·Kᵀ / √Dh + M) · V          (equation 1 of the paper)

Shapes: Q (B, H, T, Dh), K and V (B, H, S, Dh). The mask is boolean, broadcastable to
(B, H, T, S), True where query t may attend to key s; M is 0 there and −∞ elsewhere.
The scale 1/√Dh keeps the scores' variance near 1 when Q and K have unit-variance entries:
a sum of Dh products has variance Dh, and a softmax of large scores saturates, which
starves the gradient.

Forward, in four passes:
    1. scores  S = Q·Kᵀ · (1/√Dh)                             (B, H, T, S)
    2. masks   S[~mask] = −∞
    3. softmax P = exp(S − max S) / Σ exp(S − max S), row by row; subtracting the row
               maximum changes nothing mathematically and keeps exp from overflowing.
               A row with every key masked has no maximum: its weights are all zero
               (never NaN, and never uniform, which would attend to padding).
    4. output  O = P·V                                        (B, H, T, Dh)

Backward, walking the passes in reverse with dO = ∂L/∂O:
    4. dV = Pᵀ·dO,   dP = dO·Vᵀ
    3. dS = P ⊙ (dP − rowsum(dP ⊙ P))
       The softmax Jacobian is diag(p) − p·pᵀ per row; applied to dP it gives the line
       above, so the (T×S)×(T×S) Jacobian is never formed: one row-sum does it.
       Masked entries have P = 0, so they get dS = 0: the mask needs no backward.
    1. dQ = dS·K · (1/√Dh),   dK = dSᵀ·Q · (1/√Dh)

Backends (Cython, CuPy) implement the same two functions; see minitransformer/backends/.
"""

import math

import numpy as np

from ..arrays import array_module


def check_attention_inputs(q, k, v, mask):
    """Raise a ValueError naming the problem when shapes or the mask do not fit."""
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(
            f"attention expects q, k, v of rank 4 (B, H, T, Dh); got shapes {q.shape}, {k.shape}, {v.shape}"
        )
    batch, heads, _, head_dim = q.shape
    if k.shape[:2] != (batch, heads) or k.shape[3] != head_dim:
        raise ValueError(f"k has shape {k.shape}, which does not fit q of shape {q.shape}")
    if v.shape != k.shape:
        raise ValueError(f"v has shape {v.shape} but k has shape {k.shape}")
    if mask is not None:
        target = (batch, heads, q.shape[2], k.shape[2])
        if mask.dtype != np.bool_:
            raise ValueError(f"the attention mask must be boolean (True = may attend), got {mask.dtype}")
        if mask.ndim != 4 or any(m not in (1, n) for m, n in zip(mask.shape, target)):
            raise ValueError(f"attention mask of shape {mask.shape} does not broadcast to (B, H, T, S) = {target}")


def masked_softmax(scores, mask):
    """Row softmax over the last axis; masked entries and fully masked rows get weight 0."""
    xp = array_module(scores)
    if mask is not None:
        scores = xp.where(mask, scores, -xp.inf)  # (B, H, T, S)
    row_max = scores.max(axis=-1, keepdims=True)  # (B, H, T, 1)
    # a fully masked row has max −∞; shifting by 0 instead keeps exp(−∞ − 0) = 0 and no NaN
    row_max = xp.where(xp.isfinite(row_max), row_max, 0)
    weights = xp.exp(scores - row_max)  # (B, H, T, S)
    row_sum = weights.sum(axis=-1, keepdims=True)  # (B, H, T, 1)
    # a fully masked row sums to 0: divide by 1 so its weights stay 0
    return weights / xp.where(row_sum > 0, row_sum, 1)


def attention_forward(q, k, v, mask=None):
    """q (B, H, T, Dh), k (B, H, S, Dh), v (B, H, S, Dh), mask ~(B, H, T, S) bool
    -> out (B, H, T, Dh), probs (B, H, T, S)."""
    check_attention_inputs(q, k, v, mask)
    scale = 1.0 / math.sqrt(q.shape[-1])
    # pass 1: scores
    scores = (q @ k.swapaxes(-1, -2)) * scale  # (B, H, T, S)
    # passes 2 and 3: mask, then softmax with max-subtraction
    probs = masked_softmax(scores, mask).astype(q.dtype, copy=False)  # (B, H, T, S)
    # pass 4: the weighted average of the values
    out = probs @ v  # (B, H, T, Dh)
    return out, probs


def attention_backward(dout, q, k, v, probs):
    """dout (B, H, T, Dh) -> dq (B, H, T, Dh), dk (B, H, S, Dh), dv (B, H, S, Dh)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    # in the forward pass this was: out = probs @ v
    dv = probs.swapaxes(-1, -2) @ dout  # (B, H, S, Dh)
    dprobs = dout @ v.swapaxes(-1, -2)  # (B, H, T, S)
    # in the forward pass this was: probs = softmax(scores); one row-sum replaces the Jacobian
    row_dot = (dprobs * probs).sum(axis=-1, keepdims=True)  # (B, H, T, 1)
    dscores = probs * (dprobs - row_dot)  # (B, H, T, S)
    # in the forward pass this was: scores = q @ kᵀ * scale
    dq = (dscores @ k) * scale  # (B, H, T, Dh)
    dk = (dscores.swapaxes(-1, -2) @ q) * scale  # (B, H, S, Dh)
    return dq, dk, dv
