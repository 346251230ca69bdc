"""Centered finite differences: the check that proves every hand-written backward.

For a scalar function L(x) the centered difference

    dL/dx[i] ≈ (L(x + h·e_i) − L(x − h·e_i)) / 2h

has error O(h²). In float64 with h = 1e-6 it agrees with a correct analytic gradient to
about 1e-9 relative, so a wrong backward (a missing term, a transposed matrix) stands out
by many orders of magnitude.

A layer's backward maps dout to dx. To check it we take the scalar L(x) = sum(f(x) · dout)
for a fixed random dout; then dL/dx is exactly what the backward must return.
"""

import numpy as np


def rel_error(analytic, numeric, zero=1e-7):
    """Relative error ||a − n|| / (||a|| + ||n||); 0 when both norms are below ``zero``.

    Some gradients are zero in exact arithmetic. The key bias b_k of attention is one: it
    adds q·b_k to every score of a row, and a softmax ignores a shift common to the whole
    row. Its finite difference is rounding noise (~1e-9), and noise divided by noise would
    read as a 100% error; below ``zero`` both are taken to agree that the gradient is 0.
    """
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    norm_analytic, norm_numeric = np.linalg.norm(analytic), np.linalg.norm(numeric)
    if max(norm_analytic, norm_numeric) < zero:
        return 0.0
    return float(np.linalg.norm(analytic - numeric) / (norm_analytic + norm_numeric))


def numerical_gradient(loss_fn, x, h=1e-6, indices=None):
    """dL/dx by centered differences, perturbing ``x`` in place and restoring it.

    loss_fn:  a function of no arguments that reads ``x`` and returns a float
    x:        the float64 array to differentiate against
    indices:  optional list of multi-indices to sample; the others stay 0 in the result
    """
    grad = np.zeros_like(x)
    iterator = indices if indices is not None else np.ndindex(*x.shape)
    for index in iterator:
        original = x[index]
        x[index] = original + h
        loss_plus = loss_fn()
        x[index] = original - h
        loss_minus = loss_fn()
        x[index] = original
        grad[index] = (loss_plus - loss_minus) / (2.0 * h)
    return grad


def check_layer(forward, backward, inputs, seed=0, h=1e-6, tol=1e-6):
    """Check ``backward`` against finite differences of ``forward`` for every input.

    forward:  f(*inputs) -> (out, cache)
    backward: g(dout, cache) -> tuple of gradients, one per entry of ``inputs``
              (``None`` where an input takes no gradient)
    inputs:   dict name -> float64 array; their order is the argument order

    Returns {name: relative error}. Raises AssertionError naming every tensor over ``tol``.
    """
    names = list(inputs)
    arrays = [inputs[name] for name in names]
    out, cache = forward(*arrays)
    dout = np.random.default_rng(seed).standard_normal(np.shape(out))
    analytic = backward(dout, cache)
    if not isinstance(analytic, tuple):
        analytic = (analytic,)

    def loss():
        return float(np.sum(forward(*arrays)[0] * dout))

    errors = {}
    for name, array, grad in zip(names, arrays, analytic):
        if grad is None:
            continue
        errors[name] = rel_error(grad, numerical_gradient(loss, array, h=h))
    assert_errors_below(errors, tol)
    return errors


def assert_errors_below(errors, tol):
    """Fail with one line per tensor whose relative error exceeds ``tol``."""
    bad = {name: err for name, err in errors.items() if not err <= tol}
    if bad:
        lines = [f"  {name}: relative error {err:.3e} > {tol:.0e}" for name, err in sorted(bad.items())]
        raise AssertionError("gradient check failed for:\n" + "\n".join(lines))
