"""ANL: the asymmetric pyramid non-local block, APNB (Zhu, Xu, Bai, Huang & Bai, ICCV 2019,
"Asymmetric Non-local Neural Networks for Semantic Segmentation").

Non-local attention whose keys and values are a small sample of the positions. Sizes:
B batch, C channels, H × W the map, N = H·W query positions, S = Σ_p s_p² key positions,
C' = C / 2.

    θ = W_θ x (all N positions),   φ_s = P · W_φ x,   g_s = P · W_g x          P (S, N)
    y_i = Σ_s softmax_s(θ_i · φ_s / √C') g_s,      z = x + W_z y

P is spatial pyramid pooling: adaptive average pooling of the map to s × s grids for each
s in ``sizes`` (pool.py:pyramid_pool_matrix), stacked. The queries stay dense, so every
pixel still gets its own output; only the keys are few, which makes the cost O(N·S·C')
instead of the non-local O(N²·C'). This is the notes' "attention approximated by sampling":
the S anchors summarize the N keys, and the softmax over them approximates the full one.
With sizes = (H,) on a square map P is the identity, every position is kept as a key, and
the block *is* the non-local block (tests/test_vision_modules.py checks this).

Parameters: those of the non-local block, 3·(C·C' + C') + C'·C + C; the pooling has none.
The paper's sizes (1, 3, 6, 8), S = 110, fit the 16×16 maps here and are kept; on a map
smaller than 8×8 the sizes larger than its side are left out. (The paper
also shares W_φ and W_g and fuses the output with x by concatenation; the separate W_φ,
W_g and the residual keep the identity with Non-local exact.)

attention_map(cache) is the weight each anchor receives, averaged over the queries and
spread back over the pixels it pooled (B, H, W).
"""

import numpy as np

from ..pool import pyramid_pool_matrix
from .non_local import attention_map, attention_probs, non_local_backward, non_local_forward, non_local_init, param_count  # noqa: F401

KIND = "spatial"
PYRAMID_SIZES = (1, 3, 6, 8)


def anl_init(rng, channels, dtype=np.float32):
    return non_local_init(rng, channels, dtype)


def anl_forward(x, params, mode, sizes=PYRAMID_SIZES):
    """x (B, C, H, W) -> z (B, C, H, W), cache."""
    height, width = x.shape[2:]
    sizes = tuple(size for size in sizes if size <= min(height, width))
    sampler = pyramid_pool_matrix(height, width, sizes).astype(x.dtype)  # (S, N)
    return non_local_forward(x, params, mode, sampler=sampler)


def anl_backward(dout, cache):
    """dout (B, C, H, W) -> dx (B, C, H, W), grads."""
    return non_local_backward(dout, cache)
