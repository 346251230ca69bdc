"""Residual connection + LayerNorm around a sublayer, in both placements.

    post-norm (the paper, section 5.4):  y = LayerNorm(x + Dropout(Sublayer(x)))
    pre-norm  (a config switch):         y = x + Dropout(Sublayer(LayerNorm(x)))

The residual path is why deep stacks train: in the backward the gradient of the sum
reaches x unchanged, ∂L/∂x = dy + (what flows back through the sublayer), so no layer can
cut it off. Pre-norm keeps that identity path clean all the way down; post-norm puts a
LayerNorm on it, which is why post-norm needs a learning-rate warmup.

``sublayer`` is a function h -> (out, cache), and ``sublayer_backward(dout, cache)`` its
backward -> (dh, extra): the gradient for h plus whatever else the sublayer returns (its
parameter gradients), which is passed through.
"""

from typing import NamedTuple


class ResidualCache(NamedTuple):
    norm: tuple  # the LayerNorm's cache
    sublayer: object  # the sublayer's cache (multihead's holds the attention weights)
    dropout: object  # the dropout's cache
    pre_norm: bool
    backend: object  # the kernels object that ran LayerNorm and dropout


def residual_forward(x, sublayer, norm, pre_norm, dropout, rng, eps, backend):
    """x (B, T, D), norm {gamma, beta} -> y (B, T, D).

    ``backend`` is the kernels object: its layernorm_* and dropout_* run here (compiled on
    the Cython backend, the references of layernorm.py and dropout.py on NumPy's).
    """
    layernorm_forward, dropout_forward = backend.layernorm_forward, backend.dropout_forward
    if pre_norm:
        h, cache_norm = layernorm_forward(x, norm["gamma"], norm["beta"], eps)  # (B, T, D)
        out, cache_sub = sublayer(h)  # (B, T, D)
        out, cache_drop = dropout_forward(out, dropout, rng)  # (B, T, D)
        y = x + out  # (B, T, D)
    else:
        out, cache_sub = sublayer(x)  # (B, T, D)
        out, cache_drop = dropout_forward(out, dropout, rng)  # (B, T, D)
        y, cache_norm = layernorm_forward(x + out, norm["gamma"], norm["beta"], eps)  # (B, T, D)
    return y, ResidualCache(cache_norm, cache_sub, cache_drop, pre_norm, backend)


def residual_backward(dy, cache, sublayer_backward):
    """dy (B, T, D) -> dx (B, T, D), norm grads {gamma, beta}, the sublayer's extra."""
    cache_norm, cache_sub, cache_drop = cache.norm, cache.sublayer, cache.dropout
    layernorm_backward, dropout_backward = cache.backend.layernorm_backward, cache.backend.dropout_backward
    norm_grads = {}
    if cache.pre_norm:
        # in the forward pass this was: y = x + dropout(sublayer(layernorm(x)))
        dout = dropout_backward(dy, cache_drop)  # (B, T, D)
        dh, extra = sublayer_backward(dout, cache_sub)  # (B, T, D)
        dx_norm, norm_grads["gamma"], norm_grads["beta"] = layernorm_backward(dh, cache_norm)
        dx = dy + dx_norm  # (B, T, D): the identity path plus the sublayer path
    else:
        # in the forward pass this was: y = layernorm(x + dropout(sublayer(x)))
        dsum, norm_grads["gamma"], norm_grads["beta"] = layernorm_backward(dy, cache_norm)
        dout = dropout_backward(dsum, cache_drop)  # (B, T, D)
        dh, extra = sublayer_backward(dout, cache_sub)  # (B, T, D)
        dx = dsum + dh  # (B, T, D)
    return dx, norm_grads, extra
