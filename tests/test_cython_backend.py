"""The Cython attention core against the NumPy reference (layers/attention.py).

How results are compared. Floating point bounds the error of a sum Σ x_i by about
n·u·Σ|x_i| (n terms, u the unit roundoff: 6e-8 in float32, 1.1e-16 in float64): the
error scales with the magnitudes of the terms, not with the result, which cancellation
can make far smaller, even exactly 0 (dq when a query has a single key: the softmax of
one score is 1 whatever the score). So every tensor is also computed "in magnitudes"
(rounding_scales below: the same expression in float64 with each factor replaced by its
absolute value, e.g. |P|·|V| for out) and its error is

    scaled_error(a, b, scale) = ‖a − b‖ / ‖scale‖           (Frobenius norms)

which equals the relative error ‖a − b‖ / ‖b‖ wherever nothing cancels. It must be below
1e-5 in float32 and 1e-12 in float64: typical rounding here is √n·u, about 5e-7 and
1e-15 for n ≤ 64, and any wrong formula gives order 1. Entries that must be exactly 0
(masked weights, rows with every key masked) are checked for exact equality, and NaN
anywhere fails every comparison.

Every test needs the compiled extension and skips, saying so, when it is not built
(`make test` builds it). Every test here runs once on each instruction-set path of the
kernels (csrc/kernels.h) that this CPU supports: the portable micro-kernel compiled for
the baseline, AVX2 + FMA, AVX-512 or NEON (isa_path in conftest.py).
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minitransformer import backends
from minitransformer.backends import cython_backend
from minitransformer.config import ModelConfig
from minitransformer.gradcheck import assert_errors_below, rel_error
from minitransformer.layers import attention as reference
from minitransformer.layers.multihead import split_heads
from minitransformer.model import make_model

needs_extension = pytest.mark.skipif(
    cython_backend.unavailable_reason() is not None,
    reason=f"Cython kernels not built: {cython_backend.unavailable_reason()}",
)


pytestmark = pytest.mark.usefixtures("isa_path")  # every test, on every path this CPU runs

TOLERANCES = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = [pytest.param(dtype, id=dtype.__name__) for dtype in TOLERANCES]


def random_inputs(rng, batch, heads, tgt_len, src_len, head_dim, dtype):
    """q (B, H, T, Dh), k, v (B, H, S, Dh), dout (B, H, T, Dh), standard normal."""
    q = rng.standard_normal((batch, heads, tgt_len, head_dim)).astype(dtype)
    k = rng.standard_normal((batch, heads, src_len, head_dim)).astype(dtype)
    v = rng.standard_normal((batch, heads, src_len, head_dim)).astype(dtype)
    dout = rng.standard_normal((batch, heads, tgt_len, head_dim)).astype(dtype)
    return q, k, v, dout


def padding_mask(rng, batch, src_len):
    """(B, 1, 1, S): each batch entry keeps a random prefix of at least one key."""
    lengths = rng.integers(1, src_len + 1, size=batch)
    return (np.arange(src_len)[None, :] < lengths[:, None])[:, None, None, :]


def causal_mask(length):
    """(1, 1, T, T): query t sees keys 0..t."""
    return np.tril(np.ones((length, length), dtype=bool))[None, None]


def make_mask(kind, rng, batch, heads, tgt_len, src_len):
    if kind == "none":
        return None
    if kind == "padding":
        return padding_mask(rng, batch, src_len)
    if kind == "causal":
        return causal_mask(tgt_len)
    if kind == "causal+padding":  # the decoder's self-attention mask, (B, 1, T, T)
        return causal_mask(tgt_len) & padding_mask(rng, batch, src_len)
    if kind == "random":  # a different pattern for every head and query
        return rng.random((batch, heads, tgt_len, src_len)) < 0.7
    if kind == "per-query":  # (1, 1, T, 1): broadcast along the key axis
        return rng.random((1, 1, tgt_len, 1)) < 0.7
    raise ValueError(kind)


def rounding_scales(q, k, v, dout, mask):
    """{tensor: its magnitude}: what its rounding error is proportional to (see the docstring).

    The reference's expressions, in float64, with every factor made non-negative:
        out     |P|·|V|                  probs   P
        dv      |P|ᵀ·|dO|                dS      P ⊙ (|dP| + |D|),  dP = dO·Vᵀ, D = rowsum(dP ⊙ P)
        dq      |dS|·|K| / √Dh           dk      |dS|ᵀ·|Q| / √Dh
    """
    q, k, v, dout = (np.asarray(x, dtype=np.float64) for x in (q, k, v, dout))
    _, probs = reference.attention_forward(q, k, v, mask)  # (B, H, T, S)
    dprobs = dout @ v.swapaxes(-1, -2)  # (B, H, T, S)
    row_dot = (dprobs * probs).sum(axis=-1, keepdims=True)  # (B, H, T, 1)
    dscores = probs * (np.abs(dprobs) + np.abs(row_dot))  # (B, H, T, S)
    scale = 1.0 / np.sqrt(q.shape[-1])
    return {
        "out": probs @ np.abs(v),
        "probs": probs,
        "dq": scale * dscores @ np.abs(k),
        "dk": scale * dscores.swapaxes(-1, -2) @ np.abs(q),
        "dv": probs.swapaxes(-1, -2) @ np.abs(dout),
    }


def scaled_error(value, expected, scale):
    """‖value − expected‖ / ‖scale‖; 0 when they are equal (also when both are all 0)."""
    difference = np.linalg.norm(np.asarray(value, np.float64) - np.asarray(expected, np.float64))
    if difference == 0:
        return 0.0
    return float(difference / np.linalg.norm(scale))


def compare_with_reference(q, k, v, dout, mask, tol):
    """Run both cores, forward and backward; fail naming every tensor that differs."""
    out, probs = cython_backend.attention_forward(q, k, v, mask)
    dq, dk, dv = cython_backend.attention_backward(dout, q, k, v, probs)
    ref_out, ref_probs = reference.attention_forward(q, k, v, mask)
    ref_dq, ref_dk, ref_dv = reference.attention_backward(dout, q, k, v, ref_probs)
    for name, value in (("out", out), ("probs", probs), ("dq", dq), ("dk", dk), ("dv", dv)):
        assert value.dtype == q.dtype, f"{name} came back as {value.dtype}, the inputs were {q.dtype}"
        assert np.all(np.isfinite(value)), f"{name} has NaN or inf"
    scales = rounding_scales(q, k, v, dout, mask)
    errors = {
        "out": scaled_error(out, ref_out, scales["out"]),
        "probs": scaled_error(probs, ref_probs, scales["probs"]),
        "dq": scaled_error(dq, ref_dq, scales["dq"]),
        "dk": scaled_error(dk, ref_dk, scales["dk"]),
        "dv": scaled_error(dv, ref_dv, scales["dv"]),
    }
    assert_errors_below(errors, tol)
    if mask is not None:  # masked weights are exactly 0, as in the reference
        assert np.all(probs[~np.broadcast_to(mask, probs.shape)] == 0)
    return out, probs, (dq, dk, dv)


# (B, H, T, S, Dh, mask kind): T = 1, S ≠ T, odd head widths, every mask shape
CASES = [
    (2, 3, 5, 5, 8, "none"),
    (1, 1, 1, 1, 1, "none"),
    (2, 2, 1, 9, 7, "padding"),
    (3, 2, 6, 11, 7, "padding"),
    (2, 4, 9, 4, 5, "padding"),
    (2, 2, 7, 7, 3, "causal"),
    (3, 2, 8, 8, 6, "causal+padding"),
    (2, 3, 6, 10, 7, "random"),
    (2, 2, 6, 5, 4, "per-query"),
    (4, 4, 33, 47, 16, "padding"),
    # several panels of tile columns (64 floats, 32 doubles) with a partial last one,
    # rows that leave a partial tile (13 = 6 + 6 + 1), whole 16 × 16 transpose blocks
    (2, 2, 13, 150, 70, "padding"),
    (1, 2, 70, 33, 65, "random"),
    (1, 2, 40, 40, 65, "causal+padding"),
    (2, 1, 32, 32, 64, "padding"),
]


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}H{}T{}S{}Dh{}-{}".format(*c))
def test_matches_reference(case, dtype):
    batch, heads, tgt_len, src_len, head_dim, kind = case
    rng = np.random.default_rng(sum(case[:5]))
    q, k, v, dout = random_inputs(rng, batch, heads, tgt_len, src_len, head_dim, dtype)
    mask = make_mask(kind, rng, batch, heads, tgt_len, src_len)
    compare_with_reference(q, k, v, dout, mask, TOLERANCES[dtype])


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES)
def test_fully_masked_rows_give_zeros_not_nan(dtype):
    """A row with every key masked: zero weights, zero output, zero gradient, no NaN."""
    rng = np.random.default_rng(3)
    q, k, v, dout = random_inputs(rng, 3, 2, 4, 6, 5, dtype)
    mask = np.ones((3, 1, 4, 6), dtype=bool)
    mask[0, :, 2, :] = False  # one query of batch entry 0 sees nothing
    mask[1] = False  # batch entry 1 sees nothing at all (a fully padded sequence)
    out, probs, (dq, dk, dv) = compare_with_reference(q, k, v, dout, mask, TOLERANCES[dtype])
    assert np.all(probs[0, :, 2] == 0) and np.all(out[0, :, 2] == 0)
    assert np.all(dq[0, :, 2] == 0)
    assert np.all(probs[1] == 0) and np.all(out[1] == 0)
    assert np.all(dq[1] == 0) and np.all(dk[1] == 0) and np.all(dv[1] == 0)
    # the other rows are still proper distributions
    np.testing.assert_allclose(probs[2].sum(axis=-1), 1.0, rtol=TOLERANCES[dtype])


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_inputs(dtype):
    """Views as the model makes them (split_heads: a transpose), and worse ones."""
    rng = np.random.default_rng(4)
    batch, heads, tgt_len, src_len, d_model = 2, 4, 6, 9, 28
    x_q = rng.standard_normal((batch, tgt_len, d_model)).astype(dtype)
    x_kv = rng.standard_normal((batch, src_len, d_model)).astype(dtype)
    x_out = rng.standard_normal((batch, tgt_len, d_model)).astype(dtype)
    q, k, v = split_heads(x_q, heads), split_heads(x_kv, heads), split_heads(x_kv[:, :, ::-1], heads)
    dout = split_heads(x_out, heads)
    assert not q.flags.c_contiguous and not v.flags.c_contiguous
    mask = padding_mask(rng, batch, src_len)
    compare_with_reference(q, k, v, dout, mask, TOLERANCES[dtype])
    # Fortran order (no axis contiguous), and a mask strided along the key axis
    q_f, k_f = np.asfortranarray(q), np.asfortranarray(k)
    strided_mask = np.repeat(mask, 2, axis=-1)[..., ::2]
    assert strided_mask.strides[-1] == 2
    compare_with_reference(q_f, k_f, v, dout, strided_mask, TOLERANCES[dtype])
    # a strided backward input: probs given as a view with a longer row stride
    out, probs = cython_backend.attention_forward(q, k, v, mask)
    padded = np.zeros(probs.shape[:3] + (src_len + 3,), dtype=dtype)
    padded[..., :src_len] = probs
    grads = cython_backend.attention_backward(dout, q, k, v, padded[..., :src_len])
    expected = cython_backend.attention_backward(dout, q, k, v, probs)
    scales = rounding_scales(q, k, v, dout, mask)
    errors = {f"d{name}": scaled_error(a, b, scales[f"d{name}"]) for name, a, b in zip("qkv", grads, expected)}
    assert_errors_below(errors, TOLERANCES[dtype])


@needs_extension
def test_read_only_and_broadcast_inputs():
    """np.broadcast_to gives read-only views with stride 0: usable as they are."""
    rng = np.random.default_rng(5)
    q, k, v, dout = random_inputs(rng, 1, 1, 5, 6, 4, np.float64)
    q_b = np.broadcast_to(q, (3, 2, 5, 4))
    k_b, v_b, dout_b = (np.broadcast_to(x, (3, 2) + x.shape[2:]) for x in (k, v, dout))
    assert not q_b.flags.writeable
    compare_with_reference(q_b, k_b, v_b, dout_b, None, TOLERANCES[np.float64])


@needs_extension
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.integers(1, 3),
    heads=st.integers(1, 3),
    tgt_len=st.integers(1, 12),
    src_len=st.integers(1, 12),
    head_dim=st.integers(1, 9),
    kind=st.sampled_from(["none", "padding", "random", "per-query"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_property_matches_reference(batch, heads, tgt_len, src_len, head_dim, kind, dtype, seed):
    rng = np.random.default_rng(seed)
    q, k, v, dout = random_inputs(rng, batch, heads, tgt_len, src_len, head_dim, dtype)
    mask = make_mask(kind, rng, batch, heads, tgt_len, src_len)
    compare_with_reference(q, k, v, dout, mask, TOLERANCES[dtype])


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES)
def test_whole_training_step_matches_numpy_backend(dtype):
    """One forward and backward of the whole model, dropout on: the loss and every gradient.

    Measured with rel_error = ‖a − b‖ / (‖a‖ + ‖b‖) (minitransformer.gradcheck): magnitudes
    cannot be traced through the whole model, and only the key biases cancel (below).
    """
    tol = TOLERANCES[dtype]
    config = ModelConfig(
        src_vocab_size=23, tgt_vocab_size=19, d_model=28, n_heads=4, d_ff=40,
        n_encoder_layers=2, n_decoder_layers=2, dropout=0.1, dtype=np.dtype(dtype).name,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    src = rng.integers(4, 23, size=(3, 9))
    src[0, 6:] = config.pad_id
    tgt = rng.integers(4, 19, size=(3, 8))
    tgt[1, 5:] = config.pad_id
    results = {}
    for backend in ("numpy", "cython"):
        model = make_model(config, seed=1, backend=backend)
        loss = model.loss_and_grads(src, tgt[:, :-1], tgt[:, 1:], smoothing=0.1, rng=np.random.default_rng(7))
        results[backend] = (loss, {key: grad.copy() for key, grad in model.grads.items()})
    (loss_numpy, grads_numpy), (loss_cython, grads_cython) = results["numpy"], results["cython"]
    assert abs(loss_cython - loss_numpy) <= tol * abs(loss_numpy)
    errors = {}
    for key, grad in grads_cython.items():
        assert grad.dtype == grads_numpy[key].dtype, key
        if key.endswith(".b_k"):
            # The key bias's exact gradient is 0: it adds q·b_k to every score of a row,
            # and softmax ignores a shift shared by the whole row. Both backends return
            # rounding noise there, so their relative difference means nothing; check
            # instead that both are at rounding level next to the key weights' gradient.
            scale = np.linalg.norm(grads_numpy[key[: -len("b_k")] + "w_k"])
            errors[key] = max(np.linalg.norm(grad), np.linalg.norm(grads_numpy[key])) / scale
        else:
            errors[key] = rel_error(grad, grads_numpy[key])
    assert len(errors) == len(grads_numpy)
    assert_errors_below(errors, tol)


@needs_extension
def test_backend_interface():
    backend = backends.get("cython")
    assert backend.name == "cython" and backend.xp is np
    assert backend.unavailable_reason() is None
    assert "cython" in backends.available()


@needs_extension
@pytest.mark.parametrize(
    "shapes, mask, message",
    [
        (((2, 3, 4), (2, 3, 4), (2, 3, 4)), None, "rank 4"),
        (((2, 3, 4, 5), (2, 3, 6, 4), (2, 3, 6, 4)), None, "does not fit"),
        (((2, 3, 4, 5), (2, 2, 6, 5), (2, 2, 6, 5)), None, "does not fit"),
        (((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 7, 5)), None, "v has shape"),
        (((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 5)), np.ones((2, 1, 1, 5), dtype=bool), "does not broadcast"),
        (((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 5)), np.ones((2, 6), dtype=bool), "does not broadcast"),
        (((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 5)), np.ones((2, 1, 1, 6), dtype=np.int64), "boolean"),
    ],
)
def test_clear_errors(shapes, mask, message):
    """The backend and the bare extension both refuse bad input with the reference's words."""
    from minitransformer._ext import attention as kernels

    q, k, v = (np.zeros(shape) for shape in shapes)
    with pytest.raises(ValueError, match=message):
        cython_backend.attention_forward(q, k, v, mask)
    with pytest.raises(ValueError, match=message):
        reference.check_attention_inputs(q, k, v, mask)
    with pytest.raises(ValueError, match=message):
        kernels.attention_forward(q, k, v, mask)


@needs_extension
def test_clear_errors_backward_and_dtype():
    from minitransformer._ext import attention as kernels

    q, k, v, dout = random_inputs(np.random.default_rng(0), 2, 2, 3, 4, 5, np.float64)
    _, probs = kernels.attention_forward(q, k, v)
    with pytest.raises(ValueError, match="dout has shape"):
        kernels.attention_backward(dout[:, :, :2], q, k, v, probs)
    with pytest.raises(ValueError, match="probs has shape"):
        kernels.attention_backward(dout, q, k, v, probs[..., :3])
    with pytest.raises(ValueError, match="float32 or float64"):
        kernels.attention_forward(q.astype(np.int32), k.astype(np.int32), v.astype(np.int32))


def test_unavailable_reason_says_what_to_do(monkeypatch):
    """Without the extension (simulated here), the backend refuses with a clear sentence."""
    monkeypatch.setattr(cython_backend, "_kernels", None)
    monkeypatch.setattr(cython_backend, "_import_error", ImportError("No module named 'attention'"))
    reason = cython_backend.unavailable_reason()
    assert "not built" in reason and "make setup" in reason and "C compiler" in reason
    with pytest.raises(backends.BackendUnavailable, match="not built"):
        backends.get("cython")
    q = np.zeros((1, 1, 2, 3))
    with pytest.raises(backends.BackendUnavailable, match="make setup"):
        cython_backend.attention_forward(q, q, q, None)


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES)
def test_row_blocks_give_the_same_results(dtype, monkeypatch):
    """The plain kernels take the queries a block of rows at a time (ROW_BLOCK_BYTES);
    blocks of 1, 4 and 7 rows, the last one partial, match the reference."""
    from minitransformer._ext import attention as kernels

    rng = np.random.default_rng(13)
    q, k, v, dout = random_inputs(rng, 2, 3, 25, 19, 9, dtype)
    mask = np.tril(np.ones((25, 19), dtype=bool), k=2)[None, None] & padding_mask(rng, 2, 19)
    itemsize = np.dtype(dtype).itemsize
    for rows in (1, 4, 7):
        monkeypatch.setattr(kernels, "ROW_BLOCK_BYTES", rows * 19 * itemsize)
        assert kernels._row_block(25, 19, itemsize) == rows
        compare_with_reference(q, k, v, dout, mask, TOLERANCES[dtype])


@needs_extension
def test_fma_peak_is_measured_on_every_path():
    """The benchmarks' peak: a positive, finite rate on the path in use, for one thread and
    for two. (How the two compare is a matter of timing on shared cores, so it is the
    benchmark's to report, not a test's to assert.)"""
    from minitransformer._ext import attention as kernels

    for n_threads in (1, 2):
        rate = kernels.fma_peak_gflops(n_threads=n_threads, steps=200_000, repeats=2)
        assert 0 < rate < 10_000 * n_threads  # GFLOP/s per core: no known CPU is outside this


@needs_extension
def test_results_do_not_depend_on_thread_count():
    """Each (b, h) problem (each query block, when blocked) is computed by one thread from
    start to finish, so one thread and several give the same bits."""
    from minitransformer._ext import attention as kernels

    rng = np.random.default_rng(12)
    q, k, v, dout = random_inputs(rng, 3, 4, 37, 29, 8, np.float32)
    causal = np.tril(np.ones((37, 29), dtype=bool))[None, None]  # (1, 1, T, S)
    mask = causal & padding_mask(rng, 3, 29)  # (B, 1, T, S)
    chosen = kernels.max_threads()
    results = {}
    try:
        for n_threads in (1, 2, 3):
            kernels.set_max_threads(n_threads)
            out, probs = kernels.attention_forward(q, k, v, mask)
            grads = kernels.attention_backward(dout, q, k, v, probs)
            out_b, lse = kernels.attention_forward_blocked(q, k, v, mask, 8)
            grads_b = kernels.attention_backward_blocked(dout, q, k, v, out_b, lse, mask, 8)
            results[n_threads] = (out, probs, *grads, out_b, lse, *grads_b)
    finally:
        kernels.set_max_threads(chosen)
    for n_threads in (2, 3):
        assert all(np.array_equal(a, b) for a, b in zip(results[1], results[n_threads])), n_threads
    with pytest.raises(ValueError, match="positive integer"):
        kernels.set_max_threads(0)


def _isa_in_subprocess(value):
    """(path in use, the backend's unavailable reason) in a fresh process with MINITRANSFORMER_ISA=value."""
    import json
    import os
    import subprocess
    import sys

    code = ("import json; from minitransformer import _ext; from minitransformer.backends import cython_backend; "
            "print(json.dumps([_ext.isa_used(), cython_backend.unavailable_reason()]))")
    env = dict(os.environ, MINITRANSFORMER_ISA=value)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(result.stdout)


@needs_extension
def test_the_isa_variable_forces_a_path_or_says_why_it_cannot():
    """MINITRANSFORMER_ISA=baseline runs every kernel on the baseline path; a path this CPU
    cannot run (or a typo) makes the backend unavailable with a sentence naming the paths
    that can, instead of crashing on an illegal instruction."""
    from minitransformer import _ext

    assert _isa_in_subprocess("baseline") == ["baseline", None]
    assert _isa_in_subprocess(" AVX2 ")[0] in ("avx2", None) or "avx2" not in _ext.isa_paths()
    foreign = "neon" if "neon" not in _ext.isa_paths() else "avx512"
    for value in (foreign, "sse9"):
        used, reason = _isa_in_subprocess(value)
        assert reason is not None and f"MINITRANSFORMER_ISA={value!r} cannot run here" in reason
        assert ", ".join(_ext.isa_paths()) in reason
    # and asking for the backend by name raises BackendUnavailable with that sentence
    import os
    import subprocess
    import sys

    code = "from minitransformer import backends; backends.get('cython')"
    env = dict(os.environ, MINITRANSFORMER_ISA=foreign)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode != 0 and "BackendUnavailable" in result.stderr and "cannot run here" in result.stderr


@needs_extension
def test_every_supported_path_is_offered_and_the_best_is_chosen():
    from minitransformer import _ext

    paths = _ext.isa_paths()
    assert paths[0] == "baseline" and len(set(paths)) == len(paths)
    assert _isa_in_subprocess("") == [paths[-1], None]  # unset: the widest path the CPU runs
    assert set(paths) <= {"baseline", "avx2", "avx512", "neon"}
    rows, columns = _ext.isa_tile()
    assert rows in (6, 8) and columns % 4 == 0
    with pytest.raises(ValueError, match="cannot run here"):
        _ext.use_isa("riscv-vector")
