"""BAM: Bottleneck Attention Module (Park, Woo, Lee & Kweon, BMVC 2018).

Channel and spatial attention in parallel, added before one sigmoid, applied as a residual.
Sizes: B batch, C channels, H × W the map, R = C / r the bottleneck.

    channel:  M_c = BN(W₁ · ReLU(W₀ · GAP(x) + b₀) + b₁)                             (B, C)
    spatial:  M_s = conv1×1_{R→1}(CBR_d(CBR_d(CBR_{1×1, C→R}(x))))                   (B, 1, H, W)
              CBR_d = 3×3 convolution with dilation d, BatchNorm, ReLU
    g(x):     M = σ(M_c + M_s)          broadcast to                                   (B, C, H, W)
    f:        y = x + x ⊙ M             the residual keeps x whatever M says

Parameters: C·R + R + R·C + C + 2C (channel branch, with its BatchNorm)
          + C·R + 2R + 2·(9·R² + 2R) + R + 1 (spatial branch; the convolutions before a
            BatchNorm have no bias, since β replaces it).
The paper uses r = 16 and d = 4 on maps of 56×56 and smaller. On 16×16 maps with 32
channels that would leave 2 channels and taps 4 pixels apart, so r = 4 and d = 2 here.

attention_map(cache) is M averaged over the channels (B, H, W): for a fixed channel M is
monotone in M_s, so its mean ranks positions as M_s does.
"""

from typing import NamedTuple

import numpy as np

from ...layers.linear import linear_backward, linear_forward
from ...layers.relu import relu_backward, relu_forward
from ..batchnorm import batchnorm_backward, batchnorm_forward, batchnorm_init
from ..blocks import conv_bn_relu_backward, conv_bn_relu_forward, conv_bn_relu_init, linear_init, prefixed, sub
from ..conv import conv2d_backward, conv2d_forward, conv_init
from ..gate import gate_backward, gate_forward, sigmoid_backward, sigmoid_forward
from ..global_pool import global_avg_pool_backward, global_avg_pool_forward

KIND = "spatial"


def param_count(channels, reduction=4):
    hidden = max(channels // reduction, 1)
    channel_branch = channels * hidden + hidden + hidden * channels + channels + 2 * channels
    spatial_branch = channels * hidden + 2 * hidden + 2 * (9 * hidden * hidden + 2 * hidden) + hidden + 1
    return channel_branch + spatial_branch


def bam_init(rng, channels, dtype=np.float32, reduction=4):
    hidden = max(channels // reduction, 1)
    params = prefixed(linear_init(rng, channels, hidden, dtype), "fc0")
    params.update(prefixed(linear_init(rng, hidden, channels, dtype, relu=False), "fc1"))
    params.update(prefixed(batchnorm_init(channels, dtype), "channel_bn"))
    params.update(prefixed(conv_bn_relu_init(rng, channels, hidden, 1, dtype=dtype), "reduce"))
    params.update(prefixed(conv_bn_relu_init(rng, hidden, hidden, 3, dtype=dtype), "dilated1"))
    params.update(prefixed(conv_bn_relu_init(rng, hidden, hidden, 3, dtype=dtype), "dilated2"))
    params["spatial_out.weight"] = conv_init(rng, 1, hidden, 1, dtype) * 0.5
    params["spatial_out.bias"] = np.zeros(1, dtype)
    return params


class BAMCache(NamedTuple):
    pool: object
    fc0: object
    relu: object
    fc1: object
    channel_bn: object
    reduce: object
    dilated1: object
    dilated2: object
    spatial_out: object
    sigmoid: object
    gate: object
    attention: np.ndarray  # (B, H, W)


def bam_forward(x, params, mode, dilation=2):
    """x (B, C, H, W) -> y (B, C, H, W), cache."""
    # pass 1: the channel branch
    z, pool_cache = global_avg_pool_forward(x)  # (B, C)
    hidden, fc0_cache = linear_forward(z, params["fc0.weight"], params["fc0.bias"])  # (B, R)
    hidden, relu_cache = relu_forward(hidden)
    channel, fc1_cache = linear_forward(hidden, params["fc1.weight"], params["fc1.bias"])  # (B, C)
    bn = sub(params, "channel_bn")
    channel, bn_cache = batchnorm_forward(channel, bn["gamma"], bn["beta"], bn["running_mean"], bn["running_var"], mode.training)
    # pass 2: the spatial branch, a bottleneck of dilated convolutions
    s, reduce_cache = conv_bn_relu_forward(x, sub(params, "reduce"), mode)  # (B, R, H, W)
    s, dilated1_cache = conv_bn_relu_forward(s, sub(params, "dilated1"), mode, padding=dilation, dilation=dilation)
    s, dilated2_cache = conv_bn_relu_forward(s, sub(params, "dilated2"), mode, padding=dilation, dilation=dilation)
    spatial, out_cache = conv2d_forward(s, params["spatial_out.weight"], params["spatial_out.bias"])  # (B, 1, H, W)
    # pass 3: one sigmoid over the broadcast sum, applied as a residual
    weights, sigmoid_cache = sigmoid_forward(channel[:, :, None, None] + spatial)  # (B, C, H, W)
    gated, gate_cache = gate_forward(x, weights)  # (B, C, H, W)
    y = x + gated
    cache = BAMCache(pool_cache, fc0_cache, relu_cache, fc1_cache, bn_cache, reduce_cache, dilated1_cache,
                     dilated2_cache, out_cache, sigmoid_cache, gate_cache, weights.mean(axis=1))  # fmt: skip
    return y, cache


def bam_backward(dy, cache):
    """dy (B, C, H, W) -> dx (B, C, H, W), grads."""
    # pass 3 in reverse: y = x + M ⊙ x
    dx_gate, dweights = gate_backward(dy, cache.gate)  # (B, C, H, W) twice
    dx = dy + dx_gate
    dsum = sigmoid_backward(dweights, cache.sigmoid)  # (B, C, H, W)
    dchannel = dsum.sum(axis=(2, 3))  # (B, C): M_c was broadcast over positions
    dspatial = dsum.sum(axis=1, keepdims=True)  # (B, 1, H, W): M_s was broadcast over channels
    # pass 2 in reverse
    grads = {}
    ds, dw_out, db_out = conv2d_backward(dspatial, cache.spatial_out)
    grads["spatial_out.weight"], grads["spatial_out.bias"] = dw_out, db_out
    for name in ("dilated2", "dilated1", "reduce"):
        ds, block_grads = conv_bn_relu_backward(ds, getattr(cache, name))
        grads.update(prefixed(block_grads, name))
    dx = dx + ds
    # pass 1 in reverse
    dchannel, dgamma, dbeta = batchnorm_backward(dchannel, cache.channel_bn)
    grads["channel_bn.gamma"], grads["channel_bn.beta"] = dgamma, dbeta
    dhidden, grads["fc1.weight"], grads["fc1.bias"] = linear_backward(dchannel, cache.fc1)
    dz, grads["fc0.weight"], grads["fc0.bias"] = linear_backward(relu_backward(dhidden, cache.relu), cache.fc0)
    dx = dx + global_avg_pool_backward(dz, cache.pool)
    return dx, grads


def attention_map(cache):
    """(B, H, W): M averaged over the channels."""
    return cache.attention
