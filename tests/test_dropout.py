"""Dropout's counter-based generator (layers/dropout.py) and its compiled twin (csrc/ops.pyx).

The generator's promise is that a unit's fate depends only on the call's key and the
unit's index. So: the NumPy reference and the fused Cython kernel draw the very same
masks and outputs, on every instruction-set path, whatever the tensor's size (the kernel
shares large tensors out over threads in chunks); the keep rate is 1 − p; masks are
independent from call to call; and a stream resumed from its saved state goes on with
the same keys. The whole model then trains identically on both backends, dropout on.
"""

import numpy as np
import pytest

from minitransformer.backends import cython_backend, numpy_backend
from minitransformer.config import ModelConfig
from minitransformer.layers.dropout import (
    DropoutStream,
    dropout_backward,
    dropout_bits,
    dropout_forward,
    dropout_threshold,
    splitmix64,
)
from minitransformer.model import make_model

needs_kernels = pytest.mark.skipif(
    not hasattr(cython_backend, "dropout_forward"),
    reason="Cython ops kernels (csrc/ops.pyx) not built: run `make setup` or `pip install -e .`",
)


def test_known_answers():
    """Pinned values, so that a change to the generator (in Python or in C) is seen: these
    came from the definitions in the docstring of layers/dropout.py."""
    assert splitmix64(0) == 0xE220A8397B1DCDAF  # SplitMix64's published first output for seed 0
    bits = dropout_bits(0x0123456789ABCDEF, 4)
    assert bits.dtype == np.uint32 and np.all(bits < 1 << 24)
    assert bits.tolist() == dropout_bits(0x0123456789ABCDEF, 10)[:4].tolist()  # a prefix of a longer draw
    assert dropout_threshold(0.1) == 1677722 and dropout_threshold(0.0) == 0


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_rate_and_scale(p):
    """Over 10^6 units the kept fraction is 1 − p within 5 standard deviations, and the
    expectation of the output is the input's (inverted dropout)."""
    n = 1_000_000
    x = np.ones(n, dtype=np.float64)
    y, cache = dropout_forward(x, p, DropoutStream(seed=7))
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(cache.keep.mean() - (1 - p)) < 5 * sigma
    assert abs(y.mean() - 1.0) < 5 * sigma / (1 - p)
    np.testing.assert_array_equal(np.unique(y), [0.0, 1 / (1 - p)])


def test_calls_draw_independent_masks_and_resume_exactly():
    stream = DropoutStream(seed=3)
    x = np.ones((64, 64), dtype=np.float32)
    _, first = dropout_forward(x, 0.5, stream)
    saved = stream.state()
    _, second = dropout_forward(x, 0.5, stream)
    agreement = (first.keep == second.keep).mean()
    assert abs(agreement - 0.5) < 0.05  # independent masks agree on about half the units
    _, again = dropout_forward(x, 0.5, DropoutStream.from_state(saved))
    np.testing.assert_array_equal(again.keep, second.keep)  # resumed: the very same mask
    assert dropout_forward(x, 0.5, None)[0] is x and dropout_forward(x, 0.0, stream)[0] is x


def test_backward_passes_the_kept_units_only():
    x = np.linspace(-1, 1, 50).reshape(5, 10)
    y, cache = dropout_forward(x, 0.3, DropoutStream(seed=1))
    dy = np.arange(50.0).reshape(5, 10)
    dx = dropout_backward(dy, cache)
    assert cache.scale == 1 / (1 - 0.3)
    np.testing.assert_array_equal(dx, np.where(cache.keep, dy * cache.scale, 0.0))
    np.testing.assert_array_equal(y, np.where(cache.keep, x * cache.scale, 0.0))


@needs_kernels
@pytest.mark.usefixtures("isa_path")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("shape", [(1,), (3, 7), (2, 33, 17), (5, 70_001)], ids=str)  # the last: several chunks
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_cython_draws_the_reference_masks(shape, dtype, p):
    """Same seed, same call: the same mask, bit-identical outputs and gradients."""
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    y_ref, cache_ref = numpy_backend_dropout(x, p, DropoutStream(seed=11))
    y, cache = cython_backend.dropout_forward(x, p, DropoutStream(seed=11))
    np.testing.assert_array_equal(cache.keep, cache_ref.keep)
    assert cache.scale == cache_ref.scale and y.dtype == dtype
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(cython_backend.dropout_backward(dy, cache), dropout_backward(dy, cache_ref))


def numpy_backend_dropout(x, p, stream):
    """The NumPy backend has no dropout of its own: the layers' reference is its dropout."""
    assert not hasattr(numpy_backend, "dropout_forward")
    return dropout_forward(x, p, stream)


@needs_kernels
def test_cython_dropout_rejects_other_dtypes():
    with pytest.raises(ValueError, match="float32 or float64"):
        cython_backend.dropout_forward(np.ones(3, dtype=np.int32), 0.5, DropoutStream(seed=0))


@needs_kernels
def test_training_step_with_dropout_is_the_same_on_both_backends():
    """The model's loss and every gradient, dropout on (p = 0.3), in float64: the backends
    draw the same masks, so they agree to rounding (the kernels sum in other orders)."""
    config = ModelConfig(src_vocab_size=20, tgt_vocab_size=22, d_model=16, n_heads=2, d_ff=24,
                         n_encoder_layers=2, n_decoder_layers=2, dropout=0.3, dtype="float64")
    rng = np.random.default_rng(0)
    src = rng.integers(1, 20, size=(3, 7))
    tgt = rng.integers(1, 22, size=(3, 6))
    results = {}
    for name in ("numpy", "cython"):
        model = make_model(config, seed=1, backend=name)
        loss = model.loss_and_grads(src, tgt[:, :-1], tgt[:, 1:], smoothing=0.1, rng=DropoutStream(seed=5))
        results[name] = (loss, {key: value.copy() for key, value in model.grads.items()})
    assert results["cython"][0] == pytest.approx(results["numpy"][0], rel=1e-12)
    for key, grad in results["numpy"][1].items():
        np.testing.assert_allclose(results["cython"][1][key], grad, rtol=1e-9, atol=1e-12, err_msg=key)
