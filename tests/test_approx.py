"""The approximate attention cores of minitransformer/approx/, against exact attention.

Proven here, in float64:
  * every backward against centered finite differences (random features and samples
    frozen), to 1e-6 relative, with padded keys;
  * the limits that must be exact: Linformer with E = F = I; Nyström with as many
    landmarks as keys (after enough iterations of the pseudo-inverse); sampling every key
    without replacement;
  * Performer: both forms equal the explicit D⁻¹·φ(Q)·φ(K)ᵀ·V computed from the same
    features (the causal one across several chunks), and the estimate's error falls as the
    features grow;
  * bad parameters are one-line errors naming the parameter;
  * in the model: the loss's gradient for every parameter tensor with each method, and
    the cached decoder agreeing with the full recomputation.
"""

import numpy as np
import pytest

from minitransformer.approx import linformer, nystrom, performer, sampling
from minitransformer.approx.core import parse_attention
from minitransformer.config import ModelConfig
from minitransformer.decode import greedy_decode
from minitransformer.gradcheck import assert_errors_below, check_layer, numerical_gradient, rel_error
from minitransformer.layers.attention import attention_forward
from minitransformer.model import make_model

from helpers import padded_batch, tiny_config

B, H, T, DH = 2, 2, 7, 4


def inputs(rng, tgt_len=T, src_len=T, scale=1.0):
    q = rng.standard_normal((B, H, tgt_len, DH)) * scale
    k = rng.standard_normal((B, H, src_len, DH)) * scale
    v = rng.standard_normal((B, H, src_len, DH))
    return q, k, v


def padding(src_len=T, real=(7, 4)):
    """(B, 1, 1, S): batch entry b has real[b] real keys, then padding."""
    mask = np.zeros((B, 1, 1, src_len), bool)
    for b, n in enumerate(real):
        mask[b, ..., :n] = True
    return mask


# --- gradient checks -------------------------------------------------------------------------


def test_linformer_gradients(rng):
    q, k, v = inputs(rng)
    proj_k, proj_v = linformer.linformer_projections(3, T, rng)
    mask = padding()
    check_layer(lambda q, k, v, e, f: linformer.linformer_forward(q, k, v, e, f, mask), linformer.linformer_backward,
                dict(q=q, k=k, v=v, proj_k=proj_k, proj_v=proj_v))


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_performer_gradients(rng, causal):
    q, k, v = inputs(rng)
    omega = performer.orthogonal_features(6, DH, rng)  # frozen: drawn once, outside the check
    mask = padding()
    # chunk=3: the causal sums cross two chunk boundaries in 7 positions
    check_layer(lambda q, k, v: performer.performer_forward(q, k, v, omega, mask, causal, chunk=3),
                performer.performer_backward, dict(q=q, k=k, v=v))


def test_nystrom_gradients_through_the_unrolled_pseudo_inverse(rng):
    q, k, v = inputs(rng)
    check_layer(lambda q, k, v: nystrom.nystrom_forward(q, k, v, 3, padding()), nystrom.nystrom_backward,
                dict(q=q, k=k, v=v))


def test_pseudo_inverse_backward(rng):
    a = np.abs(rng.standard_normal((1, 2, 4, 4))) + np.eye(4)
    check_layer(lambda a: nystrom.pinv_forward(a, 4), nystrom.pinv_backward, dict(a=a))


@pytest.mark.parametrize("block_size", [1, 3])
def test_sampling_gradients_with_frozen_samples(rng, block_size):
    q, k, v = inputs(rng)
    mask = padding()
    _, cache = sampling.sampling_forward(q, k, v, 5, mask, rng, block_size=block_size)
    indices = cache[4]  # frozen
    check_layer(lambda q, k, v: sampling.sampling_forward(q, k, v, 5, mask, indices=indices, block_size=block_size),
                sampling.sampling_backward, dict(q=q, k=k, v=v))


# --- the limits that must be exact -----------------------------------------------------------


def test_linformer_with_identity_projections_is_exact(rng):
    q, k, v = inputs(rng)
    exact = attention_forward(q, k, v)[0]
    out, _ = linformer.linformer_forward(q, k, v, np.eye(T), np.eye(T))
    np.testing.assert_allclose(out, exact, rtol=0, atol=1e-13)
    # segment means with one segment per key are the identity
    np.testing.assert_array_equal(linformer.segment_mean_projection(T, T), np.eye(T))


def test_nystrom_with_a_landmark_per_key_is_exact(rng):
    # q = k with entries of size 3: each key scores highest with itself, so the (S, S)
    # weights are well conditioned and the pseudo-inverse iteration converges quickly
    q, _, v = inputs(rng, scale=3.0)
    exact = attention_forward(q, q, v)[0]
    errors = [np.abs(nystrom.nystrom_forward(q, q, v, T, iterations=n)[0] - exact).max() for n in (2, 6, 20)]
    assert errors[2] < 1e-10, errors  # converged: exact up to rounding
    assert errors[0] > errors[2]  # and it is the iteration that converges


def test_sampling_every_key_without_replacement_is_exact(rng):
    q, k, v = inputs(rng)
    mask = padding()
    for block_size in (1, 4):
        out, cache = sampling.sampling_forward(q, k, v, T, mask, rng, block_size=block_size, replace=False)
        np.testing.assert_allclose(out, attention_forward(q, k, v, mask)[0], rtol=0, atol=1e-13)


def test_implied_weights_reproduce_the_output(rng):
    """The trace's weights are the method's own: weights·V gives its output."""
    q, k, v = inputs(rng)
    mask = padding()
    omega = performer.orthogonal_features(8, DH, rng)
    e, f = linformer.linformer_projections(3, T, rng)
    cases = [
        (linformer.linformer_forward(q, k, v, e, f, mask), linformer.linformer_weights),
        (nystrom.nystrom_forward(q, k, v, 3, mask), nystrom.nystrom_weights),
        (sampling.sampling_forward(q, k, v, 4, mask, rng, block_size=2), sampling.sampling_weights),
        (performer.performer_forward(q, k, v, omega, mask), performer.performer_weights),
    ]
    for (out, cache), weights in cases:
        np.testing.assert_allclose(weights(cache) @ v, out, rtol=0, atol=1e-12, err_msg=weights.__name__)


# --- Performer ------------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_performer_equals_the_explicit_feature_product(rng, causal):
    q, k, v = inputs(rng, tgt_len=11, src_len=11)
    mask = padding(11, real=(11, 6))
    omega = performer.orthogonal_features(10, DH, rng)
    out, _ = performer.performer_forward(q, k, v, omega, mask, causal, chunk=4)
    root = DH**0.25
    phi_q = performer.feature_map(q / root, omega)  # (B, H, T, m)
    phi_k = performer.feature_map(k / root, omega, mask[..., 0, :, None], per_row=False)  # (B, H, S, m)
    weights = phi_q @ phi_k.swapaxes(-1, -2)  # (B, H, T, S): the explicit form
    if causal:
        weights = np.tril(weights)
    explicit = (weights @ v) / weights.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(out, explicit, rtol=1e-12, atol=1e-12)


def test_performer_features_are_orthogonal_in_blocks(rng):
    omega = performer.orthogonal_features(8, DH, rng)  # two blocks of Dh = 4
    for block in (omega[:4], omega[4:]):
        gram = block @ block.T
        np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-12)


def test_performer_error_falls_as_features_grow():
    """The statistical test: mean relative error over 8 seeds of features, at m = 8 and
    m = 512. The estimate's spread falls like 1/√m, so 64× the features should give about
    1/8 of the error; the bound asks for less than half (fixed seeds: this never flakes)."""
    rng = np.random.default_rng(5)
    q, k, v = inputs(rng, tgt_len=16, src_len=16, scale=0.7)
    exact = attention_forward(q, k, v)[0]

    def mean_error(n_features):
        errors = []
        for seed in range(8):
            omega = performer.orthogonal_features(n_features, DH, np.random.default_rng(seed))
            out, _ = performer.performer_forward(q, k, v, omega)
            errors.append(np.linalg.norm(out - exact) / np.linalg.norm(exact))
        return np.mean(errors)

    small, large = mean_error(8), mean_error(512)
    assert large < 0.5 * small, (small, large)
    assert large < 0.25  # measured: 0.44 at m = 8, 0.15 at m = 512


def test_fully_padded_rows_give_zero_not_nan(rng):
    q, k, v = inputs(rng)
    mask = padding(real=(7, 0))  # batch entry 1: no real key at all
    omega = performer.orthogonal_features(8, DH, rng)
    e, f = linformer.linformer_projections(3, T, rng)
    outs = [
        linformer.linformer_forward(q, k, v, e, f, mask)[0],
        performer.performer_forward(q, k, v, omega, mask)[0],
        performer.performer_forward(q, k, v, omega, mask, causal=True)[0],
        nystrom.nystrom_forward(q, k, v, 3, mask)[0],
        sampling.sampling_forward(q, k, v, 4, mask, rng)[0],
    ]
    for out in outs:
        assert np.all(np.isfinite(out)) and np.all(out[1] == 0)


# --- bad parameters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda q, k, v, rng: linformer.linformer_projections(0, T, rng), "rank k"),
        (lambda q, k, v, rng: linformer.segment_mean_projection(T + 1, T), "rank k"),
        (lambda q, k, v, rng: linformer.linformer_forward(q, k, v, np.eye(T), np.eye(T), causal=True), "causal"),
        (lambda q, k, v, rng: performer.orthogonal_features(-1, DH, rng), "features m"),
        (lambda q, k, v, rng: nystrom.nystrom_forward(q, k, v, T + 1), "landmarks"),
        (lambda q, k, v, rng: nystrom.nystrom_forward(q, k, v, 0), "landmarks"),
        (lambda q, k, v, rng: sampling.sampling_forward(q, k, v, 0, rng=rng), "samples m"),
        (lambda q, k, v, rng: sampling.sampling_forward(q, k, v, T + 1, rng=rng, replace=False), "samples m"),
    ],
)
def test_bad_parameters_are_one_line_errors_naming_the_parameter(rng, call, words):
    q, k, v = inputs(rng)
    with pytest.raises(ValueError) as error:
        call(q, k, v, rng)
    assert words in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "fields, words",
    [
        (dict(encoder_attention="linformer:0"), "encoder_attention: linformer rank k"),
        (dict(encoder_attention="performer"), "encoder_attention: performer needs its features m"),
        (dict(encoder_attention="lsh:8"), "unknown attention method 'lsh'"),
        (dict(decoder_attention="linformer:8"), "decoder_attention: linformer cannot be causal"),
        (dict(decoder_attention="nystrom:4"), "decoder_attention: nystrom cannot be causal"),
        (dict(encoder_attention="performer:8", attention_window=2), "attention_window"),
    ],
)
def test_bad_model_configs_name_the_field(fields, words):
    with pytest.raises(ValueError) as error:
        ModelConfig(src_vocab_size=10, tgt_vocab_size=10, **fields)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_spec_parsing():
    assert parse_attention("exact", "f") == ("exact", None)
    assert parse_attention("Performer:64", "f", causal=True) == ("performer", 64)


# --- in the model ----------------------------------------------------------------------------

MODEL_METHODS = {
    "linformer": dict(encoder_attention="linformer:3"),
    "performer, both sides": dict(encoder_attention="performer:8", decoder_attention="performer:8"),
    "nystrom": dict(encoder_attention="nystrom:2"),
    "sampling": dict(encoder_attention="sampling:3"),
}


def freeze_samples(model):
    """Reseed the sampling core's generator, so that every forward draws the same keys."""
    if hasattr(model.encoder_backend, "rng"):
        model.encoder_backend.rng = np.random.default_rng(9)


@pytest.mark.parametrize("method", list(MODEL_METHODS))
def test_model_gradients_with_each_method(method):
    config = tiny_config(**MODEL_METHODS[method])
    model = make_model(config, seed=3)
    rng = np.random.default_rng(0)
    src = padded_batch(rng, config.src_vocab_size, [5, 3, 4], width=5)
    tgt = padded_batch(rng, config.tgt_vocab_size, [6, 4, 2], width=6, bos=2)
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]

    def loss():
        freeze_samples(model)
        return model.loss(src, tgt_in, tgt_out, smoothing=0.1)

    freeze_samples(model)
    model.loss_and_grads(src, tgt_in, tgt_out, smoothing=0.1)
    errors = {}
    for key in [k for k in model.params if "self_attn.w_" in k or k.endswith("embed.weight")]:
        param = model.params[key]
        picks = [tuple(index) for index in rng.integers(0, param.shape, size=(4, param.ndim))]
        numeric = numerical_gradient(loss, param, indices=picks)
        analytic = np.zeros_like(param)
        for index in picks:
            analytic[index] = model.grads[key][index]
        errors[key] = rel_error(analytic, numeric)
    assert_errors_below(errors, 1e-6)


@pytest.mark.parametrize("method", ["performer, both sides", "linformer"])
def test_cached_decoding_agrees_with_recomputation(method):
    config = tiny_config(**MODEL_METHODS[method])
    model = make_model(config, seed=1)
    rng = np.random.default_rng(4)
    src = padded_batch(rng, config.src_vocab_size, [5, 3], width=5)
    cached = greedy_decode(model, src, bos_id=2, eos_id=3, max_len=8)
    assert cached == greedy_decode(model, src, bos_id=2, eos_id=3, max_len=8, use_cache=False)
    logits, cache = model.forward(src, np.full((2, 4), 2))
    maps = model.attention_maps(cache)
    assert maps["encoder"][0].shape == (2, config.n_heads, 5, 5)
    assert maps["decoder_self"][0].shape == (2, config.n_heads, 4, 4)


class PieceTokenizer:
    """Stands in for the tokenizer (as in test_trace.py): one readable piece per id."""

    pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3

    def src_pieces(self, ids):
        return [f"▁en{i}" for i in ids]

    def tgt_pieces(self, ids):
        return [f"▁fr{i}" for i in ids]

    def decode_tgt(self, ids):
        return " ".join(f"fr{i}" for i in ids if i > 3)


@pytest.mark.parametrize("method", list(MODEL_METHODS))
def test_trace_and_html_view_with_each_method(method, tmp_path):
    from minitransformer.trace import record_trace
    from minitransformer.viz.html import render_html

    config = tiny_config(**MODEL_METHODS[method])
    model = make_model(config, seed=1)
    trace = record_trace(model, PieceTokenizer(), [5, 9, 7, 4, 6], max_len=6, with_saliency=False)
    assert np.all(np.isfinite(trace.encoder)) and np.all(np.isfinite(trace.decoder_self))
    if method != "sampling":  # the sampled keys differ between the trace's passes
        src = np.array([trace.source_ids])
        _, cache = model.forward(src, np.array([[2] + trace.output_ids[:-1]]))
        np.testing.assert_allclose(trace.encoder[:, :, :, :], np.stack([m[0] for m in model.attention_maps(cache)["encoder"]]),
                                   rtol=0, atol=1e-12)
    assert "<html" in render_html(trace).lower()
