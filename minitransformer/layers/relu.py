"""ReLU, the feed-forward block's activation.

    y = max(0, x)            ∂L/∂x = dy ⊙ [x > 0]
"""

from ..arrays import array_module


def relu_forward(x):
    """x (any shape) -> y (same shape)."""
    xp = array_module(x)
    y = xp.maximum(x, 0)
    return y, y  # y > 0 exactly where x > 0, so the output is all the backward needs


def relu_backward(dy, cache):
    """dy (any shape) -> dx (same shape)."""
    y = cache
    return dy * (y > 0)
