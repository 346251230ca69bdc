"""DA-Net: the position and channel attention modules of the Dual Attention Network (Fu, Liu,
Tian, Li, Bao, Fang & Lu, CVPR 2019, "Dual Attention Network for Scene Segmentation").

Sizes: B batch, C channels, H × W the map, N = H·W positions, Cq = C / 8.

Position attention module (PAM): self-attention over pixels, as in Non-local, but the
values keep all C channels and a learned scale α (starting at 0) weighs the result.

    q = W_q x, k = W_k x (C → Cq),   v = W_v x (C → C)                          1×1 convolutions
    P_i = Σ_j softmax_j(q_i · k_j / √Cq) v_j                                    (B, N, C)

Channel attention module (CAM): the same over channels, with no projection at all; each
channel of X (B, C, N) attends to every channel:

    E = X · Xᵀ                                                                   (B, C, C)
    A = softmax over the row of (max(E) − E)   =   softmax(−E)                   (B, C, C)
    Q = A · X                                                                    (B, C, N)

(the paper subtracts E from its row maximum; a softmax ignores the common shift, so this is
softmax(−E): channels that correlate *less* get more weight).

    y = x + α · P + β · Q                       α = β = 0 at the start

The paper runs the two modules on separate branches of the segmentation head, each with
its own convolutions, and sums the outputs; here they share the input and one residual.
PAM goes through the project's attention core (pixel_attention.py, mode.backend).
Parameters: 2·(C·Cq + Cq) + C² + C + 2. Cost: O(N²·C) for PAM, O(C²·N) for CAM.

attention_map(cache) is PAM's weight received per position, averaged over queries (B, H, W);
channel_attention(cache) is CAM's A (B, C, C).
"""

from typing import NamedTuple

import numpy as np

from ...layers.linear import linear_backward, linear_forward
from ..blocks import linear_init, prefixed, to_map, to_sequence
from ..gate import softmax_backward, softmax_forward
from ..pixel_attention import pixel_attention_backward, pixel_attention_forward

KIND = "spatial"


def _query_width(channels):
    return max(channels // 8, 1)


def param_count(channels):
    inner = _query_width(channels)
    return 2 * (channels * inner + inner) + channels * channels + channels + 2


def danet_init(rng, channels, dtype=np.float32):
    inner = _query_width(channels)
    params = prefixed(linear_init(rng, channels, inner, dtype, relu=False), "pam_q")
    params.update(prefixed(linear_init(rng, channels, inner, dtype, relu=False), "pam_k"))
    params.update(prefixed(linear_init(rng, channels, channels, dtype, relu=False), "pam_v"))
    params["alpha"] = np.zeros(1, dtype)
    params["beta"] = np.zeros(1, dtype)
    return params


class DACache(NamedTuple):
    q: object
    k: object
    v: object
    attention_core: object
    position_out: np.ndarray  # (B, C, H, W) P
    x_flat: np.ndarray  # (B, C, N)
    softmax: object
    channel_out: np.ndarray  # (B, C, H, W) Q
    alpha: np.ndarray
    beta: np.ndarray
    attention: np.ndarray  # (B, H, W)
    channel_attention: np.ndarray  # (B, C, C)


def danet_forward(x, params, mode):
    """x (B, C, H, W) -> y (B, C, H, W), cache."""
    batch, channels, height, width = x.shape
    xs = to_sequence(x)  # (B, N, C)
    # position attention, by the project's core
    q, q_cache = linear_forward(xs, params["pam_q.weight"], params["pam_q.bias"])  # (B, N, Cq)
    k, k_cache = linear_forward(xs, params["pam_k.weight"], params["pam_k.bias"])  # (B, N, Cq)
    v, v_cache = linear_forward(xs, params["pam_v.weight"], params["pam_v.bias"])  # (B, N, C)
    position, probs, core_cache = pixel_attention_forward(q, k, v, mode.backend)  # (B, N, C), (B, N, N)
    position = to_map(position, height, width)  # (B, C, H, W)
    # channel attention, with no parameters
    x_flat = x.reshape(batch, channels, height * width)  # (B, C, N)
    energy = x_flat @ x_flat.transpose(0, 2, 1)  # (B, C, C)
    channel_weights, softmax_cache = softmax_forward(-energy, axis=-1)  # (B, C, C)
    channel = (channel_weights @ x_flat).reshape(x.shape)  # (B, C, H, W)
    alpha, beta = params["alpha"], params["beta"]
    y = x + alpha[0] * position + beta[0] * channel
    cache = DACache(q_cache, k_cache, v_cache, core_cache, position, x_flat, softmax_cache, channel, alpha, beta,
                    probs.mean(axis=1).reshape(batch, height, width), channel_weights)  # fmt: skip
    return y, cache


def danet_backward(dy, cache):
    """dy (B, C, H, W) -> dx (B, C, H, W), grads."""
    batch, channels, height, width = dy.shape
    grads = {
        "alpha": np.array([(dy * cache.position_out).sum()], dtype=dy.dtype),
        "beta": np.array([(dy * cache.channel_out).sum()], dtype=dy.dtype),
    }
    dx = dy.copy()  # the residual
    # channel attention in reverse; in the forward pass this was: Q = A·X, A = softmax(−X·Xᵀ)
    dchannel = cache.beta[0] * dy.reshape(batch, channels, -1)  # (B, C, N)
    x_flat, channel_weights = cache.x_flat, cache.channel_attention
    dweights = dchannel @ x_flat.transpose(0, 2, 1)  # (B, C, C)
    dx_flat = channel_weights.transpose(0, 2, 1) @ dchannel  # (B, C, N)
    denergy = -softmax_backward(dweights, cache.softmax)  # (B, C, C)
    dx_flat = dx_flat + (denergy + denergy.transpose(0, 2, 1)) @ x_flat  # E = X·Xᵀ uses X twice
    dx += dx_flat.reshape(dy.shape)
    # position attention in reverse
    dposition = to_sequence(cache.alpha[0] * dy)  # (B, N, C)
    dq, dk, dv = pixel_attention_backward(dposition, cache.attention_core)
    dxs, grads["pam_q.weight"], grads["pam_q.bias"] = linear_backward(dq, cache.q)
    dxs_k, grads["pam_k.weight"], grads["pam_k.bias"] = linear_backward(dk, cache.k)
    dxs_v, grads["pam_v.weight"], grads["pam_v.bias"] = linear_backward(dv, cache.v)
    dx += to_map(dxs + dxs_k + dxs_v, height, width)
    return dx, grads


def attention_map(cache):
    """(B, H, W): the position attention each pixel receives, averaged over the queries."""
    return cache.attention


def channel_attention(cache):
    """(B, C, C): the channel attention A of CAM."""
    return cache.channel_attention
