"""Banded (local) attention: each query attends to the keys at most w positions away.

    Local(Q, K, V)_t = Σ_{|p_t − s| ≤ w} softmax_s(q_t·k_s/√Dh)·v_s      (causal: p_t − w ≤ s ≤ p_t)

The model always had it as a mask on the full (T, S) scores (model.local_mask), which
gives the right numbers and saves nothing: every score is computed and then thrown away.
The compiled kernel (csrc/banded.pyx, its docstring has the forward and backward) computes
only the band, W = 2w + 1 scores per query (w + 1 when causal), so time and memory are
O(T·w·Dh) instead of O(T·S·Dh). The reference is the masked full computation below; the
tests hold the kernel to it at every w, in float32 and float64, with padding and with rows
whose keys are all padded.

Query t sits at position p_t = t + S − T: the queries are the last T of the S positions
(T = S inside a layer, T = 1 for a decoding step).
"""

import numpy as np

from ..layers.attention import attention_backward, attention_forward
from ..model import causal_mask, local_mask


def banded_reference_forward(q, k, v, window, causal=False, key_keep=None):
    """The masked full computation: q (B, H, T, Dh), k, v (B, H, S, Dh), key_keep (B, S)
    -> out (B, H, T, Dh), probs (B, H, T, S)."""
    tgt_len, src_len = q.shape[2], k.shape[2]
    mask = local_mask(tgt_len, src_len, window, query_offset=src_len - tgt_len)  # (1, 1, T, S)
    if causal:
        mask = mask & causal_mask(src_len)[:, :, src_len - tgt_len:]
    if key_keep is not None:
        mask = mask & np.asarray(key_keep, bool)[:, None, None, :]
    return attention_forward(q, k, v, mask)


def banded_reference_backward(dout, q, k, v, probs):
    """dout (B, H, T, Dh) -> dq, dk, dv: the plain core's backward (masked weights are 0)."""
    return attention_backward(dout, q, k, v, probs)
