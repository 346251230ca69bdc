"""Linear layer: an affine map applied to the last axis.

    y = x·W + b            x (..., D_in), W (D_in, D_out), b (D_out,)

Backward, with dy = ∂L/∂y:

    ∂L/∂x = dy·Wᵀ          ∂L/∂W = Σ xᵀ·dy          ∂L/∂b = Σ dy

where the sums run over every leading axis (batch and time): each position used the same
W and b, so their gradients add up.
"""


def linear_forward(x, weight, bias):
    """x (..., D_in), weight (D_in, D_out), bias (D_out,) -> y (..., D_out)."""
    d_in, d_out = weight.shape
    # one tall (B*T, D_in) matrix times W: a single BLAS call, many times faster than
    # NumPy's batched matmul, which would multiply B small (T, D_in) matrices one by one
    x_2d = x.reshape(-1, d_in)  # (B*T, D_in)
    y = (x_2d @ weight + bias).reshape(*x.shape[:-1], d_out)  # (..., D_out)
    cache = (x_2d, weight, x.shape)
    return y, cache


def linear_backward(dy, cache):
    """dy (..., D_out) -> dx (..., D_in), dweight (D_in, D_out), dbias (D_out,)."""
    x_2d, weight, x_shape = cache
    d_in, d_out = weight.shape
    dy_2d = dy.reshape(-1, d_out)  # (B*T, D_out)
    dx = (dy_2d @ weight.T).reshape(x_shape)  # (..., D_in)
    dweight = x_2d.T @ dy_2d  # (D_in, D_out): the sum over positions is inside the product
    dbias = dy_2d.sum(axis=0)  # (D_out,)
    return dx, dweight, dbias
