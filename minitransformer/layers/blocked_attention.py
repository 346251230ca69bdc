"""Blocked attention with an online softmax: the attention core in memory linear in length.

The plain core (layers/attention.py) stores the whole (T, S) matrix of weights P for every
batch entry and head: for B=4, H=8, T=S=4096 in float32 that is 2 GiB. This file computes
the same O and the same gradients without ever holding more than one (Tb, Sb) block of P,
as FlashAttention does (Dao et al., 2022; the loop order of FlashAttention-2).

Split the attention matrix into blocks: rows into query blocks of Tb queries, columns into
key blocks of Sb keys. Different query blocks never interact (each row of P is a softmax
of its own), so they can be computed at the same time, on different threads. Within a
query block the key blocks are visited one after another, and the softmax is assembled
as they arrive ("online"): keep per row a running maximum m, a running sum
l = Σ exp(s − m) and an unnormalized output acc = Σ exp(s − m)·v. When block j brings a
larger maximum m', everything gathered so far was measured against the old m, so it is
rescaled by exp(m − m') ≤ 1:

    m' = max(m, rowmax(S_j))
    l  = exp(m − m')·l   + rowsum(exp(S_j − m'))
    acc = exp(m − m')·acc + exp(S_j − m')·V_j
    after the last block:  O = acc / l,   L = m + log l   (the row's log-sum-exp)

Only L (one number per query) is kept for the backward. It then recomputes each block of
P from Q, K and L, P_ij = exp(Q_i·K_jᵀ/√Dh − L_i), and needs one more trick: the softmax
backward's row-sum rowsum(dP ⊙ P) would need a whole row of P, but it equals

    D_t = Σ_s dP_ts·P_ts = Σ_s (Σ_d dO_td·V_sd)·P_ts = Σ_d dO_td·(Σ_s P_ts·V_sd) = rowsum(dO ⊙ O)_t

which needs only the output row. Per block the backward is then the plain one:

    dV_j += P_ijᵀ·dO_i,   dP_ij = dO_i·V_jᵀ,   dS_ij = P_ij ⊙ (dP_ij − D_i)
    dQ_i += dS_ij·K_j/√Dh,   dK_j += dS_ijᵀ·Q_i/√Dh

It computes S = Q·Kᵀ twice (forward and backward): 7 matrix products where the plain core
does 6 (2 forward, 4 backward), one sixth more matrix work, in exchange for memory that grows like T + S instead of T·S. A row whose keys are
all masked has l = 0: its output is 0, its L is −∞, and its gradients are 0, as in the
plain core.

This is the readable NumPy version, vectorized over (B, H) and looping over blocks. The
compiled one is in csrc/attention.pyx: its forward runs the (batch, head, query block)
triples in parallel; its backward runs (batch, head) pairs in parallel and walks their
blocks in turn, because every query block adds into the same dK and dV.
"""

import math

import numpy as np

from .attention import check_attention_inputs


def _block_starts(length, block_size):
    """[(start, stop), …] covering range(length) in blocks of block_size (the last may be short)."""
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    return [(start, min(start + block_size, length)) for start in range(0, length, block_size)]


def blocked_attention_forward(q, k, v, mask=None, block_size=64):
    """q (B, H, T, Dh), k (B, H, S, Dh), v (B, H, S, Dh), mask ~(B, H, T, S) bool
    -> out (B, H, T, Dh), logsumexp (B, H, T); nothing of size T·S is ever stored."""
    check_attention_inputs(q, k, v, mask)
    batch, heads, tgt_len, head_dim = q.shape
    src_len = k.shape[2]
    dtype = np.result_type(q, k, v)
    scale = 1.0 / math.sqrt(head_dim)
    # a broadcast view: blocks of it are sliced out, the (B, H, T, S) array is never made
    full_mask = None if mask is None else np.broadcast_to(mask, (batch, heads, tgt_len, src_len))
    out = np.zeros((batch, heads, tgt_len, head_dim), dtype=dtype)  # (B, H, T, Dh)
    logsumexp = np.full((batch, heads, tgt_len), -np.inf, dtype=dtype)  # (B, H, T)
    for t0, t1 in _block_starts(tgt_len, block_size):
        q_block = q[:, :, t0:t1]  # (B, H, Tb, Dh)
        row_max = np.full((batch, heads, t1 - t0, 1), -np.inf, dtype=dtype)  # (B, H, Tb, 1)
        row_sum = np.zeros((batch, heads, t1 - t0, 1), dtype=dtype)  # (B, H, Tb, 1)
        acc = np.zeros((batch, heads, t1 - t0, head_dim), dtype=dtype)  # (B, H, Tb, Dh)
        for s0, s1 in _block_starts(src_len, block_size):
            scores = (q_block @ k[:, :, s0:s1].swapaxes(-1, -2)) * scale  # (B, H, Tb, Sb)
            if full_mask is not None:
                scores = np.where(full_mask[:, :, t0:t1, s0:s1], scores, -np.inf)
            new_max = np.maximum(row_max, scores.max(axis=-1, keepdims=True))  # (B, H, Tb, 1)
            # rows that have seen no allowed key yet have max −∞; shift them by 0 instead,
            # so exp gives 0 for their (all masked) scores and never −∞ − (−∞) = NaN
            shift = np.where(np.isfinite(new_max), new_max, 0.0)  # (B, H, Tb, 1)
            weights = np.exp(scores - shift)  # (B, H, Tb, Sb), 0 where masked
            # what was gathered against the old maximum, remeasured against the new one
            rescale = np.exp(row_max - shift)  # (B, H, Tb, 1), ≤ 1; 0 when nothing was gathered
            row_sum = rescale * row_sum + weights.sum(axis=-1, keepdims=True)
            acc = rescale * acc + weights @ v[:, :, s0:s1]  # (B, H, Tb, Dh)
            row_max = new_max
        seen = row_sum > 0  # (B, H, Tb, 1): False for a row whose keys are all masked
        out[:, :, t0:t1] = acc / np.where(seen, row_sum, 1.0)
        lse = row_max + np.log(np.where(seen, row_sum, 1.0))  # (B, H, Tb, 1)
        logsumexp[:, :, t0:t1] = np.where(seen, lse, -np.inf)[..., 0]
    return out, logsumexp


def blocked_attention_backward(dout, q, k, v, out, logsumexp, mask=None, block_size=64):
    """dout (B, H, T, Dh), and q, k, v, mask, plus out and logsumexp from the forward
    -> dq (B, H, T, Dh), dk (B, H, S, Dh), dv (B, H, S, Dh)."""
    check_attention_inputs(q, k, v, mask)
    batch, heads, tgt_len, head_dim = q.shape
    src_len = k.shape[2]
    dtype = np.result_type(q, k, v, dout)
    scale = 1.0 / math.sqrt(head_dim)
    full_mask = None if mask is None else np.broadcast_to(mask, (batch, heads, tgt_len, src_len))
    # D = rowsum(dO ⊙ O) stands in for rowsum(dP ⊙ P) (see the module docstring)
    row_dot = (dout * out).sum(axis=-1, keepdims=True)  # (B, H, T, 1)
    # a row with no allowed key has L = −∞; shifting it by +∞ makes its weights exp(−∞) = 0
    shift = np.where(np.isfinite(logsumexp), logsumexp, np.inf)[..., None]  # (B, H, T, 1)
    dq = np.zeros((batch, heads, tgt_len, head_dim), dtype=dtype)  # (B, H, T, Dh)
    dk = np.zeros((batch, heads, src_len, head_dim), dtype=dtype)  # (B, H, S, Dh)
    dv = np.zeros((batch, heads, src_len, head_dim), dtype=dtype)  # (B, H, S, Dh)
    for s0, s1 in _block_starts(src_len, block_size):
        k_block, v_block = k[:, :, s0:s1], v[:, :, s0:s1]  # (B, H, Sb, Dh)
        for t0, t1 in _block_starts(tgt_len, block_size):
            q_block, dout_block = q[:, :, t0:t1], dout[:, :, t0:t1]  # (B, H, Tb, Dh)
            # in the forward pass this was: weights = exp(scores − m) and, at the end, / l
            scores = (q_block @ k_block.swapaxes(-1, -2)) * scale  # (B, H, Tb, Sb)
            probs = np.exp(scores - shift[:, :, t0:t1])  # (B, H, Tb, Sb)
            if full_mask is not None:
                probs = np.where(full_mask[:, :, t0:t1, s0:s1], probs, 0.0)
            # in the forward pass this was: acc += weights @ V_j
            dv[:, :, s0:s1] += probs.swapaxes(-1, -2) @ dout_block  # (B, H, Sb, Dh)
            dprobs = dout_block @ v_block.swapaxes(-1, -2)  # (B, H, Tb, Sb)
            # the softmax backward, with D in place of the row-sum over the whole row
            dscores = probs * (dprobs - row_dot[:, :, t0:t1])  # (B, H, Tb, Sb)
            # in the forward pass this was: scores = Q_i·K_jᵀ/√Dh
            dq[:, :, t0:t1] += (dscores @ k_block) * scale  # (B, H, Tb, Dh)
            dk[:, :, s0:s1] += (dscores.swapaxes(-1, -2) @ q_block) * scale  # (B, H, Sb, Dh)
    return dq, dk, dv


def weights_from_logsumexp(q, k, logsumexp, mask=None):
    """The weights P (B, H, T, S) that the blocked forward never stored, rebuilt for
    inspection (attention maps, traces): P = exp(Q·Kᵀ/√Dh − L), 0 where masked."""
    scores = (q @ k.swapaxes(-1, -2)) / math.sqrt(q.shape[-1])  # (B, H, T, S)
    # a row with no allowed key has L = −∞: shifting it by +∞ gives weights exp(−∞) = 0
    shift = np.where(np.isfinite(logsumexp), logsumexp, np.inf)[..., None]  # (B, H, T, 1)
    probs = np.exp(scores - shift)  # (B, H, T, S)
    return probs if mask is None else np.where(mask, probs, 0.0).astype(probs.dtype)
