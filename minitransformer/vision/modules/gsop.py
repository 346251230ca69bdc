"""GSoP: global second-order pooling (Gao, Xie, Wang & Li, CVPR 2019, "Global Second-order
Pooling Convolutional Networks"), the channel-attention block GSoP-Net1.

SE squeezes each channel to its mean; GSoP squeezes the map to the covariance *between*
channels, a second-order statistic, and derives the channel weights from it. Sizes:
B batch, C channels, H × W the map, N = H·W positions, C' the reduced width.

    X = ReLU(BN(conv1×1_{C→C'}(x)))                                         (B, C', N)
    Σ = (1/N) · X̃ · X̃ᵀ,   X̃ = X − mean over positions                      (B, C', C')
    r = ReLU(rowconv(Σ))   row i of Σ → 4 numbers by its own weights:
                           a convolution with C' groups on Σ viewed as (B, C', 1, C')  (B, 4C')
    a = σ(W · r + b)                                                         (B, C)
    y = a ⊙ x                                                                (B, C, H, W)

Parameters: C·C' + 2C' (the reduction and its BatchNorm) + 4C'·C' + 4C' (row-wise
convolution) + 4C'·C + C. The paper reduces to C' = 128 channels, more than the 32 of this
book's CNN; C' = C/4 = 8 here.

Backward of the covariance: ∂L/∂X̃ = (1/N)·(∂L/∂Σ + ∂L/∂Σᵀ)·X̃, and the centering's
backward subtracts the mean over positions.

attention_map(cache) is a (B, C).
"""

from typing import NamedTuple

import numpy as np

from ...layers.linear import linear_backward, linear_forward
from ...layers.relu import relu_backward, relu_forward
from ..blocks import conv_bn_relu_backward, conv_bn_relu_forward, conv_bn_relu_init, linear_init, prefixed, sub
from ..conv import conv2d_backward, conv2d_forward
from ..gate import gate_backward, gate_forward, sigmoid_backward, sigmoid_forward

KIND = "channel"
ROW_OUTPUTS = 4


def _reduced(channels, reduction):
    return max(channels // reduction, 2)


def param_count(channels, reduction=4):
    inner = _reduced(channels, reduction)
    return channels * inner + 2 * inner + ROW_OUTPUTS * inner * inner + ROW_OUTPUTS * inner + ROW_OUTPUTS * inner * channels + channels


def gsop_init(rng, channels, dtype=np.float32, reduction=4):
    inner = _reduced(channels, reduction)
    params = prefixed(conv_bn_relu_init(rng, channels, inner, 1, dtype=dtype), "reduce")
    weight = rng.standard_normal((ROW_OUTPUTS * inner, 1, 1, inner)) * np.sqrt(2.0 / inner)
    params["rowconv.weight"] = weight.astype(dtype)
    params["rowconv.bias"] = np.zeros(ROW_OUTPUTS * inner, dtype)
    params.update(prefixed(linear_init(rng, ROW_OUTPUTS * inner, channels, dtype, relu=False), "fc"))
    return params


class GSoPCache(NamedTuple):
    reduce: object
    centered: np.ndarray  # (B, C', N)
    rowconv: object
    relu: object
    fc: object
    sigmoid: object
    gate: object
    covariance: np.ndarray  # (B, C', C')
    attention: np.ndarray  # (B, C)


def gsop_forward(x, params, mode):
    """x (B, C, H, W) -> y (B, C, H, W), cache."""
    batch = x.shape[0]
    reduced, reduce_cache = conv_bn_relu_forward(x, sub(params, "reduce"), mode)  # (B, C', H, W)
    inner = reduced.shape[1]
    features = reduced.reshape(batch, inner, -1)  # (B, C', N)
    n_positions = features.shape[-1]
    centered = features - features.mean(axis=-1, keepdims=True)  # (B, C', N)
    covariance = centered @ centered.transpose(0, 2, 1) / n_positions  # (B, C', C')
    rows, rowconv_cache = conv2d_forward(covariance[:, :, None, :], params["rowconv.weight"], params["rowconv.bias"],
                                         groups=inner)  # (B, 4C', 1, 1)  # fmt: skip
    rows, relu_cache = relu_forward(rows.reshape(batch, -1))  # (B, 4C')
    scores, fc_cache = linear_forward(rows, params["fc.weight"], params["fc.bias"])  # (B, C)
    weights, sigmoid_cache = sigmoid_forward(scores)  # (B, C)
    y, gate_cache = gate_forward(x, weights[:, :, None, None])  # (B, C, H, W)
    cache = GSoPCache(reduce_cache, centered, rowconv_cache, relu_cache, fc_cache, sigmoid_cache, gate_cache,
                      covariance, weights)  # fmt: skip
    return y, cache


def gsop_backward(dy, cache):
    """dy (B, C, H, W) -> dx (B, C, H, W), grads."""
    grads = {}
    dx, dweights = gate_backward(dy, cache.gate)  # (B, C, H, W), (B, C, 1, 1)
    dscores = sigmoid_backward(dweights[:, :, 0, 0], cache.sigmoid)  # (B, C)
    drows, grads["fc.weight"], grads["fc.bias"] = linear_backward(dscores, cache.fc)  # (B, 4C')
    drows = relu_backward(drows, cache.relu)
    batch, inner, n_positions = cache.centered.shape
    dcov, grads["rowconv.weight"], grads["rowconv.bias"] = conv2d_backward(drows.reshape(batch, -1, 1, 1), cache.rowconv)
    dcov = dcov[:, :, 0, :]  # (B, C', C')
    # in the forward pass this was: Σ = X̃·X̃ᵀ / N, then X̃ = X − mean(X)
    dcentered = (dcov + dcov.transpose(0, 2, 1)) @ cache.centered / n_positions  # (B, C', N)
    dfeatures = dcentered - dcentered.mean(axis=-1, keepdims=True)  # (B, C', N)
    dreduced = dfeatures.reshape(batch, inner, *dy.shape[2:])  # (B, C', H, W)
    dx_reduce, reduce_grads = conv_bn_relu_backward(dreduced, cache.reduce)
    grads.update(prefixed(reduce_grads, "reduce"))
    return dx + dx_reduce, grads


def attention_map(cache):
    """(B, C): the weight of every channel."""
    return cache.attention
