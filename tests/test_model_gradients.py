"""The whole model, end to end: the loss against every parameter tensor, by finite differences.

For each tensor a few entries are sampled (all of them for small tensors); the analytic
gradient from Transformer.backward must match the centered difference of the full loss to
1e-6 relative, in float64, with dropout and label smoothing switched on.
"""

import numpy as np
import pytest

from minitransformer.gradcheck import assert_errors_below, numerical_gradient, rel_error
from minitransformer.model import make_model

from helpers import padded_batch, tiny_config

ENTRIES_PER_TENSOR = 6

VARIANTS = {
    "post-norm, untied": dict(pre_norm=False, tie_output=False),
    "pre-norm, tied output": dict(pre_norm=True, tie_output=True),
    "post-norm, one shared embedding": dict(
        pre_norm=False, tie_output=True, share_embeddings=True, tgt_vocab_size=11
    ),
    "pre-norm, local attention (window 1)": dict(pre_norm=True, attention_window=1),
    "post-norm, blocked attention core (blocks of 2)": dict(attention_core="blocked", attention_block_size=2),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_loss_gradient_of_every_parameter_tensor(variant):
    config = tiny_config(dropout=0.1, **VARIANTS[variant])
    model = make_model(config, seed=3)
    rng = np.random.default_rng(0)
    # give biases and norms non-trivial values, so no gradient is checked only at a special point
    for key, value in model.params.items():
        if not key.endswith("weight") and ".w_" not in key:
            value += 0.1 * rng.standard_normal(value.shape)
    src = padded_batch(rng, config.src_vocab_size, [5, 3, 4], width=5)
    tgt = padded_batch(rng, config.tgt_vocab_size, [6, 4, 2], width=6, bos=2)
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]

    def loss():  # the same dropout masks on every call
        return model.loss(src, tgt_in, tgt_out, smoothing=0.1, rng=np.random.default_rng(42))

    model.loss_and_grads(src, tgt_in, tgt_out, smoothing=0.1, rng=np.random.default_rng(42))
    errors = {}
    for key, param in model.params.items():
        all_indices = list(np.ndindex(*param.shape))
        if len(all_indices) > ENTRIES_PER_TENSOR:
            picks = rng.choice(len(all_indices), ENTRIES_PER_TENSOR, replace=False)
            all_indices = [all_indices[i] for i in picks]
        numeric = numerical_gradient(loss, param, indices=all_indices)
        analytic = np.zeros_like(param)
        for index in all_indices:
            analytic[index] = model.grads[key][index]
        errors[key] = rel_error(analytic, numeric)
    assert len(errors) == len(model.params)
    assert_errors_below(errors, 1e-6)


def test_padding_embedding_row_gets_no_gradient():
    config = tiny_config()
    model = make_model(config, seed=0)
    rng = np.random.default_rng(1)
    src = padded_batch(rng, config.src_vocab_size, [5, 2], width=5)
    tgt = padded_batch(rng, config.tgt_vocab_size, [4, 2], width=4, bos=2)
    model.loss_and_grads(src, tgt[:, :-1], tgt[:, 1:], smoothing=0.1)
    assert np.all(model.grads["src_embed.weight"][config.pad_id] == 0)
    assert np.all(model.grads["tgt_embed.weight"][config.pad_id] == 0)


def test_padding_does_not_change_the_loss():
    """Extra padding columns must change nothing: not the loss, not a gradient."""
    config = tiny_config()
    model = make_model(config, seed=0)
    rng = np.random.default_rng(2)
    src = padded_batch(rng, config.src_vocab_size, [4, 2], width=4)
    tgt = padded_batch(rng, config.tgt_vocab_size, [5, 3], width=5, bos=2)
    loss = model.loss_and_grads(src, tgt[:, :-1], tgt[:, 1:])
    grads = {key: value.copy() for key, value in model.grads.items()}
    wide_src = np.pad(src, ((0, 0), (0, 3)))
    wide_tgt = np.pad(tgt, ((0, 0), (0, 2)))
    wide_loss = model.loss_and_grads(wide_src, wide_tgt[:, :-1], wide_tgt[:, 1:])
    assert wide_loss == pytest.approx(loss, rel=1e-12)
    for key in grads:
        np.testing.assert_allclose(model.grads[key], grads[key], rtol=1e-10, atol=1e-14, err_msg=key)


def test_parameter_count_and_dtypes():
    config = tiny_config(dtype="float32", tie_output=True)
    model = make_model(config)
    D, F, V_src, V_tgt, N = 8, 12, 11, 13, 2
    attention = 4 * (D * D + D)
    norm = 2 * D
    ffn = D * F + F + F * D + D
    expected = (
        V_src * D + V_tgt * D  # embeddings (the output projection is tied: no extra matrix)
        + N * (attention + ffn + 2 * norm)  # encoder layers
        + N * (2 * attention + ffn + 3 * norm)  # decoder layers
        + V_tgt  # output bias
    )
    assert model.num_parameters() == expected
    assert all(value.dtype == np.float32 for value in model.params.values())
    assert "generator.weight" not in model.params
    assert make_model(tiny_config()).params["generator.weight"].dtype == np.float64


def test_local_attention_is_a_band_and_a_wide_window_is_global():
    config = tiny_config(attention_window=1)
    model = make_model(config, seed=0)
    rng = np.random.default_rng(4)
    src = padded_batch(rng, config.src_vocab_size, [5, 4], width=5)
    tgt = padded_batch(rng, config.tgt_vocab_size, [5, 3], width=5, bos=2)
    logits, cache = model.forward(src, tgt)
    maps = model.attention_maps(cache)
    distance = np.abs(np.arange(5)[:, None] - np.arange(5)[None, :])
    for probs in maps["encoder"] + maps["decoder_self"]:
        assert np.all(probs[..., distance > 1] == 0), "weights outside the band must be exactly 0"
    for probs in maps["cross"]:  # cross-attention stays global
        assert np.all(probs[0, :, :, :5] > 0)
    wide = make_model(tiny_config(attention_window=10), seed=0)
    full = make_model(tiny_config(), seed=0)
    np.testing.assert_array_equal(wide.forward(src, tgt)[0], full.forward(src, tgt)[0])
