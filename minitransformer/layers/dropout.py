"""Inverted dropout, driven by an explicit random generator.

In training each unit is kept with probability 1 − p and scaled by 1/(1 − p):

    y = x ⊙ m / (1 − p),   m ~ Bernoulli(1 − p)

so the expected activation is unchanged and evaluation is the identity, with no rescaling.
The backward applies the same mask: ∂L/∂x = dy ⊙ m / (1 − p).

The generator is passed in (``numpy.random.Generator`` or CuPy's), never global, so a run
that is seeded the same reproduces exactly, and a resumed run can restore its state.
"""


def dropout_forward(x, p, rng):
    """x (any shape) -> y (same shape). ``rng=None`` or ``p == 0`` means evaluation: y = x."""
    if rng is None or p == 0.0:
        return x, None
    keep = (rng.random(x.shape, dtype=x.dtype) >= p).astype(x.dtype)  # (same as x)
    scaled_mask = keep / (1.0 - p)  # (same as x)
    y = x * scaled_mask
    return y, scaled_mask


def dropout_backward(dy, cache):
    """dy (any shape) -> dx: the gradient flows only through the kept units."""
    scaled_mask = cache
    if scaled_mask is None:
        return dy
    return dy * scaled_mask
