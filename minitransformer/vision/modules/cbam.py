"""CBAM: Convolutional Block Attention Module (Woo, Park, Lee & Kweon, ECCV 2018).

Channel attention, then spatial attention, in sequence. Sizes: B batch, C channels,
H × W the map, R = C / r the bottleneck of the shared MLP.

    channel:  a_c = σ(MLP(GAP(x)) + MLP(GMP(x)))        one MLP for both poolings    (B, C)
              x' = a_c ⊙ x                                                            (B, C, H, W)
    spatial:  a_s = σ(conv7×7([mean_c(x'); max_c(x')]))   two maps of the channels'
                                                          mean and max → one map      (B, 1, H, W)
              y = a_s ⊙ x'                                                            (B, C, H, W)

g(x) is (a_c, a_s) and f is the two products. MLP(z) = W₂ · ReLU(W₁ · z + b₁) + b₂.
Parameters: 2·C·R + R + C (the MLP) + 2·7·7 + 1 (the spatial convolution). The paper uses
r = 16; with 32 channels r = 4 here (as for SE), and the 7×7 kernel is kept (padding 3
keeps 16×16 maps at 16×16).

attention_map(cache) is the spatial map a_s (B, H, W); channel_weights(cache) is a_c (B, C).
"""

from typing import NamedTuple

import numpy as np

from ...layers.linear import linear_backward, linear_forward
from ...layers.relu import relu_backward, relu_forward
from ..blocks import linear_init, prefixed
from ..conv import conv2d_backward, conv2d_forward, conv_init
from ..gate import gate_backward, gate_forward, sigmoid_backward, sigmoid_forward
from ..global_pool import (
    global_avg_pool_backward,
    global_avg_pool_forward,
    global_max_pool_backward,
    global_max_pool_forward,
    max_pool_backward,
    max_pool_forward,
    mean_pool_backward,
    mean_pool_forward,
)

KIND = "spatial"
SPATIAL_KERNEL = 7


def param_count(channels, reduction=4):
    hidden = max(channels // reduction, 1)
    return 2 * channels * hidden + hidden + channels + 2 * SPATIAL_KERNEL**2 + 1


def cbam_init(rng, channels, dtype=np.float32, reduction=4):
    hidden = max(channels // reduction, 1)
    params = prefixed(linear_init(rng, channels, hidden, dtype), "mlp1")
    params.update(prefixed(linear_init(rng, hidden, channels, dtype, relu=False), "mlp2"))
    params["spatial.weight"] = conv_init(rng, 1, 2, SPATIAL_KERNEL, dtype) * 0.5
    params["spatial.bias"] = np.zeros(1, dtype)
    return params


def _mlp_forward(z, params):
    hidden, cache1 = linear_forward(z, params["mlp1.weight"], params["mlp1.bias"])  # (B, R)
    hidden, relu_cache = relu_forward(hidden)
    out, cache2 = linear_forward(hidden, params["mlp2.weight"], params["mlp2.bias"])  # (B, C)
    return out, (cache1, relu_cache, cache2)


def _mlp_backward(dout, cache):
    cache1, relu_cache, cache2 = cache
    dhidden, dw2, db2 = linear_backward(dout, cache2)
    dz, dw1, db1 = linear_backward(relu_backward(dhidden, relu_cache), cache1)
    return dz, {"mlp1.weight": dw1, "mlp1.bias": db1, "mlp2.weight": dw2, "mlp2.bias": db2}


class CBAMCache(NamedTuple):
    avg: object
    max: object
    mlp_avg: object
    mlp_max: object
    channel_sigmoid: object
    channel_gate: object
    mean_c: object
    max_c: object
    conv: object
    spatial_sigmoid: object
    spatial_gate: object
    channel: np.ndarray  # (B, C)
    attention: np.ndarray  # (B, H, W)


def cbam_forward(x, params, mode):
    """x (B, C, H, W) -> y (B, C, H, W), cache."""
    # pass 1: channel attention from two poolings through one MLP
    z_avg, avg_cache = global_avg_pool_forward(x)  # (B, C)
    z_max, max_cache = global_max_pool_forward(x)  # (B, C)
    s_avg, mlp_avg_cache = _mlp_forward(z_avg, params)  # (B, C)
    s_max, mlp_max_cache = _mlp_forward(z_max, params)  # (B, C)
    channel, channel_sigmoid = sigmoid_forward(s_avg + s_max)  # (B, C)
    x1, channel_gate = gate_forward(x, channel[:, :, None, None])  # (B, C, H, W)
    # pass 2: spatial attention from the channels' mean and maximum at each position
    m_mean, mean_c_cache = mean_pool_forward(x1, 1)  # (B, 1, H, W)
    m_max, max_c_cache = max_pool_forward(x1, 1)  # (B, 1, H, W)
    pooled = np.concatenate([m_mean, m_max], axis=1)  # (B, 2, H, W)
    pad = SPATIAL_KERNEL // 2
    scores, conv_cache = conv2d_forward(pooled, params["spatial.weight"], params["spatial.bias"], 1, pad)  # (B, 1, H, W)
    spatial, spatial_sigmoid = sigmoid_forward(scores)  # (B, 1, H, W)
    y, spatial_gate = gate_forward(x1, spatial)  # (B, C, H, W)
    cache = CBAMCache(avg_cache, max_cache, mlp_avg_cache, mlp_max_cache, channel_sigmoid, channel_gate,
                      mean_c_cache, max_c_cache, conv_cache, spatial_sigmoid, spatial_gate, channel, spatial[:, 0])  # fmt: skip
    return y, cache


def cbam_backward(dy, cache):
    """dy (B, C, H, W) -> dx (B, C, H, W), grads."""
    # pass 2 in reverse
    dx1, dspatial = gate_backward(dy, cache.spatial_gate)  # (B, C, H, W), (B, 1, H, W)
    dscores = sigmoid_backward(dspatial, cache.spatial_sigmoid)  # (B, 1, H, W)
    dpooled, dconv_w, dconv_b = conv2d_backward(dscores, cache.conv)  # (B, 2, H, W)
    dx1 = dx1 + mean_pool_backward(dpooled[:, :1], cache.mean_c) + max_pool_backward(dpooled[:, 1:], cache.max_c)
    # pass 1 in reverse
    dx, dchannel = gate_backward(dx1, cache.channel_gate)  # (B, C, H, W), (B, C, 1, 1)
    dsum = sigmoid_backward(dchannel[:, :, 0, 0], cache.channel_sigmoid)  # (B, C)
    dz_avg, grads = _mlp_backward(dsum, cache.mlp_avg)
    dz_max, grads_max = _mlp_backward(dsum, cache.mlp_max)
    for key, value in grads_max.items():  # one MLP served both poolings
        grads[key] = grads[key] + value
    dx = dx + global_avg_pool_backward(dz_avg, cache.avg) + global_max_pool_backward(dz_max, cache.max)
    grads["spatial.weight"], grads["spatial.bias"] = dconv_w, dconv_b
    return dx, grads


def attention_map(cache):
    """(B, H, W): the spatial weights."""
    return cache.attention


def channel_weights(cache):
    """(B, C): the channel weights of the first stage."""
    return cache.channel
