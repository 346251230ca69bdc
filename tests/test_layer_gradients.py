"""Every layer's backward against a centered finite difference, in float64 (tolerance 1e-6).

A failure names the tensor and its relative error (see minitransformer/gradcheck.py).
"""

import numpy as np
import pytest

from minitransformer.backends.numpy_backend import kernels as numpy_kernels
from minitransformer.gradcheck import check_layer
from minitransformer.layers.attention import attention_backward, attention_forward
from minitransformer.layers.decoder import (
    decoder_backward,
    decoder_forward,
    decoder_layer_backward,
    decoder_layer_forward,
)
from minitransformer.layers.dropout import dropout_backward, dropout_forward
from minitransformer.layers.embedding import embedding_backward, embedding_forward
from minitransformer.layers.encoder import (
    encoder_backward,
    encoder_forward,
    encoder_layer_backward,
    encoder_layer_forward,
)
from minitransformer.layers.feedforward import feedforward_backward, feedforward_forward
from minitransformer.layers.layernorm import layernorm_backward, layernorm_forward
from minitransformer.layers.linear import linear_backward, linear_forward
from minitransformer.layers.loss import cross_entropy_backward, cross_entropy_forward
from minitransformer.layers.multihead import multihead_backward, multihead_forward
from minitransformer.layers.output import output_backward, output_forward
from minitransformer.layers.positional import positional_backward, positional_forward, sinusoidal_table
from minitransformer.layers.relu import relu_backward, relu_forward
from minitransformer.layers.residual import residual_backward, residual_forward
from minitransformer.model import causal_mask, init_params, padding_mask
from minitransformer.params import add_into, subtree

from helpers import tiny_config

TOL = 1e-6


def check_with_params(forward, backward, arrays, params, tol=TOL):
    """Finite-difference check of a layer that takes arrays plus a dict of parameters.

    forward(*arrays, params) -> (out, cache); backward(dout, cache) -> (d_arrays..., grads dict).
    """
    names = list(arrays) + [f"param {key}" for key in params]
    keys = list(params)
    n_arrays = len(arrays)

    def flat_forward(*flat):
        return forward(*flat[:n_arrays], dict(zip(keys, flat[n_arrays:])))

    def flat_backward(dout, cache):
        *d_arrays, grads = backward(dout, cache)
        flat_grads = {}
        add_into(flat_grads, "", grads)  # nested {"ffn": {"w_1": …}} -> {"ffn.w_1": …}
        return tuple(d_arrays) + tuple(flat_grads[key] for key in keys)

    inputs = dict(zip(names, list(arrays.values()) + list(params.values())))
    return check_layer(flat_forward, flat_backward, inputs, tol=tol)


def test_linear(rng):
    inputs = {"x": rng.standard_normal((2, 3, 4)), "weight": rng.standard_normal((4, 5)), "bias": rng.standard_normal(5)}
    check_layer(linear_forward, linear_backward, inputs)


def test_embedding_gradient_and_frozen_padding_row(rng):
    ids = np.array([[4, 0, 2, 4], [1, 1, 0, 3]])
    pad_id = 0
    weight = rng.standard_normal((6, 5))

    errors = check_layer(
        lambda w: embedding_forward(ids, w),
        lambda dout, cache: (embedding_backward(dout, cache, pad_id=None),),
        {"weight": weight},
    )
    assert errors["weight"] < TOL
    out, cache = embedding_forward(ids, weight)
    np.testing.assert_allclose(out[0, 0], weight[4] * np.sqrt(5))
    dweight = embedding_backward(np.ones_like(out), cache, pad_id=pad_id)
    assert np.all(dweight[pad_id] == 0), "the padding row must get no gradient"
    assert np.all(dweight[4] == 2 * np.sqrt(5)), "a repeated id accumulates its gradient"


def test_positional_encoding(rng):
    table = sinusoidal_table(10, 6, np.float64)
    # the closed form of section 3.5, entry by entry
    pos, i = 7, 1
    assert table[pos, 2 * i] == pytest.approx(np.sin(pos / 10000 ** (2 * i / 6)))
    assert table[pos, 2 * i + 1] == pytest.approx(np.cos(pos / 10000 ** (2 * i / 6)))
    odd = sinusoidal_table(4, 5, np.float64)  # an odd width keeps its last sine channel
    assert odd.shape == (4, 5) and odd[3, 4] == pytest.approx(np.sin(3 / 10000 ** (4 / 5)))
    check_layer(lambda x: positional_forward(x, table, offset=2), lambda d, c: (positional_backward(d, c),),
                {"x": rng.standard_normal((2, 3, 6))})
    with pytest.raises(ValueError, match="maximum of 10 positions"):
        positional_forward(np.zeros((1, 11, 6)), table)


def test_dropout(rng):
    x = rng.standard_normal((4, 5, 6))

    def forward(x):  # the same seed every call, so the finite difference sees one mask
        return dropout_forward(x, 0.3, np.random.default_rng(7))

    check_layer(forward, lambda d, c: (dropout_backward(d, c),), {"x": x})
    y, _ = forward(x)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.7)
    assert 0.5 < kept.mean() < 0.9
    # reproducible from the seed, identity in evaluation
    np.testing.assert_array_equal(forward(x)[0], y)
    assert dropout_forward(x, 0.3, None)[0] is x
    # the expectation is preserved (inverted dropout)
    big = np.ones(200_000)
    assert dropout_forward(big, 0.3, np.random.default_rng(0))[0].mean() == pytest.approx(1.0, abs=0.01)


def test_relu(rng):
    x = rng.standard_normal((3, 7))
    x[np.abs(x) < 1e-3] = 0.5  # keep clear of the kink, where the derivative is undefined
    check_layer(relu_forward, lambda d, c: (relu_backward(d, c),), {"x": x})


def test_layernorm(rng):
    inputs = {"x": rng.standard_normal((2, 3, 6)) * 3 + 1, "gamma": rng.standard_normal(6), "beta": rng.standard_normal(6)}
    check_layer(layernorm_forward, layernorm_backward, inputs)
    y, _ = layernorm_forward(inputs["x"], np.ones(6), np.zeros(6))
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(-1), 1, atol=1e-4)


MASKS = {
    "none": lambda B, T, S: None,
    "padding": lambda B, T, S: np.arange(S)[None, None, None, :] < np.array([S, max(S - 2, 1)])[:B, None, None, None],
    "causal": lambda B, T, S: np.tril(np.ones((T, S), dtype=bool))[None, None],
    "fully_masked_rows": lambda B, T, S: np.broadcast_to(
        (np.arange(T)[:, None] % 2 == 0) & np.ones((1, S), dtype=bool), (B, 1, T, S)
    ),
}


@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("shape", [(2, 2, 4, 4, 3), (2, 3, 1, 5, 2), (2, 1, 5, 3, 5)])
def test_attention_core(rng, mask_name, shape):
    B, H, T, S, Dh = shape
    mask = MASKS[mask_name](B, T, S)
    inputs = {
        "q": rng.standard_normal((B, H, T, Dh)),
        "k": rng.standard_normal((B, H, S, Dh)),
        "v": rng.standard_normal((B, H, S, Dh)),
    }

    def backward(dout, cache):
        q, k, v, probs = cache
        return attention_backward(dout, q, k, v, probs)

    def forward(q, k, v):
        out, probs = attention_forward(q, k, v, mask)
        return out, (q, k, v, probs)

    check_layer(forward, backward, inputs)


def test_attention_fully_masked_rows_give_zero_not_nan(rng):
    q, k, v = (rng.standard_normal((1, 2, 3, 4)) for _ in range(3))
    mask = np.array([True, False, True])[None, None, :, None] & np.ones((1, 1, 1, 3), dtype=bool)
    out, probs = attention_forward(q, k, v, mask)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(probs))
    assert np.all(probs[:, :, 1] == 0) and np.all(out[:, :, 1] == 0)
    np.testing.assert_allclose(probs[:, :, [0, 2]].sum(-1), 1)
    dq, dk, dv = attention_backward(np.ones_like(out), q, k, v, probs)
    assert np.all(dq[:, :, 1] == 0) and np.all(np.isfinite(dk)) and np.all(np.isfinite(dv))


def test_attention_keeps_dtype_and_matches_the_formula(rng):
    q, k, v = (rng.standard_normal((2, 2, 3, 4)).astype(np.float32) for _ in range(3))
    out, probs = attention_forward(q, k, v, None)
    assert out.dtype == np.float32 and probs.dtype == np.float32
    scores = np.einsum("bhtd,bhsd->bhts", q.astype(np.float64), k) / 2.0
    expected = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-5)


def attention_params(rng, d_model):
    params = {}
    for name in "qkvo":
        params[f"w_{name}"] = rng.standard_normal((d_model, d_model)) / np.sqrt(d_model)
        params[f"b_{name}"] = rng.standard_normal(d_model) * 0.1
    return params


@pytest.mark.parametrize("kind", ["self", "causal_self", "cross"])
def test_multihead_attention(rng, kind):
    B, T, S, D, H = 2, 4, 5, 6, 3
    x_q = rng.standard_normal((B, T, D))
    x_kv = x_q if kind != "cross" else rng.standard_normal((B, S, D))
    length = x_kv.shape[1]
    mask = padding_mask(np.array([[1] * length, [1] * (length - 2) + [0, 0]]), 0)
    if kind == "causal_self":
        mask = mask & causal_mask(T)
    params = attention_params(rng, D)
    if kind == "cross":
        check_with_params(
            lambda x_q, x_kv, p: multihead_forward(x_q, x_kv, p, H, mask, numpy_kernels),
            multihead_backward,
            {"x_q": x_q, "x_kv": x_kv},
            params,
        )
    else:
        def backward(dout, cache):
            dx_q, dx_kv, grads = multihead_backward(dout, cache)
            return dx_q + dx_kv, grads

        check_with_params(
            lambda x, p: multihead_forward(x, x, p, H, mask, numpy_kernels), backward, {"x": x_q}, params
        )


def test_feedforward_with_dropout(rng):
    D, F = 5, 7
    params = {
        "w_1": rng.standard_normal((D, F)), "b_1": rng.standard_normal(F),
        "w_2": rng.standard_normal((F, D)), "b_2": rng.standard_normal(D),
    }
    check_with_params(
        lambda x, p: feedforward_forward(x, p, 0.25, np.random.default_rng(3), numpy_kernels),
        feedforward_backward,
        {"x": rng.standard_normal((2, 3, D))},
        params,
    )


@pytest.mark.parametrize("pre_norm", [False, True])
def test_residual_layernorm(rng, pre_norm):
    D = 5
    weight = rng.standard_normal((D, D))

    def forward(x, p):
        sublayer = lambda h: linear_forward(h, weight, np.zeros(D))  # noqa: E731
        return residual_forward(x, sublayer, p, pre_norm, 0.2, np.random.default_rng(5), 1e-5, numpy_kernels)

    def backward(dout, cache):
        def sublayer_backward(dh, sub_cache):
            dx, _, _ = linear_backward(dh, sub_cache)
            return dx, None

        dx, norm_grads, _ = residual_backward(dout, cache, sublayer_backward)
        return dx, norm_grads

    params = {"gamma": rng.standard_normal(D), "beta": rng.standard_normal(D)}
    check_with_params(forward, backward, {"x": rng.standard_normal((2, 3, D))}, params)


def stack_params(config, prefix, rng):
    """The encoder or decoder part of a freshly initialised model, with non-trivial norms."""
    params = subtree(init_params(config, seed=int(rng.integers(1000))), prefix)
    for key in params:
        if key.endswith(("gamma", "beta")) or key.split(".")[-1].startswith("b_"):
            params[key] = params[key] + 0.1 * rng.standard_normal(params[key].shape)
    return params


@pytest.mark.parametrize("pre_norm", [False, True])
def test_encoder_layer_and_stack(rng, pre_norm):
    config = tiny_config(pre_norm=pre_norm, dropout=0.1)
    params = stack_params(config, "encoder", rng)
    mask = padding_mask(np.array([[5, 6, 7, 8], [5, 6, 0, 0]]), 0)
    x = rng.standard_normal((2, 4, config.d_model))
    check_with_params(
        lambda x, p: encoder_layer_forward(x, p, config, mask, numpy_kernels, np.random.default_rng(1)),
        encoder_layer_backward,
        {"x": x},
        subtree(params, "layers.0"),
    )
    check_with_params(
        lambda x, p: encoder_forward(x, p, config, mask, numpy_kernels, np.random.default_rng(1)),
        encoder_backward,
        {"x": x},
        params,
    )


@pytest.mark.parametrize("pre_norm", [False, True])
def test_decoder_layer_and_stack(rng, pre_norm):
    config = tiny_config(pre_norm=pre_norm, dropout=0.1)
    params = stack_params(config, "decoder", rng)
    tgt = np.array([[2, 5, 6, 7, 8], [2, 5, 6, 0, 0]])
    self_mask = causal_mask(5) & padding_mask(tgt, 0)
    cross_mask = padding_mask(np.array([[5, 6, 7], [5, 0, 0]]), 0)
    y = rng.standard_normal((2, 5, config.d_model))
    memory = rng.standard_normal((2, 3, config.d_model))
    check_with_params(
        lambda y, m, p: decoder_layer_forward(
            y, m, p, config, self_mask, cross_mask, numpy_kernels, np.random.default_rng(2)
        ),
        decoder_layer_backward,
        {"y": y, "memory": memory},
        subtree(params, "layers.1"),
    )
    check_with_params(
        lambda y, m, p: decoder_forward(y, m, p, config, self_mask, cross_mask, numpy_kernels, np.random.default_rng(2)),
        decoder_backward,
        {"y": y, "memory": memory},
        params,
    )


def test_output_projection(rng):
    inputs = {"h": rng.standard_normal((2, 3, 4)), "weight": rng.standard_normal((7, 4)), "bias": rng.standard_normal(7)}
    check_layer(output_forward, output_backward, inputs)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_label_smoothed_cross_entropy(rng, smoothing):
    targets = np.array([[3, 1, 0], [2, 0, 0]])  # 0 is padding
    logits = rng.standard_normal((2, 3, 5)) * 2

    def forward(logits):
        return cross_entropy_forward(logits, targets, pad_id=0, smoothing=smoothing)

    check_layer(forward, lambda dloss, cache: (cross_entropy_backward(cache) * dloss,), {"logits": logits})
    # the value, against the definition −Σ q log p averaged over non-padding targets
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    q = np.full(logits.shape, smoothing / 5) + (1 - smoothing) * np.eye(5)[targets]
    per_token = -(q * log_probs).sum(-1)
    expected = per_token[targets != 0].mean()
    assert float(forward(logits)[0]) == pytest.approx(expected, rel=1e-12)
    # padding positions get exactly zero gradient
    dlogits = cross_entropy_backward(forward(logits)[1])
    assert np.all(dlogits[targets == 0] == 0)
