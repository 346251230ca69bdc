"""The compiled banded kernel (csrc/banded.pyx) against the masked reference, on every
instruction-set path this CPU runs.

The kernel computes the band's scores in the same order as the plain core's rows would
and adds fewer zeros, so the two agree to a few units of roundoff: 1e-5 relative to the
output's scale in float32, 1e-12 in float64 (the scale: the largest |entry| of the
reference tensor, at least 1). Proven:
  * output, weights and all three gradients equal the masked reference at every window
    w (0 to beyond T), bidirectional and causal, float32 and float64, with padded keys and
    with a sequence whose keys are all padded (its rows: weight 0, output 0, never NaN);
  * w ≥ T − 1 is exact attention;
  * decoding-step shapes (one query, the last position) agree too;
  * memory is O(T·w): the band's weights, never a (T, T) array;
  * the model's attention_window runs on it with the Cython backend and gives the NumPy
    backend's loss and gradients (the mask on the full product).
"""

import tracemalloc

import numpy as np
import pytest

from minitransformer import _ext
from minitransformer.approx.banded import banded_reference_backward, banded_reference_forward
from minitransformer.layers.attention import attention_forward
from minitransformer.model import make_model

from helpers import padded_batch, tiny_config

pytestmark = [
    pytest.mark.usefixtures("isa_path"),
    pytest.mark.skipif(_ext.banded is None, reason="the Cython kernels are not built (make setup)"),
]

TOLERANCES = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = [pytest.param(dtype, id=dtype.__name__) for dtype in TOLERANCES]


def assert_close(actual, expected, dtype, name):
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    error = float(np.abs(np.asarray(actual, np.float64) - expected).max(initial=0)) / scale
    assert error <= TOLERANCES[dtype], f"{name}: error {error:.2e} > {TOLERANCES[dtype]:.0e}"


def random_problem(rng, dtype, batch=3, heads=2, tgt_len=13, src_len=13, head_dim=5):
    q = rng.standard_normal((batch, heads, tgt_len, head_dim)).astype(dtype)
    k, v = (rng.standard_normal((batch, heads, src_len, head_dim)).astype(dtype) for _ in range(2))
    dout = rng.standard_normal(q.shape).astype(dtype)
    keep = np.ones((batch, src_len), bool)
    if batch == 3:
        keep[1, 8:] = False  # padding at the end
        keep[2, :] = False  # a sequence with no real key: every row fully masked
    return q, k, v, dout, keep


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("window", [0, 1, 2, 5, 12, 20])
def test_equals_the_masked_reference(rng, dtype, causal, window):
    q, k, v, dout, keep = random_problem(rng, dtype)
    out, band = _ext.banded.banded_forward(q, k, v, window, causal, keep)
    grads = _ext.banded.banded_backward(dout, q, k, v, band, window, causal)
    q64, k64, v64, dout64 = (x.astype(np.float64) for x in (q, k, v, dout))
    ref_out, ref_probs = banded_reference_forward(q64, k64, v64, window, causal, keep)
    ref_grads = banded_reference_backward(dout64, q64, k64, v64, ref_probs)
    assert out.dtype == dtype and band.shape[-1] == (window + 1 if causal else 2 * window + 1)
    assert_close(out, ref_out, dtype, "out")
    assert_close(_ext.banded.band_to_dense(band, window, k.shape[2]), ref_probs, dtype, "probs")
    for name, grad, ref in zip(("dq", "dk", "dv"), grads, ref_grads):
        assert_close(grad, ref, dtype, name)
    # the sequence with no real key: zeros, not NaN
    assert np.all(out[2] == 0) and np.all(band[2] == 0) and not np.isnan(out).any()
    assert all(np.all(np.isfinite(grad)) for grad in grads)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_window_covering_the_sequence_is_exact_attention(rng, dtype):
    q, k, v, _, _ = random_problem(rng, dtype)
    for window in (12, 13, 100):  # w ≥ T − 1 reaches every key
        out, _ = _ext.banded.banded_forward(q, k, v, window)
        assert_close(out, attention_forward(*(x.astype(np.float64) for x in (q, k, v)))[0], dtype, f"w={window}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_fewer_queries_than_keys_are_the_last_positions(rng, dtype):
    """A decoding step: one query at position S − 1 against the cache."""
    q, k, v, dout, _ = random_problem(rng, dtype, tgt_len=1)
    out, band = _ext.banded.banded_forward(q, k, v, 3, causal=True)
    ref_out, ref_probs = banded_reference_forward(*(x.astype(np.float64) for x in (q, k, v)), 3, causal=True)
    assert_close(out, ref_out, dtype, "out")
    grads = _ext.banded.banded_backward(dout, q, k, v, band, 3, causal=True)
    ref_grads = banded_reference_backward(*(x.astype(np.float64) for x in (dout, q, k, v)), ref_probs)
    for name, grad, ref in zip(("dq", "dk", "dv"), grads, ref_grads):
        assert_close(grad, ref, dtype, name)


def test_memory_is_linear_in_length(rng):
    """T = 2048, w = 4: the forward and backward hold the band (T·9 numbers per head) and
    the inputs' gradients, far below one (T, T) matrix of 16 MiB."""
    q, k, v, dout, _ = random_problem(rng, np.float32, batch=1, heads=1, tgt_len=2048, src_len=2048, head_dim=16)
    tracemalloc.start()
    out, band = _ext.banded.banded_forward(q, k, v, 4)
    _ext.banded.banded_backward(dout, q, k, v, band, 4)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert band.shape == (1, 1, 2048, 9)
    assert peak < 2048 * 2048 * 4 / 8, f"peak {peak} bytes"


def test_bad_window_is_a_one_line_error(rng):
    q, k, v, _, _ = random_problem(rng, np.float64)
    for window in (-1, 1.5, True):
        with pytest.raises(ValueError, match="window w must be an integer ≥ 0"):
            _ext.banded.banded_forward(q, k, v, window)


@pytest.mark.parametrize("window", [0, 1, 3])
def test_the_model_runs_attention_window_on_the_banded_kernel(window):
    config = tiny_config(attention_window=window)
    compiled, reference = make_model(config, seed=2, backend="cython"), make_model(config, seed=2, backend="numpy")
    assert compiled.encoder_backend.method == "banded" and compiled.decoder_backend.causal
    rng = np.random.default_rng(3)
    src = padded_batch(rng, config.src_vocab_size, [6, 3, 5], width=6)
    tgt = padded_batch(rng, config.tgt_vocab_size, [7, 4, 2], width=7, bos=2)
    losses = [model.loss_and_grads(src, tgt[:, :-1], tgt[:, 1:], smoothing=0.1) for model in (compiled, reference)]
    assert abs(losses[0] - losses[1]) < 1e-12
    for key, grad in reference.grads.items():
        np.testing.assert_allclose(compiled.grads[key], grad, rtol=1e-9, atol=1e-12, err_msg=key)
    # the trace's maps are the band, written into the full matrix
    _, cache = compiled.forward(src, tgt[:, :-1])
    _, ref_cache = reference.forward(src, tgt[:, :-1])
    for part in ("encoder", "decoder_self"):
        for ours, theirs in zip(compiled.attention_maps(cache)[part], reference.attention_maps(ref_cache)[part]):
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
