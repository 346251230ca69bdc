"""Tests of the attention zoo (minitransformer/zoo/).

Every backward is checked against centered finite differences in float64, for every input
and every parameter; masks, weight normalization and float32 are checked for each variant;
every demo is run with few steps and must actually improve its objective; Nadaraya–Watson
is checked against its two limits (nearest neighbour, global mean) as a property test.
"""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minitransformer.gradcheck import check_layer
from minitransformer.layers.attention import attention_forward
from minitransformer.zoo import additive, cosine, kernel_regression, scoring, vector
from minitransformer.zoo import attention_weights, softmax_average_backward, softmax_average_forward

BATCH, N_QUERIES, N_KEYS, WIDTH, HIDDEN, VALUE_WIDTH = 2, 3, 4, 3, 5, 4


def random_inputs(seed=0, query_width=WIDTH, key_width=WIDTH, value_width=VALUE_WIDTH, dtype=np.float64):
    rng = np.random.default_rng(seed)
    queries = rng.standard_normal((BATCH, N_QUERIES, query_width)).astype(dtype)  # (B, T, Dq)
    keys = rng.standard_normal((BATCH, N_KEYS, key_width)).astype(dtype)  # (B, S, Dk)
    values = rng.standard_normal((BATCH, N_KEYS, value_width)).astype(dtype)  # (B, S, Dv)
    return queries, keys, values


def partial_mask():
    """(B, T, S): example 0 sees keys 0–2 only; query 1 of example 1 sees nothing."""
    mask = np.ones((BATCH, N_QUERIES, N_KEYS), dtype=bool)
    mask[0, :, 3] = False
    mask[1, 1, :] = False
    return mask


# Each variant as (name, forward(queries, keys, values, *params, mask) -> (out, cache),
# backward, params(rng, dtype), weights(cache) -> (B, T, S[, G])), so one test covers all.


def kernel_params(rng, dtype):
    return {"bandwidth": np.array(0.9, dtype=dtype)}


def additive_params(rng, dtype):
    return {
        "w_query": rng.standard_normal((WIDTH, HIDDEN)).astype(dtype),
        "w_key": rng.standard_normal((WIDTH, HIDDEN)).astype(dtype),
        "w_score": rng.standard_normal(HIDDEN).astype(dtype),
    }


def cosine_params(rng, dtype):
    return {"temperature": np.array(0.4, dtype=dtype)}


def vector_params(n_groups):
    def make(rng, dtype):
        return {
            "w_hidden": rng.standard_normal((WIDTH, HIDDEN)).astype(dtype),
            "b_hidden": rng.standard_normal(HIDDEN).astype(dtype),
            "w_score": rng.standard_normal((HIDDEN, n_groups)).astype(dtype),
        }

    return make


VARIANTS = {
    "kernel_regression": (
        kernel_regression.kernel_regression_forward,
        kernel_regression.kernel_regression_backward,
        kernel_params,
        lambda cache: attention_weights(cache[-1]),
    ),
    "additive": (
        additive.additive_attention_forward,
        additive.additive_attention_backward,
        additive_params,
        lambda cache: attention_weights(cache[1]),
    ),
    "cosine": (
        cosine.cosine_attention_forward,
        cosine.cosine_attention_backward,
        cosine_params,
        lambda cache: attention_weights(cache[1]),
    ),
    "vector_G=C": (
        vector.vector_attention_forward,
        vector.vector_attention_backward,
        vector_params(VALUE_WIDTH),
        vector.vector_attention_weights,
    ),
    "vector_G=2": (
        vector.vector_attention_forward,
        vector.vector_attention_backward,
        vector_params(2),
        vector.vector_attention_weights,
    ),
    "vector_G=1": (
        vector.vector_attention_forward,
        vector.vector_attention_backward,
        vector_params(1),
        vector.vector_attention_weights,
    ),
}


# ---------------------------------------------------------------------------------------
# Finite-difference checks, float64, every input and parameter


@pytest.mark.parametrize("use_mask", [False, True], ids=["no_mask", "mask"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_attention_backward_matches_finite_differences(name, use_mask):
    forward, backward, make_params, _ = VARIANTS[name]
    queries, keys, values = random_inputs(seed=1)
    params = make_params(np.random.default_rng(2), np.float64)
    mask = partial_mask() if use_mask else None
    inputs = {"queries": queries, "keys": keys, "values": values, **params}
    errors = check_layer(lambda *arrays: forward(*arrays, mask=mask), backward, inputs, tol=1e-6)
    assert set(errors) == set(inputs)


def test_softmax_average_backward_matches_finite_differences():
    rng = np.random.default_rng(3)
    inputs = {
        "scores": rng.standard_normal((BATCH, N_QUERIES, N_KEYS)),
        "values": rng.standard_normal((BATCH, N_KEYS, VALUE_WIDTH)),
    }
    mask = partial_mask()
    forward = lambda *arrays: softmax_average_forward(*arrays, mask)  # noqa: E731
    check_layer(forward, softmax_average_backward, inputs, tol=1e-6)


@pytest.mark.parametrize("name", list(scoring.SCORES))
def test_score_backward_matches_finite_differences(name):
    forward, backward, param_names = scoring.SCORES[name]
    queries, keys, _ = random_inputs(seed=4)
    params = scoring.init_params(name, WIDTH, np.random.default_rng(5), hidden_width=HIDDEN)
    # large random parameters, so that no tanh sits in its linear middle and hides a bug
    params = {key: np.asarray(value * (0.5 if key == "temperature" else 3.0)) for key, value in params.items()}
    inputs = {"queries": queries, "keys": keys, **{key: params[key] for key in param_names}}
    errors = check_layer(forward, backward, inputs, tol=1e-6)
    assert set(errors) == set(inputs)


def test_additive_score_with_different_query_and_key_widths():
    queries, keys, _ = random_inputs(seed=6, query_width=2, key_width=5)
    rng = np.random.default_rng(7)
    inputs = {
        "queries": queries,
        "keys": keys,
        "w_query": rng.standard_normal((2, HIDDEN)),
        "w_key": rng.standard_normal((5, HIDDEN)),
        "w_score": rng.standard_normal(HIDDEN),
    }
    check_layer(additive.additive_score_forward, additive.additive_score_backward, inputs, tol=1e-6)


def test_grouped_mlp_score_backward_matches_finite_differences():
    queries, keys, _ = random_inputs(seed=8)
    rng = np.random.default_rng(9)
    inputs = {
        "queries": queries,
        "keys": keys,
        "w_hidden": rng.standard_normal((WIDTH, HIDDEN)),
        "b_hidden": rng.standard_normal(HIDDEN),
        "w_score": rng.standard_normal((HIDDEN, 3)),
    }
    check_layer(scoring.mlp_score_forward, scoring.mlp_score_backward, inputs, tol=1e-6)


def test_gradient_check_catches_a_wrong_backward():
    """The check above must be able to fail: drop the tanh derivative and it does."""

    def wrong_backward(dscores, cache):
        diff, hidden, w_hidden, w_score = cache
        fake_hidden = np.zeros_like(hidden)  # makes 1 − h² = 1: the tanh' is forgotten
        return scoring.mlp_score_backward(dscores, (diff, fake_hidden, w_hidden, w_score))[:2]

    queries, keys, _ = random_inputs(seed=10)
    rng = np.random.default_rng(11)
    w_hidden = rng.standard_normal((WIDTH, HIDDEN))
    b_hidden = rng.standard_normal(HIDDEN)
    w_score = rng.standard_normal(HIDDEN)

    def forward(queries, keys):
        scores, (diff, hidden, *_) = scoring.mlp_score_forward(queries, keys, w_hidden, b_hidden, w_score)
        return scores, (diff, hidden, w_hidden, w_score)

    with pytest.raises(AssertionError, match="queries: relative error"):
        check_layer(forward, wrong_backward, {"queries": queries, "keys": keys}, tol=1e-6)


# ---------------------------------------------------------------------------------------
# Weights: non-negative, summing to one, zero where masked, zero rows when fully masked


@pytest.mark.parametrize("name", list(VARIANTS))
def test_weights_sum_to_one_and_masks_are_respected(name):
    forward, backward, make_params, get_weights = VARIANTS[name]
    queries, keys, values = random_inputs(seed=12)
    params = make_params(np.random.default_rng(13), np.float64)
    mask = partial_mask()
    out, cache = forward(queries, keys, values, **params, mask=mask)
    weights = get_weights(cache)  # (B, T, S) or (B, T, S, G)
    if weights.ndim == 3:
        weights = weights[..., None]
    assert np.all(weights >= 0)
    sums = weights.sum(axis=2)  # (B, T, G)
    sees_something = mask.any(axis=-1)  # (B, T)
    np.testing.assert_allclose(sums[sees_something], 1.0, atol=1e-12)
    # masked keys get exactly zero weight; a query that sees nothing gets zeros, not NaN
    assert np.all(weights[~mask] == 0.0)
    assert np.all(sums[~sees_something] == 0.0)
    assert np.all(out[1, 1] == 0.0)
    assert np.all(np.isfinite(out))
    # and the backward sends nothing through masked entries, and no NaN anywhere
    grads = backward(np.ones_like(out), cache)
    assert all(np.all(np.isfinite(grad)) for grad in grads)
    dqueries = grads[0]
    assert np.all(dqueries[1, 1] == 0.0)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_float32_runs_and_agrees_with_float64(name):
    forward, backward, make_params, _ = VARIANTS[name]
    results = {}
    for dtype in (np.float32, np.float64):
        queries, keys, values = random_inputs(seed=14, dtype=dtype)
        params = make_params(np.random.default_rng(15), dtype)
        out, cache = forward(queries, keys, values, **params, mask=partial_mask())
        dout = np.random.default_rng(16).standard_normal(out.shape).astype(dtype)
        grads = backward(dout, cache)
        results[dtype] = (out, grads)
    out32, grads32 = results[np.float32]
    out64, grads64 = results[np.float64]
    assert out32.dtype == np.float32
    assert all(np.asarray(grad).dtype == np.float32 for grad in grads32)
    np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-5)
    for grad32, grad64 in zip(grads32, grads64):
        np.testing.assert_allclose(grad32, grad64, rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------------------------------
# Relations between the variants and to the Transformer's core


def test_scaled_dot_score_reproduces_the_transformer_core():
    queries, keys, values = random_inputs(seed=17, value_width=WIDTH)
    scores, _ = scoring.scaled_dot_score_forward(queries, keys)
    out, _ = softmax_average_forward(scores, values)
    reference, _ = attention_forward(queries[:, None], keys[:, None], values[:, None])  # (B, 1, T, D)
    np.testing.assert_allclose(out, reference[:, 0], rtol=1e-12)


def test_vector_attention_with_one_group_is_scalar_attention_with_the_mlp_score():
    queries, keys, values = random_inputs(seed=18)
    params = vector_params(1)(np.random.default_rng(19), np.float64)
    out, _ = vector.vector_attention_forward(queries, keys, values, **params)
    scores, _ = scoring.mlp_score_forward(queries, keys, **params)  # (B, T, S, 1)
    reference, _ = softmax_average_forward(scores[..., 0], values)
    np.testing.assert_allclose(out, reference, rtol=1e-12)


def test_vector_attention_gives_each_channel_group_its_own_weights():
    queries, keys, values = random_inputs(seed=20)
    params = vector_params(VALUE_WIDTH)(np.random.default_rng(21), np.float64)
    _, cache = vector.vector_attention_forward(queries, keys, values, **params)
    weights = vector.vector_attention_weights(cache)  # (B, T, S, C)
    assert np.abs(weights[..., 0] - weights[..., 1]).max() > 1e-3
    three_groups = vector_params(3)(np.random.default_rng(0), np.float64)
    with pytest.raises(ValueError, match="do not divide"):  # 3 groups of 4 channels
        vector.vector_attention_forward(queries, keys, values, **three_groups)


def test_cosine_attention_ignores_the_lengths_of_queries_and_keys():
    queries, keys, values = random_inputs(seed=22)
    lengths = np.random.default_rng(23).uniform(0.1, 100.0, size=(BATCH, N_KEYS, 1))
    out, _ = cosine.cosine_attention_forward(queries, keys, values, 0.3)
    stretched, _ = cosine.cosine_attention_forward(7.0 * queries, keys * lengths, values, 0.3)
    # not bit-exact: the ε in √(‖x‖² + ε) weighs a little more on the shorter vectors
    np.testing.assert_allclose(stretched, out, rtol=1e-8)


def test_mlp_score_ignores_a_shift_of_queries_and_keys_together():
    queries, keys, _ = random_inputs(seed=24)
    params = scoring.init_params("mlp", WIDTH, np.random.default_rng(25))
    shift = np.array([3.0, -1.0, 0.5])
    before, _ = scoring.score("mlp", queries, keys, params)
    after, _ = scoring.score("mlp", queries + shift, keys + shift, params)
    np.testing.assert_allclose(after, before, atol=1e-12)


# ---------------------------------------------------------------------------------------
# Nadaraya–Watson limits (property tests)

points = hnp.arrays(np.float64, st.tuples(st.integers(2, 8), st.just(2)), elements=st.floats(-10, 10))
query_point = hnp.arrays(np.float64, (2,), elements=st.floats(-10, 10))


@settings(max_examples=40, deadline=None)
@given(keys=points, query=query_point, seed=st.integers(0, 2**16))
def test_nadaraya_watson_with_tiny_bandwidth_is_nearest_neighbour(keys, query, seed):
    sq_dist = ((keys - query) ** 2).sum(axis=-1)  # (S,)
    nearest, runner_up = np.sort(sq_dist)[:2]
    assume(runner_up - nearest > 1e-2)  # a tie has no single nearest neighbour
    values = np.random.default_rng(seed).standard_normal((len(keys), 3))  # (S, 3)
    out, _ = kernel_regression.kernel_regression_forward(query[None, None], keys[None], values[None], 1e-3)
    np.testing.assert_allclose(out[0, 0], values[np.argmin(sq_dist)], rtol=0, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(keys=points, query=query_point, seed=st.integers(0, 2**16))
def test_nadaraya_watson_with_huge_bandwidth_is_the_global_mean(keys, query, seed):
    values = np.random.default_rng(seed).standard_normal((len(keys), 3))  # (S, 3)
    out, _ = kernel_regression.kernel_regression_forward(query[None, None], keys[None], values[None], 1e6)
    np.testing.assert_allclose(out[0, 0], values.mean(axis=0), rtol=0, atol=1e-8)


def test_nadaraya_watson_error_moves_smoothly_between_the_limits():
    """On noisy data an intermediate bandwidth beats both limits (the demo's claim)."""
    rng = np.random.default_rng(0)
    waist, weight, _ = kernel_regression.synthetic_waist_weight(150, rng)
    test_waist, test_weight, _ = kernel_regression.synthetic_waist_weight(300, rng)
    errors = {
        bandwidth: kernel_regression.rmse(
            kernel_regression.predict(test_waist, waist, weight, bandwidth)[0], test_weight
        )
        for bandwidth in (1e-3, 2.0, 1e6)
    }
    assert errors[2.0] < 0.8 * errors[1e-3]
    assert errors[2.0] < 0.5 * errors[1e6]


# ---------------------------------------------------------------------------------------
# Demos: run, and learn


def test_kernel_regression_demo_learns_the_bandwidth_from_either_side(capsys):
    history = kernel_regression.main(["--seed", "0", "--steps", "40"])
    (_, first_bandwidth, first_loss), (_, last_bandwidth, last_loss) = history[0], history[-1]
    assert first_bandwidth == pytest.approx(30.0)
    assert last_loss < first_loss / 5  # 17 kg RMSE at h = 30 cm, under 6 kg learned
    assert 1.0 < last_bandwidth < 5.0
    # starting too narrow, the same gradient widens h instead
    history = kernel_regression.main(["--seed", "0", "--steps", "40", "--init-bandwidth", "0.3"])
    assert history[-1][1] > 3 * 0.3
    assert history[-1][2] < 0.9 * history[0][2]
    assert "learned" in capsys.readouterr().out


def test_additive_demo_learns_the_alignment(capsys):
    losses = additive.main(["--seed", "0", "--steps", "120"])
    assert losses[-1] < losses[0] / 10
    assert "attention weights after training" in capsys.readouterr().out


def test_cosine_demo_learns_the_temperature_and_beats_the_dot_product(capsys):
    results = cosine.main(["--seed", "0", "--steps", "100"])
    losses = results["losses"]
    assert np.mean(losses[-10:]) < np.mean(losses[:3]) / 5
    assert results["temperature"] < 0.3  # sharper than its start of 1
    (start_loss, _), (learned_loss, learned_accuracy), (_, dot_accuracy) = results["fresh"]
    assert learned_loss < start_loss / 5
    # the dot product is drawn to long keys; the angle alone finds the right one far more often
    assert learned_accuracy > dot_accuracy + 0.2
    assert "most confidently wrong" in capsys.readouterr().out


def test_vector_demo_solves_what_scalar_attention_cannot(capsys):
    vector_losses, scalar_losses = vector.main(["--seed", "0", "--steps", "150"])
    assert vector_losses[-1] < vector_losses[0] / 20
    # one weight per key cannot serve three channels that want three different keys
    assert np.mean(scalar_losses[-20:]) > 0.5
    assert "left (c=0)" in capsys.readouterr().out


def test_scoring_demo_shows_why_the_dot_product_is_scaled(capsys):
    tables, blindness = scoring.main(["--seed", "0", "--widths", "4", "64", "1024", "--batch", "32"])
    spread = tables["spread of the scores, std(e)"]
    largest = tables["largest weight, mean max α"]
    gradient = tables["gradient leaving the softmax, mean ‖∂L/∂e‖ per query"]
    # the unscaled dot spreads like √D and saturates; scaled stays near 1; cosine shrinks like 1/√D
    assert spread[1024, "dot"] > 10 * spread[4, "dot"]
    assert all(0.7 < spread[width, "scaled_dot"] < 1.3 for width in (4, 64, 1024))
    assert spread[1024, "cosine"] < spread[4, "cosine"] / 10
    assert largest[1024, "dot"] > 0.9 and largest[1024, "scaled_dot"] < 0.5
    assert gradient[1024, "dot"] < gradient[1024, "scaled_dot"] / 5
    # cosine ignores lengths, the mlp of q − k ignores a common shift, the dot product neither
    assert blindness["keys ×10", "cosine"] < 1e-9 and blindness["queries ×10", "cosine"] < 1e-9
    assert blindness["q, k + same shift", "mlp"] < 1e-9
    assert min(blindness[change, "dot"] for change in ("keys ×10", "queries ×10", "q, k + same shift")) > 0.5
    assert blindness["q, k + same shift", "cosine"] > 0.1 and blindness["keys ×10", "mlp"] > 0.1
    assert "blind" in capsys.readouterr().out


DEMOS = {
    "kernel_regression": (kernel_regression.main, ["--steps", "5"]),
    "additive": (additive.main, ["--steps", "5"]),
    "cosine": (cosine.main, ["--steps", "5"]),
    "vector": (vector.main, ["--steps", "5"]),
    "scoring": (scoring.main, ["--widths", "4", "16", "--batch", "4"]),
}


@pytest.mark.parametrize("name", list(DEMOS))
def test_demo_is_deterministic_given_its_seed(name, capsys):
    main, arguments = DEMOS[name]
    outputs = []
    for seed in ("3", "3", "4"):
        main(["--seed", seed, *arguments])
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]
