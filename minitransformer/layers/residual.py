"""Residual connection + LayerNorm around a sublayer, in both placements.

    post-norm (the paper, section 5.4):  y = LayerNorm(x + Dropout(Sublayer(x)))
    pre-norm  (a config switch):         y = x + Dropout(Sublayer(LayerNorm(x)))

The residual path is why deep stacks train: in the backward the gradient of the sum
reaches x unchanged, ∂L/∂x = dy + (what flows back through the sublayer), so no layer can
cut it off. Pre-norm keeps that identity path clean all the way down; post-norm puts a
LayerNorm on it, which is why post-norm needs a learning-rate warmup.

``sublayer`` is a function h -> (out, cache) and ``sublayer_backward`` a function
dout -> (dh, extra): the gradient for h plus whatever else the sublayer returns (its
parameter gradients), which is passed through.
"""

from ..backends import compiled_or_reference
from .dropout import dropout_backward as reference_dropout_backward
from .dropout import dropout_forward as reference_dropout_forward
from .layernorm import layernorm_backward as reference_layernorm_backward
from .layernorm import layernorm_forward as reference_layernorm_forward


def residual_forward(x, sublayer, norm, pre_norm, dropout, rng, eps=1e-5, backend=None):
    """x (B, T, D), norm {gamma, beta} -> y (B, T, D).

    ``backend`` may bring a compiled LayerNorm and dropout (the Cython ones); the references
    are used otherwise.
    """
    layernorm_forward, layernorm_backward = compiled_or_reference(
        backend, "layernorm", reference_layernorm_forward, reference_layernorm_backward
    )
    dropout_forward, dropout_backward = compiled_or_reference(
        backend, "dropout", reference_dropout_forward, reference_dropout_backward
    )
    if pre_norm:
        h, cache_norm = layernorm_forward(x, norm["gamma"], norm["beta"], eps)  # (B, T, D)
        out, cache_sub = sublayer(h)  # (B, T, D)
        out, cache_drop = dropout_forward(out, dropout, rng)  # (B, T, D)
        y = x + out  # (B, T, D)
    else:
        out, cache_sub = sublayer(x)  # (B, T, D)
        out, cache_drop = dropout_forward(out, dropout, rng)  # (B, T, D)
        y, cache_norm = layernorm_forward(x + out, norm["gamma"], norm["beta"], eps)  # (B, T, D)
    return y, (cache_norm, cache_sub, cache_drop, pre_norm, layernorm_backward, dropout_backward)


def residual_backward(dy, cache, sublayer_backward):
    """dy (B, T, D) -> dx (B, T, D), norm grads {gamma, beta}, the sublayer's extra."""
    cache_norm, cache_sub, cache_drop, pre_norm, layernorm_backward, dropout_backward = cache
    norm_grads = {}
    if pre_norm:
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
