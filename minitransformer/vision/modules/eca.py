"""ECA: Efficient Channel Attention (Wang et al., CVPR 2020, "ECA-Net: Efficient Channel
Attention for Deep Convolutional Neural Networks").

Channel attention without SE's bottleneck. Sizes: B batch, C channels, H × W the map.

    g(x):  z = GAP(x)                         (B, C)
           a = σ(conv1d_k(z))                 a 1-D convolution across the channel axis,
                                              k taps, zero padding (k − 1)/2, no bias    (B, C)
    f:     y = a ⊙ x                          (B, C, H, W)

Each channel's weight depends only on its k neighbours in the channel order; the kernel is
shared by all channels. The paper picks k from C ("adaptive kernel size"):

    k = ψ(C) = | log₂(C)/γ + b/γ |_odd,   γ = 2, b = 1      (|t|_odd: the odd number at t or above)

so C = 32 gives k = 3 and C = 512 gives k = 5. Parameters: k (no bias). The 1-D
convolution is conv2d (conv.py) on z viewed as a (B, 1, 1, C) image with a (1, 1, 1, k) kernel.

The attention map is a (B, C): attention_map(cache).
"""

import math
from typing import NamedTuple

import numpy as np

from ..conv import conv2d_backward, conv2d_forward
from ..gate import gate_backward, gate_forward, sigmoid_backward, sigmoid_forward
from ..global_pool import global_avg_pool_backward, global_avg_pool_forward

KIND = "channel"


def eca_kernel_size(channels, gamma=2, b=1):
    """ψ(C) = |log₂(C)/γ + b/γ|_odd, as in the paper's code (t = int(...), then t + 1 if even)."""
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


def param_count(channels):
    return eca_kernel_size(channels)


def eca_init(rng, channels, dtype=np.float32):
    k = eca_kernel_size(channels)
    # a 1-D average of the k neighbours to start with, plus a little noise
    weight = np.full((1, 1, 1, k), 1.0 / k) + 0.1 * rng.standard_normal((1, 1, 1, k))
    return {"conv.weight": weight.astype(dtype)}


class ECACache(NamedTuple):
    pool: object
    conv: object
    sigmoid: object
    gate: object
    attention: np.ndarray  # (B, C)


def eca_forward(x, params, mode):
    """x (B, C, H, W) -> y (B, C, H, W), cache."""
    batch, channels = x.shape[:2]
    weight = params["conv.weight"]  # (1, 1, 1, k)
    z, pool_cache = global_avg_pool_forward(x)  # (B, C)
    scores, conv_cache = conv2d_forward(z.reshape(batch, 1, 1, channels), weight, None, 1, (0, weight.shape[-1] // 2))
    weights, sigmoid_cache = sigmoid_forward(scores.reshape(batch, channels))  # (B, C)
    y, gate_cache = gate_forward(x, weights[:, :, None, None])  # (B, C, H, W)
    return y, ECACache(pool_cache, conv_cache, sigmoid_cache, gate_cache, weights)


def eca_backward(dy, cache):
    """dy (B, C, H, W) -> dx (B, C, H, W), grads."""
    dx, dweights = gate_backward(dy, cache.gate)  # (B, C, H, W), (B, C, 1, 1)
    batch, channels = dweights.shape[:2]
    dscores = sigmoid_backward(dweights.reshape(batch, channels), cache.sigmoid)  # (B, C)
    dz, dweight, _ = conv2d_backward(dscores.reshape(batch, 1, 1, channels), cache.conv)  # (B, 1, 1, C)
    dx = dx + global_avg_pool_backward(dz.reshape(batch, channels), cache.pool)
    return dx, {"conv.weight": dweight}


def attention_map(cache):
    """(B, C): the weight of every channel."""
    return cache.attention
