"""The CuPy backend on an NVIDIA GPU, checked against the NumPy reference.

    attention core   forward (out, probs) and backward (dq, dk, dv) of cupy_backend against
                     layers/attention.py: float32 to 1e-5, float64 to 1e-12 relative error,
                     fixed and random shapes (T = 1, S ≠ T, odd Dh, S past one block of
                     threads), every kind of mask, fully masked rows exactly zero
    whole model      one training step of make_model(config, backend="cupy") against the
                     same step on NumPy: the loss and every gradient
    optimizer        an Adam step and clip_grad_norm on the GPU against the CPU
    residence        after a step, parameters, gradients and Adam moments are CuPy arrays,
                     and the attention core never waits for the GPU

Without CuPy or a GPU the whole module is skipped, saying why; tests/test_cupy_fallback.py
checks on every machine that the dispatch then explains itself and falls back.

    .venv/bin/python -m pytest -q tests/test_cupy_backend.py
"""

import numpy as np
import pytest

from minitransformer.backends import cupy_backend

_reason = cupy_backend.unavailable_reason()
if _reason is not None:
    pytest.skip(f"the cupy backend cannot run here: {_reason}", allow_module_level=True)

import cupy  # noqa: E402  (only importable, and only imported, where the backend runs)
import cupyx  # noqa: E402

from minitransformer import backends  # noqa: E402
from minitransformer.gradcheck import assert_errors_below, rel_error  # noqa: E402
from minitransformer.layers import attention as reference  # noqa: E402
from minitransformer.model import make_model  # noqa: E402
from minitransformer.optim import Adam, clip_grad_norm  # noqa: E402

from helpers import padded_batch, tiny_config  # noqa: E402

# float32 carries about 7 significant digits; cuBLAS and NumPy's BLAS add in different orders
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}
# a whole forward and backward chains a few dozen such products, losing about a digit more
MODEL_TOLERANCE = {"float32": 1e-4, "float64": 1e-10}
DTYPES = [np.float32, np.float64]


def on_device(array):
    """A CuPy copy of a NumPy array."""
    return cupy.asarray(array)


def head_split_view(array):
    """The same values as a non-contiguous (B, H, L, Dh) view on the device, the layout
    multihead_forward hands to the core (a (B, L, H, Dh) array transposed)."""
    return cupy.asarray(np.ascontiguousarray(array.transpose(0, 2, 1, 3))).transpose(0, 2, 1, 3)


def make_mask(rng, kind, batch, heads, n_queries, n_keys):
    """A boolean mask broadcastable to (B, H, T, S), in the layouts the model produces and some it does not."""
    if kind is None:
        return None
    key_positions = np.arange(n_keys)[None, :]  # (1, S)
    if kind == "padding":  # (B, 1, 1, S); row 0 is full length, others may be shorter or empty
        lengths = rng.integers(0, n_keys + 1, size=batch)
        lengths[0] = n_keys
        return (key_positions < lengths[:, None])[:, None, None, :]
    if kind == "causal":  # (1, 1, T, S)
        return np.tril(np.ones((n_queries, n_keys), dtype=bool))[None, None]
    if kind == "causal+padding":  # (B, 1, T, S), as the decoder's self-attention builds it
        lengths = rng.integers(1, n_keys + 1, size=batch)
        causal = np.tril(np.ones((n_queries, n_keys), dtype=bool))[None, None]  # (1, 1, T, S)
        return causal & (key_positions < lengths[:, None])[:, None, None, :]
    if kind == "full":  # (B, H, T, S), with about a quarter of the rows fully masked
        mask = rng.random((batch, heads, n_queries, n_keys)) < 0.6
        mask.reshape(-1, n_keys)[rng.random(batch * heads * n_queries) < 0.25] = False
        return mask
    if kind == "nothing allowed":  # (B, 1, T, S), every row fully masked
        return np.zeros((batch, 1, n_queries, n_keys), dtype=bool)
    if kind == "strided":  # (B, 1, T, S), a non-contiguous view of a larger array
        larger = rng.random((batch, 1, 2 * n_queries, 3 * n_keys)) < 0.7
        return larger[:, :, ::2, ::3]
    raise ValueError(f"unknown mask kind {kind!r}")


def compare_with_reference(rng, batch, heads, n_queries, n_keys, head_dim, mask_kind, dtype):
    """Run both cores on the same inputs; return {tensor: relative error} and the GPU results."""
    q = (1.5 * rng.standard_normal((batch, heads, n_queries, head_dim))).astype(dtype)  # (B, H, T, Dh)
    k = rng.standard_normal((batch, heads, n_keys, head_dim)).astype(dtype)  # (B, H, S, Dh)
    v = rng.standard_normal((batch, heads, n_keys, head_dim)).astype(dtype)  # (B, H, S, Dh)
    dout = rng.standard_normal((batch, heads, n_queries, head_dim)).astype(dtype)  # (B, H, T, Dh)
    mask = make_mask(rng, mask_kind, batch, heads, n_queries, n_keys)

    out_ref, probs_ref = reference.attention_forward(q, k, v, mask)
    dq_ref, dk_ref, dv_ref = reference.attention_backward(dout, q, k, v, probs_ref)

    q_gpu, k_gpu, v_gpu, dout_gpu = head_split_view(q), on_device(k), on_device(v), head_split_view(dout)
    mask_gpu = None if mask is None else on_device(mask)
    out, probs = cupy_backend.attention_forward(q_gpu, k_gpu, v_gpu, mask_gpu)
    dq, dk, dv = cupy_backend.attention_backward(dout_gpu, q_gpu, k_gpu, v_gpu, probs)

    results = {"out": out, "probs": probs, "dq": dq, "dk": dk, "dv": dv}
    references = {"out": out_ref, "probs": probs_ref, "dq": dq_ref, "dk": dk_ref, "dv": dv_ref}
    for tensor, value in results.items():
        assert isinstance(value, cupy.ndarray), f"{tensor} left the GPU"
        assert value.dtype == dtype, f"{tensor} has dtype {value.dtype}, the inputs {np.dtype(dtype)}"
        assert value.shape == references[tensor].shape, f"{tensor} has shape {value.shape}"
    errors = {tensor: rel_error(cupy.asnumpy(results[tensor]), references[tensor]) for tensor in results}
    return errors, {tensor: cupy.asnumpy(value) for tensor, value in results.items()}, mask


# (B, H, T, S, Dh, mask): each line exercises one thing
CASES = [
    (2, 3, 5, 7, 8, "padding"),  # S ≠ T
    (1, 1, 1, 1, 1, None),  # the smallest case: one query, one key, Dh = 1
    (3, 2, 1, 9, 5, "padding"),  # T = 1, as in incremental decoding; odd Dh
    (2, 2, 6, 6, 7, "causal+padding"),  # the decoder's self-attention mask
    (2, 2, 5, 5, 4, "causal"),
    (2, 4, 11, 4, 33, "full"),  # a mask of full shape with fully masked rows
    (2, 1, 4, 3, 64, "nothing allowed"),  # every row fully masked
    (2, 3, 4, 40, 6, "strided"),  # a mask that is a strided view
    (1, 2, 3, 700, 16, "padding"),  # S past the 256-thread block: several keys per thread
    (1, 1, 2, 257, 3, "full"),  # S one past a power of two
    (1, 1, 2, 256, 3, None),  # S exactly one full block
    (4, 8, 32, 32, 64, "padding"),  # a training-sized tile
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda dtype: np.dtype(dtype).name)
@pytest.mark.parametrize("case", CASES, ids=lambda case: "B{}-H{}-T{}-S{}-Dh{}-{}".format(*case))
def test_attention_core_matches_reference(case, dtype):
    rng = np.random.default_rng(sum(case[:5]))
    errors, _, _ = compare_with_reference(rng, *case, dtype)
    assert_errors_below(errors, TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda dtype: np.dtype(dtype).name)
def test_attention_core_matches_reference_on_random_shapes(dtype):
    rng = np.random.default_rng(7)
    for trial in range(20):
        batch, heads = int(rng.integers(1, 4)), int(rng.integers(1, 5))
        n_queries, n_keys, head_dim = int(rng.integers(1, 24)), int(rng.integers(1, 300)), int(rng.integers(1, 70))
        kinds = [None, "padding", "full", "strided"] + (["causal+padding"] if n_queries == n_keys else [])
        mask_kind = kinds[int(rng.integers(len(kinds)))]
        errors, _, _ = compare_with_reference(rng, batch, heads, n_queries, n_keys, head_dim, mask_kind, dtype)
        shape = f"trial {trial}: B={batch} H={heads} T={n_queries} S={n_keys} Dh={head_dim} mask={mask_kind}"
        assert_errors_below({f"{shape}, {tensor}": error for tensor, error in errors.items()}, TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda dtype: np.dtype(dtype).name)
def test_masked_keys_and_fully_masked_rows_get_exactly_zero(dtype):
    rng = np.random.default_rng(3)
    _, results, mask = compare_with_reference(rng, 3, 2, 6, 9, 5, "full", dtype)
    allowed = np.broadcast_to(mask, results["probs"].shape)  # (B, H, T, S)
    dead_rows = ~allowed.any(axis=-1)  # (B, H, T)
    assert dead_rows.any() and not dead_rows.all(), "the mask should mix live and fully masked rows"
    assert np.all(results["probs"][~allowed] == 0), "a masked key got a nonzero weight"
    assert np.all(results["out"][dead_rows] == 0), "a fully masked row produced a nonzero output"
    assert np.all(results["dq"][dead_rows] == 0), "a fully masked row produced a nonzero dq"
    live_sums = results["probs"].sum(axis=-1)[~dead_rows]  # (rows,)
    np.testing.assert_allclose(live_sums, 1.0, rtol=10 * TOLERANCE[dtype])


def test_attention_core_never_waits_for_the_gpu():
    rng = np.random.default_rng(5)
    q = head_split_view(rng.standard_normal((4, 2, 6, 8)).astype(np.float32))  # (B, H, T, Dh)
    k = on_device(rng.standard_normal((4, 2, 9, 8)).astype(np.float32))  # (B, H, S, Dh)
    v = on_device(rng.standard_normal((4, 2, 9, 8)).astype(np.float32))  # (B, H, S, Dh)
    mask = on_device(make_mask(rng, "padding", 4, 2, 6, 9))  # (B, 1, 1, S)
    dout = cupy.ones_like(q)  # (B, H, T, Dh)
    # once outside, so compiling and allocating are not what is measured
    out, probs = cupy_backend.attention_forward(q, k, v, mask)
    cupy_backend.attention_backward(dout, q, k, v, probs)
    with cupyx.allow_synchronize(False):  # raises cupyx.DeviceSynchronized on any host sync
        out, probs = cupy_backend.attention_forward(q, k, v, mask)
        cupy_backend.attention_backward(dout, q, k, v, probs)


def test_attention_core_rejects_host_arrays_and_half_precision():
    q = np.zeros((1, 1, 2, 4), dtype=np.float32)
    with pytest.raises(TypeError, match="needs CuPy arrays"):
        cupy_backend.attention_forward(q, q, q)
    half = cupy.zeros((1, 1, 2, 4), dtype=cupy.float16)
    with pytest.raises(TypeError, match="float32 and float64"):
        cupy_backend.attention_forward(half, half, half)


def test_dispatch_returns_the_cupy_backend():
    backend = backends.get("cupy")
    assert backend.name == "cupy" and backend.xp is cupy
    assert backends.get("auto").name == "cupy", "auto should prefer the GPU when it is usable"


# --- the whole model -------------------------------------------------------------------

MODEL_VARIANTS = {
    "post-norm, untied": dict(pre_norm=False, tie_output=False),
    "pre-norm, one shared tied embedding": dict(
        pre_norm=True, tie_output=True, share_embeddings=True, tgt_vocab_size=23
    ),
}


def step_batch(config):
    """A padded batch; the third source sentence is empty, so some attention rows are fully masked."""
    rng = np.random.default_rng(11)
    src = padded_batch(rng, config.src_vocab_size, [7, 4, 0, 6], width=7)  # (B, S)
    tgt = padded_batch(rng, config.tgt_vocab_size, [8, 3, 5, 2], width=8, bos=2)  # (B, T + 1)
    return src, tgt[:, :-1], tgt[:, 1:]


def model_config(dtype, **variant):
    overrides = dict(
        src_vocab_size=23, tgt_vocab_size=29, d_model=32, n_heads=4, d_ff=48, max_len=16, dtype=dtype
    )
    overrides.update(variant)
    return tiny_config(**overrides)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("variant", list(MODEL_VARIANTS))
def test_training_step_matches_numpy(variant, dtype):
    config = model_config(dtype, **MODEL_VARIANTS[variant])
    cpu = make_model(config, seed=4, backend="numpy")
    gpu = make_model(config, seed=4, backend="cupy")
    src, tgt_in, tgt_out = step_batch(config)
    # dropout off (rng=None): the two generators draw different masks, everything else must agree
    loss_cpu = cpu.loss_and_grads(src, tgt_in, tgt_out, smoothing=0.1, rng=None)
    loss_gpu = gpu.loss_and_grads(on_device(src), on_device(tgt_in), on_device(tgt_out), smoothing=0.1, rng=None)
    tolerance = MODEL_TOLERANCE[dtype]
    assert abs(loss_gpu - loss_cpu) <= tolerance * abs(loss_cpu), f"loss {loss_gpu} on the GPU, {loss_cpu} on the CPU"

    errors = {}
    for key, grad_cpu in cpu.grads.items():
        grad_gpu = gpu.grads[key]
        assert isinstance(grad_gpu, cupy.ndarray) and grad_gpu.dtype == grad_cpu.dtype, key
        if key.endswith(".b_k"):
            # exactly zero in exact arithmetic: q·b_k adds the same constant to a whole row of
            # scores, which a softmax ignores, so both sides hold rounding noise; bound its size
            # against the matching weight gradient instead of comparing noise with noise
            weight_scale = np.linalg.norm(cpu.grads[key[: -len(".b_k")] + ".w_k"])
            errors[key] = float(np.linalg.norm(cupy.asnumpy(grad_gpu))) / weight_scale
        else:
            errors[key] = rel_error(cupy.asnumpy(grad_gpu), grad_cpu)
    assert len(errors) == len(cpu.params)
    assert_errors_below(errors, tolerance)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda dtype: np.dtype(dtype).name)
def test_adam_and_clipping_match_numpy(dtype):
    rng = np.random.default_rng(2)
    shapes = {"w": (7, 5), "b": (5,), "e": (11, 3)}
    params_cpu = {key: rng.standard_normal(shape).astype(dtype) for key, shape in shapes.items()}
    params_gpu = {key: on_device(value) for key, value in params_cpu.items()}
    adam_cpu = Adam(params_cpu, weight_decay=0.01)
    adam_gpu = Adam(params_gpu, weight_decay=0.01)
    for step in range(3):
        grads_cpu = {key: (3.0 * rng.standard_normal(shape)).astype(dtype) for key, shape in shapes.items()}
        grads_gpu = {key: on_device(value) for key, value in grads_cpu.items()}
        norm_cpu = clip_grad_norm(grads_cpu, max_norm=1.0)
        norm_gpu = clip_grad_norm(grads_gpu, max_norm=1.0)
        assert isinstance(norm_gpu, float)
        assert abs(norm_gpu - norm_cpu) <= TOLERANCE[dtype] * norm_cpu, f"step {step}: norm {norm_gpu} vs {norm_cpu}"
        adam_cpu.step(params_cpu, grads_cpu, lr=1e-2)
        adam_gpu.step(params_gpu, grads_gpu, lr=1e-2)
    errors = {}
    for key in shapes:
        errors[f"param {key}"] = rel_error(cupy.asnumpy(params_gpu[key]), params_cpu[key])
        errors[f"m.{key}"] = rel_error(cupy.asnumpy(adam_gpu.m[key]), adam_cpu.m[key])
        errors[f"v.{key}"] = rel_error(cupy.asnumpy(adam_gpu.v[key]), adam_cpu.v[key])
    assert adam_gpu.step_count == adam_cpu.step_count == 3
    assert_errors_below(errors, TOLERANCE[dtype])


def test_training_state_stays_on_the_gpu():
    config = model_config("float32", dropout=0.1)
    model = make_model(config, seed=0, backend="cupy")
    optimizer = Adam(model.params)
    before = {key: value.copy() for key, value in model.params.items()}
    src, tgt_in, tgt_out = (on_device(ids) for ids in step_batch(config))
    dropout_rng = cupy.random.default_rng(0)  # dropout masks are drawn on the device

    loss = model.loss_and_grads(src, tgt_in, tgt_out, smoothing=0.1, rng=dropout_rng)
    clip_grad_norm(model.grads, max_norm=1.0)
    optimizer.step(model.params, model.grads, lr=1e-3)

    assert np.isfinite(loss)
    off_device = [
        f"{group}[{key}]"
        for group, tensors in (("params", model.params), ("grads", model.grads), ("m", optimizer.m), ("v", optimizer.v))
        for key, value in tensors.items()
        if not isinstance(value, cupy.ndarray)
    ]
    assert not off_device, f"not CuPy arrays after a step: {', '.join(off_device[:5])}"
    assert isinstance(model.positional_table, cupy.ndarray)
    # every tensor must move (the padding row is frozen, but each tensor has other entries),
    # except b_k, whose gradient is zero in exact arithmetic (see the test above)
    unchanged = [
        key for key in before if not key.endswith(".b_k") and bool(cupy.all(model.params[key] == before[key]))
    ]
    assert not unchanged, f"parameters the step did not change: {unchanged[:5]}"
