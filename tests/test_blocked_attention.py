"""Blocked attention (online softmax) against the plain core, in NumPy and in Cython.

The blocked kernels must give the plain core's output and gradients for every block
size, whether or not it divides T and S, plus the per-row log-sum-exp L, and they must
not store anything of size T·S. Errors are measured as in test_cython_backend.py (whose
docstring explains the measure): ‖a − b‖ divided by the norm of the same expression
computed in magnitudes, below 1e-5 in float32 and 1e-12 in float64. Blocking only
changes the order in which the same terms are added (and rescales partial sums by
exp(m − m') ≤ 1), so the two agree to a few units of roundoff.

The NumPy tests always run; the Cython ones skip when the extension is not built.
"""

import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minitransformer.backends import cython_backend
from minitransformer.gradcheck import assert_errors_below, check_layer
from minitransformer.layers import attention as reference
from minitransformer.layers.blocked_attention import blocked_attention_backward, blocked_attention_forward

pytestmark = pytest.mark.usefixtures("isa_path")  # the compiled ones: on every path this CPU runs
from test_cython_backend import rounding_scales, scaled_error  # one definition of the error measure

TOLERANCES = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = [pytest.param(dtype, id=dtype.__name__) for dtype in TOLERANCES]

needs_extension = pytest.mark.skipif(
    cython_backend.unavailable_reason() is not None,
    reason=f"Cython kernels not built: {cython_backend.unavailable_reason()}",
)


def numpy_blocked(q, k, v, mask, dout, block_size):
    out, logsumexp = blocked_attention_forward(q, k, v, mask, block_size)
    return out, logsumexp, blocked_attention_backward(dout, q, k, v, out, logsumexp, mask, block_size)


def cython_blocked(q, k, v, mask, dout, block_size):
    out, logsumexp = cython_backend.attention_forward_blocked(q, k, v, mask, block_size)
    grads = cython_backend.attention_backward_blocked(dout, q, k, v, out, logsumexp, mask, block_size)
    return out, logsumexp, grads


IMPLEMENTATIONS = [
    pytest.param(numpy_blocked, id="numpy"),
    pytest.param(cython_blocked, id="cython", marks=needs_extension),
]


def random_inputs(rng, batch, heads, tgt_len, src_len, head_dim, dtype):
    q = rng.standard_normal((batch, heads, tgt_len, head_dim)).astype(dtype)
    k = rng.standard_normal((batch, heads, src_len, head_dim)).astype(dtype)
    v = rng.standard_normal((batch, heads, src_len, head_dim)).astype(dtype)
    dout = rng.standard_normal((batch, heads, tgt_len, head_dim)).astype(dtype)
    return q, k, v, dout


def make_mask(kind, rng, batch, heads, tgt_len, src_len):
    if kind == "none":
        return None
    lengths = rng.integers(1, src_len + 1, size=batch)
    padding = (np.arange(src_len)[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, S)
    if kind == "padding":
        return padding
    causal = np.tril(np.ones((tgt_len, src_len), dtype=bool))[None, None]  # (1, 1, T, S)
    if kind == "causal":
        return causal
    if kind == "causal+padding":
        return causal & padding  # (B, 1, T, S)
    if kind == "random":
        return rng.random((batch, heads, tgt_len, src_len)) < 0.6
    raise ValueError(kind)


def reference_logsumexp(q, k, mask):
    """log Σ_s exp(scores) over the allowed keys, in float64; −∞ where none is allowed."""
    scores = (q.astype(np.float64) @ k.astype(np.float64).swapaxes(-1, -2)) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    row_max = scores.max(axis=-1, keepdims=True)
    safe_max = np.where(np.isfinite(row_max), row_max, 0.0)
    with np.errstate(divide="ignore"):  # log 0 = −∞ for a row with every key masked
        return (safe_max + np.log(np.exp(scores - safe_max).sum(axis=-1, keepdims=True)))[..., 0]


def compare_with_plain(implementation, q, k, v, dout, mask, block_size, tol):
    out, logsumexp, (dq, dk, dv) = implementation(q, k, v, mask, dout, block_size)
    ref_out, ref_probs = reference.attention_forward(q, k, v, mask)
    ref_dq, ref_dk, ref_dv = reference.attention_backward(dout, q, k, v, ref_probs)
    for name, value in (("out", out), ("dq", dq), ("dk", dk), ("dv", dv)):
        assert value.dtype == q.dtype, f"{name} came back as {value.dtype}, the inputs were {q.dtype}"
        assert np.all(np.isfinite(value)), f"{name} has NaN or inf"
    ref_lse = reference_logsumexp(q, k, mask)
    assert logsumexp.shape == q.shape[:3] and logsumexp.dtype == q.dtype
    empty_rows = np.isneginf(ref_lse)
    assert np.array_equal(np.isneginf(logsumexp), empty_rows), "L = −∞ exactly on rows with no allowed key"
    assert not np.any(np.isnan(logsumexp))
    scales = rounding_scales(q, k, v, dout, mask)
    # L = m + log l: its rounding scales with |m| + |log l| and with the scores' own error
    abs_scores = np.abs(q.astype(np.float64)) @ np.abs(k.astype(np.float64)).swapaxes(-1, -2)
    lse_scale = np.abs(ref_lse) + abs_scores.max(axis=-1) / math.sqrt(q.shape[-1])
    errors = {
        "out": scaled_error(out, ref_out, scales["out"]),
        "logsumexp": scaled_error(logsumexp[~empty_rows], ref_lse[~empty_rows], lse_scale[~empty_rows]),
        "dq": scaled_error(dq, ref_dq, scales["dq"]),
        "dk": scaled_error(dk, ref_dk, scales["dk"]),
        "dv": scaled_error(dv, ref_dv, scales["dv"]),
    }
    assert_errors_below(errors, tol)
    return out, logsumexp, (dq, dk, dv)


# (B, H, T, S, Dh, mask kind, block sizes): sizes that divide T and S, that divide neither,
# 1 (every row and column its own block), and larger than both (one block)
CASES = [
    (2, 2, 12, 20, 8, "none", (4, 5, 7, 1, 64)),
    (2, 3, 1, 9, 7, "padding", (2, 3, 16)),
    (3, 2, 10, 13, 7, "padding", (4, 5, 13)),
    (2, 2, 16, 16, 6, "causal", (4, 5, 16)),
    (3, 2, 11, 11, 5, "causal+padding", (3, 4, 11)),
    (2, 2, 9, 14, 4, "random", (2, 5, 9)),
]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}H{}T{}S{}Dh{}-{}".format(*c[:6]))
def test_blocked_matches_plain(case, dtype, implementation):
    batch, heads, tgt_len, src_len, head_dim, kind, block_sizes = case
    rng = np.random.default_rng(tgt_len * 100 + src_len)
    q, k, v, dout = random_inputs(rng, batch, heads, tgt_len, src_len, head_dim, dtype)
    mask = make_mask(kind, rng, batch, heads, tgt_len, src_len)
    for block_size in block_sizes:
        compare_with_plain(implementation, q, k, v, dout, mask, block_size, TOLERANCES[dtype])


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fully_masked_rows(implementation, dtype):
    """Zero output, L = −∞, zero gradients, and no NaN (NumPy may not even warn)."""
    rng = np.random.default_rng(8)
    q, k, v, dout = random_inputs(rng, 3, 2, 7, 9, 5, dtype)
    mask = np.ones((3, 1, 7, 9), dtype=bool)
    mask[0, :, 4, :] = False  # one query sees no key
    mask[1] = False  # a batch entry that is all padding
    mask[2, :, :, 3:] = False  # a key block (size 3) that is masked for every query
    with np.errstate(all="raise"):
        results = compare_with_plain(implementation, q, k, v, dout, mask, 3, TOLERANCES[dtype])
    out, logsumexp, (dq, dk, dv) = results
    assert np.all(out[0, :, 4] == 0) and np.all(np.isneginf(logsumexp[0, :, 4])) and np.all(dq[0, :, 4] == 0)
    assert np.all(out[1] == 0) and np.all(dq[1] == 0) and np.all(dk[1] == 0) and np.all(dv[1] == 0)
    assert np.all(dk[2, :, 3:] == 0) and np.all(dv[2, :, 3:] == 0)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_large_scores_do_not_overflow(implementation):
    """Scores near ±1000: the running maximum keeps every exp in range, as in the plain core."""
    rng = np.random.default_rng(9)
    q, k, v, dout = random_inputs(rng, 1, 2, 10, 12, 4, np.float64)
    q *= 60.0  # scores of order 60²·2/√4 ≈ ±1000: a naive exp overflows
    with np.errstate(all="raise"):
        compare_with_plain(implementation, q, k, v, dout, None, 5, TOLERANCES[np.float64])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.integers(1, 2),
    heads=st.integers(1, 3),
    tgt_len=st.integers(1, 14),
    src_len=st.integers(1, 14),
    head_dim=st.integers(1, 8),
    block_size=st.integers(1, 16),
    kind=st.sampled_from(["none", "padding", "random"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_property_numpy_blocked(batch, heads, tgt_len, src_len, head_dim, block_size, kind, dtype, seed):
    rng = np.random.default_rng(seed)
    q, k, v, dout = random_inputs(rng, batch, heads, tgt_len, src_len, head_dim, dtype)
    mask = make_mask(kind, rng, batch, heads, tgt_len, src_len)
    compare_with_plain(numpy_blocked, q, k, v, dout, mask, block_size, TOLERANCES[dtype])


@needs_extension
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.integers(1, 3),
    heads=st.integers(1, 3),
    tgt_len=st.integers(1, 20),
    src_len=st.integers(1, 20),
    head_dim=st.integers(1, 9),
    block_size=st.integers(1, 24),
    kind=st.sampled_from(["none", "padding", "causal+padding", "random"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_property_cython_blocked(batch, heads, tgt_len, src_len, head_dim, block_size, kind, dtype, seed):
    rng = np.random.default_rng(seed)
    q, k, v, dout = random_inputs(rng, batch, heads, tgt_len, src_len, head_dim, dtype)
    mask = make_mask(kind, rng, batch, heads, tgt_len, src_len)
    compare_with_plain(cython_blocked, q, k, v, dout, mask, block_size, TOLERANCES[dtype])


def test_numpy_blocked_backward_by_finite_differences():
    """The blocked backward on its own, against centered differences of the blocked forward."""
    rng = np.random.default_rng(10)
    q, k, v, _ = random_inputs(rng, 1, 2, 5, 7, 3, np.float64)
    mask = make_mask("causal+padding", rng, 1, 2, 5, 7)

    def forward(q, k, v):
        out, logsumexp = blocked_attention_forward(q, k, v, mask, block_size=3)
        return out, (q, k, v, out, logsumexp)

    def backward(dout, cache):
        q, k, v, out, logsumexp = cache
        return blocked_attention_backward(dout, q, k, v, out, logsumexp, mask, block_size=3)

    check_layer(forward, backward, {"q": q, "k": k, "v": v}, tol=1e-7)


def peak_numpy_bytes(function, *args):
    """The largest amount of NumPy memory held at once while function(*args) runs.

    tracemalloc sees every NumPy array, including the Cython kernels' outputs and
    scratch, which they allocate through NumPy.
    """
    tracemalloc.start()
    try:
        function(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_memory_grows_linearly_with_length(implementation):
    """Forward + backward at T = S = 512 and 1024: the peak about doubles, and stays far
    below one T×S matrix of scores (the plain core holds several: its peak quadruples)."""
    rng = np.random.default_rng(11)
    peaks = {}
    for length in (512, 1024):
        q, k, v, dout = random_inputs(rng, 1, 1, length, length, 16, np.float64)
        mask = make_mask("padding", rng, 1, 1, length, length)
        peaks[length] = peak_numpy_bytes(implementation, q, k, v, mask, dout, 64)
    one_score_matrix = 1024 * 1024 * 8  # 8 MiB
    assert peaks[1024] < one_score_matrix / 4, f"peak {peaks[1024] / 2**20:.2f} MiB at T = S = 1024"
    assert peaks[1024] < 2.5 * peaks[512], f"peak grew {peaks[1024] / peaks[512]:.1f}× when T and S doubled"


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("block_size", [0, -3, 2.5, True])
def test_bad_block_size(implementation, block_size):
    q, k, v, dout = random_inputs(np.random.default_rng(0), 1, 1, 3, 3, 2, np.float64)
    with pytest.raises(ValueError, match="block_size"):
        implementation(q, k, v, None, dout, block_size)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_bad_shapes(implementation):
    q, k, v, dout = random_inputs(np.random.default_rng(0), 2, 2, 3, 4, 5, np.float64)
    with pytest.raises(ValueError, match="does not fit"):
        implementation(q, k[..., :4], v[..., :4], None, dout, 2)
    with pytest.raises(ValueError, match="does not broadcast"):
        implementation(q, k, v, np.ones((2, 1, 1, 3), dtype=bool), dout, 2)
