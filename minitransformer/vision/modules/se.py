"""SE: Squeeze-and-Excitation (Hu, Shen & Sun, CVPR 2018, "Squeeze-and-Excitation Networks").

Channel attention. Sizes: B batch, C channels, H × W the map, R = C / r the bottleneck.

    g(x):  z = GAP(x)                         squeeze: one number per channel       (B, C)
           a = σ(W₂ · ReLU(W₁ · z + b₁) + b₂)  excitation: a weight per channel      (B, C)
    f:     y = a ⊙ x                          each channel rescaled                 (B, C, H, W)

Parameters: 2·C·R + R + C (W₁ (C, R), b₁, W₂ (R, C), b₂). The paper uses r = 16; on the
32 channels of this book's small CNN that would leave 2 hidden units, so r = 4 by default.

The attention map is a (B, C): attention_map(cache).
"""

from typing import NamedTuple

import numpy as np

from ...layers.linear import linear_backward, linear_forward
from ...layers.relu import relu_backward, relu_forward
from ..blocks import linear_init, prefixed
from ..gate import gate_backward, gate_forward, sigmoid_backward, sigmoid_forward
from ..global_pool import global_avg_pool_backward, global_avg_pool_forward

KIND = "channel"


def param_count(channels, reduction=4):
    hidden = max(channels // reduction, 1)
    return 2 * channels * hidden + hidden + channels


def se_init(rng, channels, dtype=np.float32, reduction=4):
    """Parameters of an SE block on C = ``channels``."""
    hidden = max(channels // reduction, 1)
    params = prefixed(linear_init(rng, channels, hidden, dtype), "fc1")
    params.update(prefixed(linear_init(rng, hidden, channels, dtype, relu=False), "fc2"))
    return params


class SECache(NamedTuple):
    pool: object
    fc1: object
    relu: object
    fc2: object
    sigmoid: object
    gate: object
    attention: np.ndarray  # (B, C) the channel weights a


def se_forward(x, params, mode):
    """x (B, C, H, W) -> y (B, C, H, W), cache."""
    z, pool_cache = global_avg_pool_forward(x)  # (B, C)
    hidden, fc1_cache = linear_forward(z, params["fc1.weight"], params["fc1.bias"])  # (B, R)
    hidden, relu_cache = relu_forward(hidden)  # (B, R)
    scores, fc2_cache = linear_forward(hidden, params["fc2.weight"], params["fc2.bias"])  # (B, C)
    weights, sigmoid_cache = sigmoid_forward(scores)  # (B, C)
    y, gate_cache = gate_forward(x, weights[:, :, None, None])  # (B, C, H, W)
    return y, SECache(pool_cache, fc1_cache, relu_cache, fc2_cache, sigmoid_cache, gate_cache, weights)


def se_backward(dy, cache):
    """dy (B, C, H, W) -> dx (B, C, H, W), grads."""
    dx, dweights = gate_backward(dy, cache.gate)  # (B, C, H, W), (B, C, 1, 1)
    dscores = sigmoid_backward(dweights[:, :, 0, 0], cache.sigmoid)  # (B, C)
    dhidden, dw2, db2 = linear_backward(dscores, cache.fc2)  # (B, R)
    dhidden = relu_backward(dhidden, cache.relu)
    dz, dw1, db1 = linear_backward(dhidden, cache.fc1)  # (B, C)
    # x fed both the squeeze and the product: the two gradients add
    dx = dx + global_avg_pool_backward(dz, cache.pool)  # (B, C, H, W)
    grads = {"fc1.weight": dw1, "fc1.bias": db1, "fc2.weight": dw2, "fc2.bias": db2}
    return dx, grads


def attention_map(cache):
    """(B, C): the weight of every channel."""
    return cache.attention


