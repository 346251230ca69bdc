"""GC: the global context block (Cao, Xu, Lin, Wei & Hu, ICCV 2019 workshops, "GCNet:
Non-local Networks Meet Squeeze-Excitation Networks and Beyond").

The paper observed that a non-local block's attention maps are nearly the same for every
query, and kept one: a single query-independent softmax over positions pools a global
context vector, which is transformed like SE's and added to every position. Sizes: B batch,
C channels, H × W the map, N = H·W positions, R = C / r.

    context:    w = softmax_j(W_k · x_j)               one 1×1 convolution C → 1      (B, N)
                c = Σ_j w_j x_j                                                     (B, C)
    transform:  t = W₂ · ReLU(LN(W₁ · c + b₁)) + b₂                                  (B, C)
    fusion:     y_j = x_j + t                          the same t at every position  (B, C, H, W)

The context pooling is attention with one query: the scores are the keys W_k·x_j against a
constant query 1 (scale 1/√1), and the values are the pixels themselves. It runs on the
project's attention core (pixel_attention.py, mode.backend). W₂ starts at zero, so a new
block is the identity. W_k has no bias: a softmax ignores a shift common to all positions.
Parameters: C (W_k) + C·R + R + 2R (LayerNorm) + R·C + C. The paper uses r = 16; r = 4
here on 32 channels.

attention_map(cache) is w (B, H, W).
"""

from typing import NamedTuple

import numpy as np

from ...layers.layernorm import layernorm_backward, layernorm_forward
from ...layers.linear import linear_backward, linear_forward
from ...layers.relu import relu_backward, relu_forward
from ..blocks import linear_init, prefixed, to_sequence
from ..pixel_attention import pixel_attention_backward, pixel_attention_forward

KIND = "spatial"


def param_count(channels, reduction=4):
    hidden = max(channels // reduction, 1)
    return channels + channels * hidden + hidden + 2 * hidden + hidden * channels + channels


def gc_init(rng, channels, dtype=np.float32, reduction=4):
    hidden = max(channels // reduction, 1)
    params = {"key.weight": (rng.standard_normal((channels, 1)) / np.sqrt(channels)).astype(dtype)}
    params.update(prefixed(linear_init(rng, channels, hidden, dtype), "fc1"))
    params["ln.gamma"] = np.ones(hidden, dtype)
    params["ln.beta"] = np.zeros(hidden, dtype)
    params["fc2.weight"] = np.zeros((hidden, channels), dtype)
    params["fc2.bias"] = np.zeros(channels, dtype)
    return params


class GCCache(NamedTuple):
    xs: np.ndarray  # (B, N, C)
    key_weight: np.ndarray  # (C, 1)
    attention_core: object
    fc1: object
    ln: object
    relu: object
    fc2: object
    attention: np.ndarray  # (B, H, W)


def gc_forward(x, params, mode):
    """x (B, C, H, W) -> y (B, C, H, W), cache."""
    batch, channels, height, width = x.shape
    xs = to_sequence(x)  # (B, N, C)
    # context: one softmax over positions, through the attention core
    keys = xs @ params["key.weight"]  # (B, N, 1)
    query = np.ones((batch, 1, 1), dtype=x.dtype)  # (B, 1, 1)
    context, probs, core_cache = pixel_attention_forward(query, keys, xs, mode.backend)  # (B, 1, C), (B, 1, N)
    # transform: SE's bottleneck with a LayerNorm
    hidden, fc1_cache = linear_forward(context[:, 0], params["fc1.weight"], params["fc1.bias"])  # (B, R)
    hidden, ln_cache = layernorm_forward(hidden, params["ln.gamma"], params["ln.beta"])
    hidden, relu_cache = relu_forward(hidden)
    transform, fc2_cache = linear_forward(hidden, params["fc2.weight"], params["fc2.bias"])  # (B, C)
    # fusion: broadcast addition
    y = x + transform[:, :, None, None]  # (B, C, H, W)
    cache = GCCache(xs, params["key.weight"], core_cache, fc1_cache, ln_cache, relu_cache, fc2_cache,
                    probs[:, 0].reshape(batch, height, width))  # fmt: skip
    return y, cache


def gc_backward(dy, cache):
    """dy (B, C, H, W) -> dx (B, C, H, W), grads."""
    grads = {}
    dtransform = dy.sum(axis=(2, 3))  # (B, C): t was added at every position
    dhidden, grads["fc2.weight"], grads["fc2.bias"] = linear_backward(dtransform, cache.fc2)
    dhidden = relu_backward(dhidden, cache.relu)
    dhidden, grads["ln.gamma"], grads["ln.beta"] = layernorm_backward(dhidden, cache.ln)
    dcontext, grads["fc1.weight"], grads["fc1.bias"] = linear_backward(dhidden, cache.fc1)  # (B, C)
    _, dkeys, dvalues = pixel_attention_backward(dcontext[:, None], cache.attention_core)  # (B, N, 1), (B, N, C)
    grads["key.weight"] = np.einsum("bnc,bnk->ck", cache.xs, dkeys)  # (C, 1)
    dxs = dvalues + dkeys @ cache.key_weight.T  # (B, N, C): x was both the keys' source and the values
    batch, channels, height, width = dy.shape
    dx = dy + dxs.transpose(0, 2, 1).reshape(batch, channels, height, width)
    return dx, grads


def attention_map(cache):
    """(B, H, W): the context weights w."""
    return cache.attention
