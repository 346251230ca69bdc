"""Non-local block (Wang, Girshick, Gupta & He, CVPR 2018, "Non-local Neural Networks").

Self-attention over the pixels of a feature map, the Transformer's core applied to an image.
Sizes: B batch, C channels, H × W the map, N = H·W positions, S key positions (S = N
here; ANLNet, anl.py, samples fewer), C' = C / 2 the embedding width.

    θ = W_θ x,  φ = W_φ x,  g = W_g x          1×1 convolutions C → C'        (B, N, C') each
    y_i = Σ_j softmax_j(θ_i · φ_j / √C') g_j   the "embedded Gaussian"        (B, N, C')
    z = x + W_z y                              1×1 convolution C' → C         (B, C, H, W)

In the f(g(x), x) form, g(x) is the (N, N) weight matrix and f is its product with the
values followed by the residual. The weights come from the project's attention core
(minitransformer/vision/pixel_attention.py), so they run on the NumPy, Cython or CuPy
backend given in ``mode.backend``. The paper's exp(θᵀφ) has no 1/√C'; the scale is
absorbed by W_θ (see pixel_attention.py).

W_z starts at zero (the paper initializes the BatchNorm after W_z at zero to the same
effect), so a new block is the identity and the network it joins is unchanged.
Parameters: 3·(C·C' + C') + C'·C + C. Cost: O(N²·C') per image.

attention_map(cache) is the weight each position receives, averaged over the queries
(B, H, W); attention_probs(cache) gives the full (B, N, S) matrix.
"""

from typing import NamedTuple

import numpy as np

from ...layers.linear import linear_backward, linear_forward
from ..blocks import linear_init, prefixed, to_map, to_sequence
from ..pixel_attention import pixel_attention_backward, pixel_attention_forward

KIND = "spatial"


def param_count(channels):
    inner = max(channels // 2, 1)
    return 3 * (channels * inner + inner) + inner * channels + channels


def non_local_init(rng, channels, dtype=np.float32):
    inner = max(channels // 2, 1)
    params = {}
    for name in ("theta", "phi", "g"):
        params.update(prefixed(linear_init(rng, channels, inner, dtype, relu=False), name))
    params["out.weight"] = np.zeros((inner, channels), dtype)
    params["out.bias"] = np.zeros(channels, dtype)
    return params


class NonLocalCache(NamedTuple):
    theta: object
    phi: object
    g: object
    attention_core: object
    out: object
    sampler: object  # None, or the (S, N) matrix that pooled keys and values (ANLNet)
    shape: tuple
    probs: np.ndarray  # (B, N, S)
    attention: np.ndarray  # (B, H, W)


def non_local_forward(x, params, mode, sampler=None):
    """x (B, C, H, W) -> z (B, C, H, W), cache.

    ``sampler``, a (S, N) matrix, replaces the keys and values by S weighted averages of
    positions (used by ANLNet; None keeps all N positions as keys)."""
    batch, channels, height, width = x.shape
    xs = to_sequence(x)  # (B, N, C)
    # pass 1: the three embeddings
    theta, theta_cache = linear_forward(xs, params["theta.weight"], params["theta.bias"])  # (B, N, C')
    phi, phi_cache = linear_forward(xs, params["phi.weight"], params["phi.bias"])  # (B, N, C')
    g, g_cache = linear_forward(xs, params["g.weight"], params["g.bias"])  # (B, N, C')
    if sampler is not None:
        phi = sampler @ phi  # (B, S, C')
        g = sampler @ g  # (B, S, C')
    # pass 2: attention over positions, by the project's core
    y, probs, core_cache = pixel_attention_forward(theta, phi, g, mode.backend)  # (B, N, C'), (B, N, S)
    # pass 3: back to C channels, and the residual
    z, out_cache = linear_forward(y, params["out.weight"], params["out.bias"])  # (B, N, C)
    out = x + to_map(z, height, width)  # (B, C, H, W)
    received = probs.mean(axis=1)  # (B, S): the weight each key receives, averaged over queries
    if sampler is not None:
        received = received @ sampler  # (B, N): spread over the positions each key averaged
    cache = NonLocalCache(theta_cache, phi_cache, g_cache, core_cache, out_cache, sampler, x.shape, probs,
                          received.reshape(batch, height, width))  # fmt: skip
    return out, cache


def non_local_backward(dout, cache):
    """dout (B, C, H, W) -> dx (B, C, H, W), grads."""
    height, width = cache.shape[2:]
    grads = {}
    # pass 3 in reverse
    dy, grads["out.weight"], grads["out.bias"] = linear_backward(to_sequence(dout), cache.out)  # (B, N, C')
    # pass 2 in reverse
    dtheta, dphi, dg = pixel_attention_backward(dy, cache.attention_core)  # (B, N, C'), (B, S, C') twice
    if cache.sampler is not None:
        # in the forward pass this was: φ_s = P·φ, so ∂L/∂φ = Pᵀ·∂L/∂φ_s
        dphi = cache.sampler.T @ dphi  # (B, N, C')
        dg = cache.sampler.T @ dg  # (B, N, C')
    # pass 1 in reverse: x fed the three embeddings and the residual
    dxs, grads["theta.weight"], grads["theta.bias"] = linear_backward(dtheta, cache.theta)
    dxs_phi, grads["phi.weight"], grads["phi.bias"] = linear_backward(dphi, cache.phi)
    dxs_g, grads["g.weight"], grads["g.bias"] = linear_backward(dg, cache.g)
    dx = dout + to_map(dxs + dxs_phi + dxs_g, height, width)
    return dx, grads


def attention_map(cache):
    """(B, H, W): the attention each position receives, averaged over all queries."""
    return cache.attention


def attention_probs(cache):
    """(B, N, S): the weights of every query over every key."""
    return cache.probs
