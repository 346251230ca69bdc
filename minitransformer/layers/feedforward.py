"""The position-wise feed-forward block (section 3.3): two linear maps with a ReLU between.

    FFN(x) = max(0, x·W_1 + b_1)·W_2 + b_2          W_1 (D, F), W_2 (F, D)

It acts on every position separately and identically; the attention layers are where
positions exchange information. Dropout on the hidden activation follows PyTorch's
TransformerEncoderLayer. Parameters (dict): w_1, b_1, w_2, b_2.
"""

from typing import NamedTuple

from .linear import linear_backward, linear_forward
from .relu import relu_backward, relu_forward


class FeedForwardCache(NamedTuple):
    linear_1: tuple
    relu: object
    dropout: object
    linear_2: tuple
    backend: object  # the kernels object that ran the dropout


def feedforward_forward(x, params, dropout, rng, backend):
    """x (B, T, D) -> y (B, T, D). ``backend``: the kernels object, for its dropout."""
    hidden, cache_1 = linear_forward(x, params["w_1"], params["b_1"])  # (B, T, F)
    hidden, cache_relu = relu_forward(hidden)  # (B, T, F)
    hidden, cache_drop = backend.dropout_forward(hidden, dropout, rng)  # (B, T, F)
    y, cache_2 = linear_forward(hidden, params["w_2"], params["b_2"])  # (B, T, D)
    return y, FeedForwardCache(cache_1, cache_relu, cache_drop, cache_2, backend)


def feedforward_backward(dy, cache):
    """dy (B, T, D) -> dx (B, T, D), grads {w_1, b_1, w_2, b_2}."""
    grads = {}
    dhidden, grads["w_2"], grads["b_2"] = linear_backward(dy, cache.linear_2)  # (B, T, F)
    dhidden = cache.backend.dropout_backward(dhidden, cache.dropout)  # (B, T, F)
    dhidden = relu_backward(dhidden, cache.relu)  # (B, T, F)
    dx, grads["w_1"], grads["b_1"] = linear_backward(dhidden, cache.linear_1)  # (B, T, D)
    return dx, grads
