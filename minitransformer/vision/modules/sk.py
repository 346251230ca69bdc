"""SK: Selective Kernel convolution (Li, Wang, Hu & Yang, CVPR 2019, "Selective Kernel Networks").

Branch attention: M convolutions with different receptive fields, and a softmax *across
the branches* that picks, channel by channel, how much of each to keep. Sizes: B batch,
C channels, H × W the map, M branches, G groups, R the width of the squeeze.

    split:   U_m = ReLU(BN(conv3×3_{dilation m, groups G}(x)))     m = 1 … M      (B, C, H, W) each
             (dilation 2 gives the 5×5 receptive field of the paper's second branch)
    fuse:    s = GAP(Σ_m U_m)                                                      (B, C)
             z = ReLU(W_z · s + b_z)                                               (B, R)
    select:  a[:, m, c] = softmax over m of (A_m · z)[c]                           (B, M, C)
    f:       V = Σ_m a_m ⊙ U_m,   y = x + V                                         (B, C, H, W)

g(x) is a; unlike SE's sigmoid, the weights of one channel sum to 1 over the branches.
Parameters: M·(C·(C/G)·9 + 2C) (the branches with their BatchNorm) + C·R + R + M·R·C + M·C.
The paper uses G = 32, R = max(C/16, 32), and BatchNorm in the squeeze; with 32 channels
here G = 4, R = max(C/4, 8), a bias instead of that BatchNorm, and a residual around the
unit (the SK unit replaces the 3×3 convolution inside a residual bottleneck in the paper).

attention_map(cache) is a (B, M, C); channel_weights(cache) is a[:, 0] (B, C), the share
of the 3×3 branch in each channel.
"""

from typing import NamedTuple

import numpy as np

from ...layers.linear import linear_backward, linear_forward
from ...layers.relu import relu_backward, relu_forward
from ..blocks import conv_bn_relu_backward, conv_bn_relu_forward, conv_bn_relu_init, linear_init, prefixed, sub
from ..gate import softmax_backward, softmax_forward
from ..global_pool import global_avg_pool_backward, global_avg_pool_forward

KIND = "branch"
N_BRANCHES = 2


def _sizes(channels, groups, reduction):
    if channels % groups:
        raise ValueError(f"groups={groups} must divide channels={channels}")
    return max(channels // reduction, 8)


def param_count(channels, groups=4, reduction=4):
    hidden = _sizes(channels, groups, reduction)
    branches = N_BRANCHES * (channels * (channels // groups) * 9 + 2 * channels)
    return branches + channels * hidden + hidden + N_BRANCHES * hidden * channels + N_BRANCHES * channels


def sk_init(rng, channels, dtype=np.float32, groups=4, reduction=4):
    hidden = _sizes(channels, groups, reduction)
    params = {}
    for m in range(N_BRANCHES):
        params.update(prefixed(conv_bn_relu_init(rng, channels, channels, 3, groups, dtype), f"branch{m}"))
    params.update(prefixed(linear_init(rng, channels, hidden, dtype), "squeeze"))
    params["select.weight"] = (rng.standard_normal((hidden, N_BRANCHES * channels)) / np.sqrt(hidden)).astype(dtype)
    params["select.bias"] = np.zeros(N_BRANCHES * channels, dtype)
    return params


class SKCache(NamedTuple):
    branches: list
    u: np.ndarray  # (B, M, C, H, W)
    pool: object
    squeeze: object
    relu: object
    select: object
    softmax: object
    attention: np.ndarray  # (B, M, C)


def sk_forward(x, params, mode, groups=4):
    """x (B, C, H, W) -> y (B, C, H, W), cache."""
    batch, channels = x.shape[:2]
    # split: one branch per dilation
    outputs, branch_caches = [], []
    for m in range(N_BRANCHES):
        u_m, cache_m = conv_bn_relu_forward(x, sub(params, f"branch{m}"), mode, padding=m + 1, dilation=m + 1, groups=groups)
        outputs.append(u_m)
        branch_caches.append(cache_m)
    u = np.stack(outputs, axis=1)  # (B, M, C, H, W)
    # fuse: squeeze the sum of the branches
    s, pool_cache = global_avg_pool_forward(u.sum(axis=1))  # (B, C)
    z, squeeze_cache = linear_forward(s, params["squeeze.weight"], params["squeeze.bias"])  # (B, R)
    z, relu_cache = relu_forward(z)
    # select: a softmax across the branches, for each channel
    logits, select_cache = linear_forward(z, params["select.weight"], params["select.bias"])  # (B, M·C)
    weights, softmax_cache = softmax_forward(logits.reshape(batch, N_BRANCHES, channels), axis=1)  # (B, M, C)
    v = (weights[:, :, :, None, None] * u).sum(axis=1)  # (B, C, H, W)
    cache = SKCache(branch_caches, u, pool_cache, squeeze_cache, relu_cache, select_cache, softmax_cache, weights)
    return x + v, cache


def sk_backward(dy, cache):
    """dy (B, C, H, W) -> dx (B, C, H, W), grads."""
    u, weights = cache.u, cache.attention
    batch = dy.shape[0]
    # in the forward pass this was: V = Σ_m a_m ⊙ U_m
    du = weights[:, :, :, None, None] * dy[:, None]  # (B, M, C, H, W)
    dweights = (dy[:, None] * u).sum(axis=(3, 4))  # (B, M, C)
    dlogits = softmax_backward(dweights, cache.softmax).reshape(batch, -1)  # (B, M·C)
    grads = {}
    dz, grads["select.weight"], grads["select.bias"] = linear_backward(dlogits, cache.select)
    ds, grads["squeeze.weight"], grads["squeeze.bias"] = linear_backward(relu_backward(dz, cache.relu), cache.squeeze)
    # the squeeze read Σ_m U_m: every branch gets the same share
    du = du + global_avg_pool_backward(ds, cache.pool)[:, None]  # (B, M, C, H, W)
    dx = dy.copy()  # the residual
    for m in range(N_BRANCHES):
        dx_m, branch_grads = conv_bn_relu_backward(np.ascontiguousarray(du[:, m]), cache.branches[m])
        dx += dx_m
        grads.update(prefixed(branch_grads, f"branch{m}"))
    return dx, grads


def attention_map(cache):
    """(B, M, C): the weight of each branch in each channel (summing to 1 over M)."""
    return cache.attention


def channel_weights(cache):
    """(B, C): the weight of the 3×3 branch in each channel."""
    return cache.attention[:, 0]
