"""Random-sampling attention: each block of queries attends to m keys drawn at random.

Exact attention is a ratio of two sums over the S keys, with e_s = exp(q·k_s/√Dh):

    out = N / D,   N = Σ_s e_s·v_s,   D = Σ_s e_s

Draw m keys s_1 … s_m from a proposal q(s) and weight each by 1/(m·q(s_j)):

    N̂ = (1/m)·Σ_j e_{s_j}·v_{s_j} / q(s_j),   D̂ = (1/m)·Σ_j e_{s_j} / q(s_j),   out ≈ N̂ / D̂

N̂ and D̂ are unbiased (E N̂ = N, E D̂ = D, by linearity: each term has expectation
Σ_s q(s)·e_s·v_s/q(s)). Their ratio is biased, E[N̂/D̂] ≠ N/D, though consistent: the bias
and the spread fall like 1/m. The proposal here is uniform over the real (non-padded)
keys, q(s) = 1/n; then the weights 1/(m·q) = n/m cancel in the ratio and the estimate is a
softmax over the sampled keys (with their multiplicity). Another proposal would add
−log q(s_j) to each sampled score. Drawn without replacement the weights are the
inclusion probabilities' inverses, n/m again, so the same softmax; with all n keys drawn
without replacement it is exact attention.

One set of m keys serves a block of `block_size` consecutive queries (block_size = 1: per
query), so a block is a dense (block, m) product: cost O(T·m·Dh), memory O(T·m). The
indices are drawn in the forward and kept in the cache; passing them back in (indices=…)
freezes them, as the gradient check needs.

Backward: the plain attention backward on the sampled keys of each block, then every
sampled key's gradient is added into dK and dV at its index (a key drawn twice gets both).
"""

import math

import numpy as np

from .common import masked_softmax, positive_int, softmax_backward


def draw_indices(n_samples, key_valid, shape, block_size, rng, replace=True):
    """Indices (B, H, nb, m) of the keys each query block attends to.

    key_valid (B, S) bool; shape (B, H, T, S). Uniform over each row's real keys; where a
    row has none, index 0 (masked, weight 0)."""
    batch, heads, tgt_len, src_len = shape
    n_blocks = -(-tgt_len // block_size)
    if not replace and n_samples > src_len:
        raise ValueError(f"sampling samples m must be at most S={src_len} without replacement, got {n_samples}")
    # the real keys first, in order, so that a draw in [0, n) picks a real key
    order = np.argsort(~key_valid, axis=-1, kind="stable")  # (B, S)
    n_valid = key_valid.sum(axis=-1)  # (B,)
    if replace:
        uniform = rng.random((batch, heads, n_blocks, n_samples))
        picks = np.floor(uniform * n_valid[:, None, None, None]).astype(np.intp)  # in [0, n)
    else:
        # a random permutation of the real keys per block: sort random keys, pads last
        noise = rng.random((batch, heads, n_blocks, src_len)) + (~key_valid[np.arange(batch)[:, None], order])[:, None, None, :]
        picks = np.argsort(noise, axis=-1)[..., :n_samples]
    picks = np.minimum(picks, src_len - 1)
    return np.take_along_axis(order[:, None, None, :], picks, axis=-1)  # (B, H, nb, m)


def sampling_forward(q, k, v, n_samples, key_mask=None, rng=None, block_size=1, replace=True, indices=None):
    """q (B, H, T, Dh), k, v (B, H, S, Dh), key_mask ~(B, H, 1, S) -> out (B, H, T, Dh), cache."""
    batch, heads, tgt_len, head_dim = q.shape
    src_len = k.shape[2]
    n_samples = positive_int("sampling samples m", n_samples)
    block_size = positive_int("sampling block_size", block_size)
    key_valid = np.ones((batch, src_len), bool) if key_mask is None else np.broadcast_to(key_mask[:, 0, 0, :], (batch, src_len))
    if indices is None:
        rng = np.random.default_rng() if rng is None else rng
        indices = draw_indices(n_samples, key_valid, (batch, heads, tgt_len, src_len), block_size, rng, replace)
    n_blocks = indices.shape[2]
    scale = 1.0 / math.sqrt(head_dim)
    # pass 1: gather the sampled keys and values of every block
    k_sampled = np.take_along_axis(k[:, :, None], indices[..., None], axis=3)  # (B, H, nb, m, Dh)
    v_sampled = np.take_along_axis(v[:, :, None], indices[..., None], axis=3)  # (B, H, nb, m, Dh)
    valid = np.take_along_axis(key_valid[:, None, None, :], indices, axis=-1)[..., None, :]  # (B, H, nb, 1, m)
    # pass 2: the queries in blocks (the last one padded with zero queries)
    padded = n_blocks * block_size
    q_blocks = np.zeros((batch, heads, padded, head_dim), dtype=q.dtype)
    q_blocks[:, :, :tgt_len] = q
    q_blocks = q_blocks.reshape(batch, heads, n_blocks, block_size, head_dim)  # (B, H, nb, Tb, Dh)
    # pass 3: a softmax over each block's sampled keys (the proposal's weights cancel)
    scores = (q_blocks @ k_sampled.swapaxes(-1, -2)) * scale  # (B, H, nb, Tb, m)
    probs = masked_softmax(scores, valid).astype(q.dtype, copy=False)  # (B, H, nb, Tb, m)
    out = (probs @ v_sampled).reshape(batch, heads, padded, head_dim)[:, :, :tgt_len]  # (B, H, T, Dh)
    cache = (q_blocks, k_sampled, v_sampled, probs, indices, tgt_len, src_len)
    return out, cache


def sampling_backward(dout, cache):
    """dout (B, H, T, Dh) -> dq (B, H, T, Dh), dk, dv (B, H, S, Dh)."""
    q_blocks, k_sampled, v_sampled, probs, indices, tgt_len, src_len = cache
    batch, heads, n_blocks, block_size, head_dim = q_blocks.shape
    scale = 1.0 / math.sqrt(head_dim)
    dout_blocks = np.zeros((batch, heads, n_blocks * block_size, head_dim), dtype=dout.dtype)
    dout_blocks[:, :, :tgt_len] = dout
    dout_blocks = dout_blocks.reshape(q_blocks.shape)  # (B, H, nb, Tb, Dh)
    # in the forward pass this was: out = probs @ v_sampled
    dv_sampled = probs.swapaxes(-1, -2) @ dout_blocks  # (B, H, nb, m, Dh)
    dprobs = dout_blocks @ v_sampled.swapaxes(-1, -2)  # (B, H, nb, Tb, m)
    dscores = softmax_backward(dprobs, probs)  # (B, H, nb, Tb, m)
    dq = ((dscores @ k_sampled) * scale).reshape(batch, heads, -1, head_dim)[:, :, :tgt_len]  # (B, H, T, Dh)
    dk_sampled = (dscores.swapaxes(-1, -2) @ q_blocks) * scale  # (B, H, nb, m, Dh)
    # in the forward pass this was: k_sampled = k[indices]: add each back at its index
    rows = (np.arange(batch * heads).reshape(batch, heads, 1, 1) * src_len + indices).reshape(-1)  # (B·H·nb·m,)
    dk = np.zeros((batch * heads * src_len, head_dim), dtype=dout.dtype)
    dv = np.zeros_like(dk)
    np.add.at(dk, rows, dk_sampled.reshape(-1, head_dim))
    np.add.at(dv, rows, dv_sampled.reshape(-1, head_dim))
    return dq, dk.reshape(batch, heads, src_len, head_dim), dv.reshape(batch, heads, src_len, head_dim)


def sampling_weights(cache):
    """The weights over the S keys (B, H, T, S): each block's sampled weights at their
    indices (a key drawn twice gets the sum)."""
    q_blocks, _, _, probs, indices, tgt_len, src_len = cache
    batch, heads, n_blocks, block_size, _ = q_blocks.shape
    weights = np.zeros((batch, heads, n_blocks, block_size, src_len), dtype=probs.dtype)
    b, h, n, t, j = np.indices(probs.shape, sparse=True)
    np.add.at(weights, (b, h, n, t, indices[:, :, :, None, :]), probs)
    return weights.reshape(batch, heads, -1, src_len)[:, :, :tgt_len]
