"""Linear layer: an affine map applied to the last axis.

    y = x·W + b            x (..., D_in), W (D_in, D_out), b (D_out,)

Backward, with dy = ∂L/∂y:

    ∂L/∂x = dy·Wᵀ          ∂L/∂W = Σ xᵀ·dy          ∂L/∂b = Σ dy

where the sums run over every leading axis (batch and time): each position used the same
W and b, so their gradients add up.
"""


def linear_forward(x, weight, bias):
    """x (..., D_in), weight (D_in, D_out), bias (D_out,) -> y (..., D_out)."""
    y = x @ weight + bias  # (..., D_out)
    cache = (x, weight)
    return y, cache


def linear_backward(dy, cache):
    """dy (..., D_out) -> dx (..., D_in), dweight (D_in, D_out), dbias (D_out,)."""
    x, weight = cache
    d_in, d_out = weight.shape
    dx = dy @ weight.T  # (..., D_in)
    # fold the leading axes into one so the weight gradient is a single matrix product
    dweight = x.reshape(-1, d_in).T @ dy.reshape(-1, d_out)  # (D_in, D_out)
    dbias = dy.reshape(-1, d_out).sum(axis=0)  # (D_out,)
    return dx, dweight, dbias
