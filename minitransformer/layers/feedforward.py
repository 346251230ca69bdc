"""The position-wise feed-forward block (section 3.3): two linear maps with a ReLU between.

    FFN(x) = max(0, x·W_1 + b_1)·W_2 + b_2          W_1 (D, F), W_2 (F, D)

It acts on every position separately and identically; the attention layers are where
positions exchange information. Dropout on the hidden activation follows PyTorch's
TransformerEncoderLayer. Parameters (dict): w_1, b_1, w_2, b_2.
"""

from ..backends import compiled_or_reference
from .dropout import dropout_backward as reference_dropout_backward
from .dropout import dropout_forward as reference_dropout_forward
from .linear import linear_backward, linear_forward
from .relu import relu_backward, relu_forward


def feedforward_forward(x, params, dropout, rng, backend=None):
    """x (B, T, D) -> y (B, T, D). ``backend`` may bring a compiled dropout."""
    dropout_forward, dropout_backward = compiled_or_reference(
        backend, "dropout", reference_dropout_forward, reference_dropout_backward
    )
    hidden, cache_1 = linear_forward(x, params["w_1"], params["b_1"])  # (B, T, F)
    hidden, cache_relu = relu_forward(hidden)  # (B, T, F)
    hidden, cache_drop = dropout_forward(hidden, dropout, rng)  # (B, T, F)
    y, cache_2 = linear_forward(hidden, params["w_2"], params["b_2"])  # (B, T, D)
    return y, (cache_1, cache_relu, cache_drop, cache_2, dropout_backward)


def feedforward_backward(dy, cache):
    """dy (B, T, D) -> dx (B, T, D), grads {w_1, b_1, w_2, b_2}."""
    cache_1, cache_relu, cache_drop, cache_2, dropout_backward = cache
    grads = {}
    dhidden, grads["w_2"], grads["b_2"] = linear_backward(dy, cache_2)  # (B, T, F)
    dhidden = dropout_backward(dhidden, cache_drop)  # (B, T, F)
    dhidden = relu_backward(dhidden, cache_relu)  # (B, T, F)
    dx, grads["w_1"], grads["b_1"] = linear_backward(dhidden, cache_1)  # (B, T, D)
    return dx, grads
