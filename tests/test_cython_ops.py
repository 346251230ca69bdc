"""The Cython loss and LayerNorm kernels (csrc/ops.pyx) against their NumPy references.

Errors are measured as in test_cython_backend.py (its docstring explains why): ‖a − b‖
divided by the norm of the same expression computed in magnitudes, below 1e-5 in float32
and 1e-12 in float64. The magnitudes used here:

    loss      (|m| + log Σexp + (1 − ε)|z_y| + (ε/V)·Σ|z|), averaged like the loss
    dlogits   (p + ε/V + (1 − ε)·onehot) / n_valid
    y         |x̂|ₘ·|γ| + |β|,  with |x̂|ₘ = (|x| + |μ|) / √(σ² + ε): x − μ is only known
              to u·(|x| + |μ|), which matters when the mean is large next to the spread
    dx        (|dx̂| + |mean dx̂| + |x̂|ₘ·|mean(dx̂ ⊙ x̂)|) / √(σ² + ε),  dx̂ = dy ⊙ γ
    dγ, dβ    Σ_rows |dy|·|x̂|ₘ,  Σ_rows |dy|

Every test runs on each instruction-set path the CPU supports (isa_path in conftest.py),
and skips, saying so, when the extension is not built.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minitransformer.backends import cython_backend
from minitransformer.gradcheck import assert_errors_below, check_layer
from minitransformer.layers import layernorm as layernorm_reference
from minitransformer.layers import loss as loss_reference
from test_cython_backend import scaled_error  # one definition of the error measure

pytestmark = [
    pytest.mark.skipif(
        not hasattr(cython_backend, "layernorm_forward"),
        reason="Cython ops kernels (csrc/ops.pyx) not built: run `make setup` or `pip install -e .`",
    ),
    pytest.mark.usefixtures("isa_path"),  # every test, on every instruction-set path this CPU runs
]

TOLERANCES = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = [pytest.param(dtype, id=dtype.__name__) for dtype in TOLERANCES]
PAD = 0


# --- cross-entropy -----------------------------------------------------------------------------


def cross_entropy_scales(logits, targets, smoothing):
    """The magnitudes of the loss and of dlogits (see the module docstring), in float64."""
    z = logits.astype(np.float64)
    vocab_size = z.shape[-1]
    valid = targets != PAD
    n_valid = max(int(valid.sum()), 1)
    row_max = z.max(axis=-1, keepdims=True)
    probs = np.exp(z - row_max)
    lse = np.log(probs.sum(axis=-1))
    probs /= probs.sum(axis=-1, keepdims=True)
    target_logit = np.take_along_axis(z, targets[..., None], axis=-1)[..., 0]
    per_token = np.abs(row_max[..., 0]) + lse + (1 - smoothing) * np.abs(target_logit)
    per_token += smoothing / vocab_size * np.abs(z).sum(axis=-1)
    onehot = np.zeros_like(z)
    np.put_along_axis(onehot, targets[..., None], 1.0, axis=-1)
    dlogits = (probs + smoothing / vocab_size + (1 - smoothing) * onehot) * (valid / n_valid)[..., None]
    return (per_token * valid).sum() / n_valid, dlogits


def compare_cross_entropy(logits, targets, smoothing, tol):
    loss, cache = cython_backend.cross_entropy_forward(logits, targets, PAD, smoothing)
    dlogits = cython_backend.cross_entropy_backward(cache)
    ref_loss, ref_cache = loss_reference.cross_entropy_forward(logits, targets, PAD, smoothing)
    ref_dlogits = loss_reference.cross_entropy_backward(ref_cache)
    assert np.ndim(loss) == 0 and np.asarray(loss).dtype == logits.dtype
    assert dlogits.shape == logits.shape and dlogits.dtype == logits.dtype
    assert np.isfinite(loss) and np.all(np.isfinite(dlogits))
    assert np.all(dlogits[targets == PAD] == 0), "padding positions get exactly zero gradient"
    loss_scale, dlogits_scale = cross_entropy_scales(logits, targets, smoothing)
    errors = {
        "loss": scaled_error(loss, ref_loss, loss_scale),
        "dlogits": scaled_error(dlogits, ref_dlogits, dlogits_scale),
    }
    assert_errors_below(errors, tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("shape", [(3, 7, 50), (1, 1, 2), (2, 5, 1001)], ids=str)
def test_cross_entropy_matches_reference(shape, smoothing, dtype):
    rng = np.random.default_rng(shape[-1])
    logits = (3 * rng.standard_normal(shape)).astype(dtype)
    targets = rng.integers(0, shape[-1], size=shape[:2])
    targets[0, shape[1] // 2 :] = PAD  # a padded tail
    compare_cross_entropy(logits, targets, smoothing, TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_extreme_logits_and_all_padding(dtype):
    """Logits of ±80 (exp overflows in float32 without the max shift), and a batch of padding only."""
    rng = np.random.default_rng(1)
    logits = (80 * np.sign(rng.standard_normal((2, 4, 30)))).astype(dtype)
    targets = rng.integers(1, 30, size=(2, 4))
    compare_cross_entropy(logits, targets, 0.1, TOLERANCES[dtype])
    loss, cache = cython_backend.cross_entropy_forward(logits, np.zeros((2, 4), dtype=np.int64), PAD, 0.1)
    assert loss == 0 and np.all(cython_backend.cross_entropy_backward(cache) == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_non_contiguous(dtype):
    """Transposed logits and targets give what their contiguous copies give.

    (Compared through the copies because the NumPy reference's backward needs C-contiguous
    logits: it subtracts 1 − ε through dlogits.reshape(-1, V), which copies a strided
    array instead of viewing it, and then the target term is lost.)
    """
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((6, 3, 40)).astype(dtype).transpose(1, 0, 2)  # (3, 6, 40), a view
    targets = rng.integers(0, 40, size=(6, 3)).T
    assert not logits.flags.c_contiguous and not targets.flags.c_contiguous
    loss, cache = cython_backend.cross_entropy_forward(logits, targets, PAD, 0.1)
    dlogits = cython_backend.cross_entropy_backward(cache)
    logits_copy, targets_copy = np.ascontiguousarray(logits), targets.copy()
    loss_copy, cache_copy = cython_backend.cross_entropy_forward(logits_copy, targets_copy, PAD, 0.1)
    assert loss == loss_copy and np.array_equal(dlogits, cython_backend.cross_entropy_backward(cache_copy))
    # each row of p − q sums to 1 − 1 = 0
    np.testing.assert_allclose(dlogits.sum(axis=-1), 0.0, atol=TOLERANCES[dtype])
    compare_cross_entropy(logits_copy, targets_copy, 0.1, TOLERANCES[dtype])


def test_cross_entropy_errors():
    logits = np.zeros((2, 3, 5))
    with pytest.raises(ValueError, match="do not match"):
        cython_backend.cross_entropy_forward(logits, np.zeros((2, 4), dtype=np.int64), PAD)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        cython_backend.cross_entropy_forward(logits, np.full((2, 3), 5), PAD)
    with pytest.raises(ValueError, match="must be integers"):
        cython_backend.cross_entropy_forward(logits, np.zeros((2, 3)), PAD)
    with pytest.raises(ValueError, match="float32 or float64"):
        cython_backend.cross_entropy_forward(logits.astype(np.float16), np.zeros((2, 3), dtype=np.int64), PAD)


# --- LayerNorm ---------------------------------------------------------------------------------


def layernorm_scales(x, gamma, beta, dy, eps):
    """The magnitudes of y, dx, dgamma and dbeta (see the module docstring), in float64."""
    x, gamma, beta, dy = (a.astype(np.float64) for a in (x, gamma, beta, dy))
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    inv_std = 1.0 / np.sqrt((centered**2).mean(axis=-1, keepdims=True) + eps)
    x_hat = (np.abs(x) + np.abs(mean)) * inv_std  # |x̂|ₘ
    dx_hat = dy * gamma
    dx = inv_std * (np.abs(dx_hat) + np.abs(dx_hat.mean(axis=-1, keepdims=True))
                    + x_hat * np.abs((dx_hat * centered * inv_std).mean(axis=-1, keepdims=True)))  # fmt: skip
    d_model = x.shape[-1]
    return {
        "y": x_hat * np.abs(gamma) + np.abs(beta),
        "dx": dx,
        "dgamma": (np.abs(dy) * x_hat).reshape(-1, d_model).sum(axis=0),
        "dbeta": np.abs(dy).reshape(-1, d_model).sum(axis=0),
    }


def compare_layernorm(x, gamma, beta, dy, tol, eps=1e-5):
    y, cache = cython_backend.layernorm_forward(x, gamma, beta, eps)
    dx, dgamma, dbeta = cython_backend.layernorm_backward(dy, cache)
    ref_y, ref_cache = layernorm_reference.layernorm_forward(x, gamma, beta, eps)
    ref_dx, ref_dgamma, ref_dbeta = layernorm_reference.layernorm_backward(dy, ref_cache)
    for name, value, expected in (("y", y, ref_y), ("dx", dx, ref_dx), ("dgamma", dgamma, ref_dgamma)):
        assert value.shape == expected.shape and value.dtype == expected.dtype, name
    scales = layernorm_scales(x, gamma, beta, dy, eps)
    errors = {
        "y": scaled_error(y, ref_y, scales["y"]),
        "dx": scaled_error(dx, ref_dx, scales["dx"]),
        "dgamma": scaled_error(dgamma, ref_dgamma, scales["dgamma"]),
        "dbeta": scaled_error(dbeta, ref_dbeta, scales["dbeta"]),
        # the caches have the same layout: each backward accepts the other forward's cache
        "dx (reference backward, Cython cache)": scaled_error(
            layernorm_reference.layernorm_backward(dy, cache)[0], ref_dx, scales["dx"]
        ),
    }
    assert_errors_below(errors, tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 5, 16), (7, 33), (1, 1, 1), (3, 4, 512)], ids=str)
def test_layernorm_matches_reference(shape, dtype):
    rng = np.random.default_rng(shape[-1])
    x = (2 * rng.standard_normal(shape) + 0.5).astype(dtype)
    gamma, beta = (rng.standard_normal(shape[-1]).astype(dtype) for _ in range(2))
    dy = rng.standard_normal(shape).astype(dtype)
    compare_layernorm(x, gamma, beta, dy, TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm_large_offset_and_non_contiguous(dtype):
    """A mean of 300 over a spread of 1 (mean(x²) − μ² would lose 5 digits) and transposed input."""
    rng = np.random.default_rng(3)
    x = (300 + rng.standard_normal((9, 4, 24))).astype(dtype).transpose(1, 0, 2)
    gamma, beta = (rng.standard_normal(24).astype(dtype) for _ in range(2))
    dy = rng.standard_normal((24, 9, 4)).astype(dtype).transpose(2, 1, 0)
    compare_layernorm(x, gamma, beta, dy, TOLERANCES[dtype])


def test_layernorm_backward_by_finite_differences():
    rng = np.random.default_rng(4)
    inputs = {
        "x": rng.standard_normal((3, 2, 7)),
        "gamma": rng.standard_normal(7),
        "beta": rng.standard_normal(7),
    }
    check_layer(cython_backend.layernorm_forward, cython_backend.layernorm_backward, inputs, tol=1e-7)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(1, 40),
    width=st.integers(1, 70),
    vocab_size=st.integers(1, 70),
    smoothing=st.sampled_from([0.0, 0.1, 0.3]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_property_ops(rows, width, vocab_size, smoothing, dtype, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, width)) * rng.uniform(0.1, 10)).astype(dtype)
    gamma, beta = (rng.standard_normal(width).astype(dtype) for _ in range(2))
    compare_layernorm(x, gamma, beta, rng.standard_normal((rows, width)).astype(dtype), TOLERANCES[dtype])
    logits = (rng.standard_normal((1, rows, vocab_size)) * 4).astype(dtype)
    targets = rng.integers(0, vocab_size, size=(1, rows))
    compare_cross_entropy(logits, targets, smoothing, TOLERANCES[dtype])


def test_layernorm_errors():
    with pytest.raises(ValueError, match="needs gamma and beta"):
        cython_backend.layernorm_forward(np.zeros((2, 5)), np.ones(4), np.zeros(5))
    y, cache = cython_backend.layernorm_forward(np.zeros((2, 5)), np.ones(5), np.zeros(5))
    with pytest.raises(ValueError, match="dy has shape"):
        cython_backend.layernorm_backward(np.zeros((2, 4)), cache)
