"""Linformer: attention over r projected keys and values instead of all S (Wang et al., 2020).

    K̄ = E·(K ⊙ m),  V̄ = F·(V ⊙ m)                E, F (r, S); m the key mask (0 on padding)
    Linformer(Q, K, V) = softmax(Q·K̄ᵀ / √Dh) · V̄   (B, H, T, r) weights, then (B, H, T, Dh)

Cost O(T·r·Dh + S·r·Dh) instead of O(T·S·Dh). The idea: the (T, S) weight matrix of a
trained model is close to low rank, so S keys can be replaced by r mixtures of them.
Padded keys are zeroed before projecting, so they add nothing to any mixture; they cannot
be masked afterwards, since each projected key mixes all positions. For the same reason
Linformer cannot be causal: every projected key contains the future, and no mask on the
r columns can take it out (``causal=True`` is an error).

The weights over the S real keys that the output implies are A = softmax(Q·K̄ᵀ/√Dh)·F,
since out = P̄·F·V: the trace shows those (they need not be positive or sum to 1).

Limit: with r = S and E = F = I (no padding) this is exact attention.

Backward, with P̄ = softmax(Q·K̄ᵀ/√Dh) and dO:
    dV̄ = P̄ᵀ·dO,   dP̄ = dO·V̄ᵀ,   dS̄ = P̄ ⊙ (dP̄ − rowsum(dP̄ ⊙ P̄))
    dQ = dS̄·K̄/√Dh,   dK̄ = dS̄ᵀ·Q/√Dh
    dK = (Eᵀ·dK̄) ⊙ m,   dE = Σ_{b,h} dK̄·(K ⊙ m)ᵀ        (and the same for V, F)

The paper learns E and F. Here they are fixed, of two kinds:
  * segment means (the model's choice): row j of E = F averages the keys of segment j of
    r contiguous segments, so K̄ and V̄ are the means of stretches of the sequence;
  * Gaussian, entries N(0, 1/S), drawn once: the Johnson–Lindenstrauss view, in which
    random mixtures keep distances. On attention it does far worse (chapter 13 measures
    both): a random mixture of values is not a value, while a mean of neighbours nearly is.
The gradients of E and F are computed all the same, and checked.
"""

import math

import numpy as np

from .common import positive_int, softmax_backward


def segment_mean_projection(rank, length):
    """E = F (rank, length): row j averages positions ⌊j·S/r⌋ … ⌊(j+1)·S/r⌋ − 1 (rank ≤ length)."""
    rank = positive_int("linformer rank k", rank)
    if rank > length:
        raise ValueError(f"linformer rank k must be at most the sequence length {length} for segment means, got {rank}")
    projection = np.zeros((rank, length))
    for j in range(rank):
        lo, hi = (j * length) // rank, ((j + 1) * length) // rank
        projection[j, lo:hi] = 1.0 / (hi - lo)
    return projection


def linformer_projections(rank, length, rng):
    """E, F (rank, length): Gaussian, entries N(0, 1/length), so that a projected value has
    the variance of one value."""
    rank = positive_int("linformer rank k", rank)
    scale = 1.0 / math.sqrt(length)
    return rng.standard_normal((rank, length)) * scale, rng.standard_normal((rank, length)) * scale


def linformer_forward(q, k, v, proj_k, proj_v, key_mask=None, causal=False):
    """q (B, H, T, Dh), k, v (B, H, S, Dh), proj_k = E, proj_v = F (r, S), key_mask ~(B, H, 1, S)
    -> out (B, H, T, Dh), cache."""
    if causal:
        raise ValueError("linformer: causal=True is impossible, each projected key mixes every position, future ones too")
    src_len = k.shape[2]
    if proj_k.ndim != 2 or proj_k.shape[1] != src_len or proj_v.shape != proj_k.shape:
        raise ValueError(f"linformer projections E {proj_k.shape}, F {proj_v.shape} must both be (r, S={src_len})")
    positive_int("linformer rank k", proj_k.shape[0])
    scale = 1.0 / math.sqrt(q.shape[-1])
    keep = None if key_mask is None else key_mask[..., 0, :, None].astype(q.dtype)  # (B, H|1, S, 1)
    k_kept = k if keep is None else k * keep  # (B, H, S, Dh)
    v_kept = v if keep is None else v * keep  # (B, H, S, Dh)
    # pass 1: project along the sequence
    k_proj = proj_k.astype(q.dtype) @ k_kept  # (B, H, r, Dh)
    v_proj = proj_v.astype(q.dtype) @ v_kept  # (B, H, r, Dh)
    # pass 2: exact attention over the r projected keys (no mask: every one is real)
    scores = (q @ k_proj.swapaxes(-1, -2)) * scale  # (B, H, T, r)
    scores = scores - scores.max(axis=-1, keepdims=True)
    probs = np.exp(scores)  # (B, H, T, r)
    probs /= probs.sum(axis=-1, keepdims=True)
    # pass 3: the weighted average of the projected values
    out = probs @ v_proj  # (B, H, T, Dh)
    cache = (q, k_kept, v_kept, keep, proj_k, proj_v, k_proj, v_proj, probs)
    return out, cache


def linformer_backward(dout, cache):
    """dout (B, H, T, Dh) -> dq (B, H, T, Dh), dk, dv (B, H, S, Dh), dproj_k, dproj_v (r, S)."""
    q, k_kept, v_kept, keep, proj_k, proj_v, k_proj, v_proj, probs = cache
    scale = 1.0 / math.sqrt(q.shape[-1])
    # in the forward pass this was: out = probs @ v_proj
    dv_proj = probs.swapaxes(-1, -2) @ dout  # (B, H, r, Dh)
    dprobs = dout @ v_proj.swapaxes(-1, -2)  # (B, H, T, r)
    # in the forward pass this was: probs = softmax(q @ k_projᵀ · scale)
    dscores = softmax_backward(dprobs, probs)  # (B, H, T, r)
    dq = (dscores @ k_proj) * scale  # (B, H, T, Dh)
    dk_proj = (dscores.swapaxes(-1, -2) @ q) * scale  # (B, H, r, Dh)
    # in the forward pass this was: k_proj = E @ (k ⊙ m), v_proj = F @ (v ⊙ m)
    dk = proj_k.T.astype(q.dtype) @ dk_proj  # (B, H, S, Dh)
    dv = proj_v.T.astype(q.dtype) @ dv_proj  # (B, H, S, Dh)
    dproj_k = (dk_proj @ k_kept.swapaxes(-1, -2)).sum(axis=(0, 1))  # (r, S)
    dproj_v = (dv_proj @ v_kept.swapaxes(-1, -2)).sum(axis=(0, 1))  # (r, S)
    if keep is not None:
        dk, dv = dk * keep, dv * keep
    return dq, dk, dv, dproj_k, dproj_v


def linformer_weights(cache):
    """The weights over the S keys that the output implies, A = P̄·F (B, H, T, S): out = A·(V ⊙ m)."""
    keep, proj_v, probs = cache[3], cache[5], cache[8]
    weights = probs @ proj_v.astype(probs.dtype)  # (B, H, T, S)
    return weights if keep is None else weights * keep[..., 0][..., None, :]
