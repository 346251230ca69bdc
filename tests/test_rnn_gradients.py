"""The GRU's backpropagation through time, and both recurrent models' whole loss, against
centered finite differences in float64 (tolerance 1e-6 relative: a correct backward
agrees to ~1e-9 with h = 1e-6, a wrong one by orders of magnitude more)."""

import numpy as np
import pytest

from minitransformer.gradcheck import assert_errors_below, check_layer, numerical_gradient, rel_error
from minitransformer.rnn import RNNConfig, make_rnn_model
from minitransformer.rnn.gru import (
    bidirectional_backward,
    bidirectional_forward,
    gru_cell_backward,
    gru_cell_forward,
    gru_layer_backward,
    gru_layer_forward,
)

from helpers import padded_batch

B, T, E, H = 3, 5, 4, 3
LENGTHS = [5, 2, 4]
ENTRIES_PER_TENSOR = 8  # sentence 1 is padded for three steps, sentence 2 for one


def gru_params(rng, input_width=E):
    return {
        "w_input": rng.standard_normal((input_width, 3 * H)) * 0.5,
        "w_hidden": rng.standard_normal((H, 3 * H)) * 0.5,
        "b_input": rng.standard_normal(3 * H) * 0.3,
        "b_hidden": rng.standard_normal(3 * H) * 0.3,
    }


def length_mask(lengths, width):
    return np.arange(width)[None, :] < np.array(lengths)[:, None]  # (B, T)


@pytest.mark.parametrize("masked", [False, True])
def test_gru_cell(rng, masked):
    mask = np.array([True, False, True]) if masked else None

    def forward(input_part, h_prev, w_hidden, b_hidden):
        return gru_cell_forward(input_part, h_prev, w_hidden, b_hidden, mask)

    inputs = {
        "input_part": rng.standard_normal((B, 3 * H)),
        "h_prev": rng.standard_normal((B, H)),
        "w_hidden": rng.standard_normal((H, 3 * H)),
        "b_hidden": rng.standard_normal(3 * H),
    }
    check_layer(forward, gru_cell_backward, inputs)


def test_gru_layer_through_time_with_padding(rng):
    params = gru_params(rng)
    mask = length_mask(LENGTHS, T)

    def forward(x, h0, w_input, w_hidden, b_input, b_hidden):
        return gru_layer_forward(x, mask, dict(w_input=w_input, w_hidden=w_hidden, b_input=b_input, b_hidden=b_hidden), h0)

    def backward(dstates, cache):
        dx, dh0, grads = gru_layer_backward(dstates, cache)
        return dx, dh0, grads["w_input"], grads["w_hidden"], grads["b_input"], grads["b_hidden"]

    inputs = dict(x=rng.standard_normal((B, T, E)), h0=rng.standard_normal((B, H)), **params)
    check_layer(forward, backward, inputs)


def test_padded_steps_leave_the_state_unchanged(rng):
    params = gru_params(rng)
    x = rng.standard_normal((B, T, E))
    states, _ = gru_layer_forward(x, length_mask(LENGTHS, T), params)
    for row, length in enumerate(LENGTHS):
        alone, _ = gru_layer_forward(x[row : row + 1, :length], None, params)  # (1, length, H)
        np.testing.assert_allclose(states[row, :length], alone[0], rtol=1e-12, atol=1e-12)
        # every padded column repeats the row's last real state exactly (the mask selects it,
        # nothing is recomputed), so the last column is the final state; exact within the one
        # batched computation, while batched against alone may differ by a rounding (BLAS)
        np.testing.assert_array_equal(states[row, length:], np.broadcast_to(states[row, length - 1], (T - length, H)))


def test_bidirectional_encoder_with_padding(rng):
    mask = length_mask(LENGTHS, T)
    forward_params, backward_params = gru_params(rng), gru_params(rng)
    names = [f"{direction}.{key}" for direction in ("forward", "backward") for key in forward_params]

    def forward(x, *arrays):
        return bidirectional_forward(x, mask, dict(zip(names, arrays)))

    def backward(dannotations, cache):
        dx, grads = bidirectional_backward(dannotations, cache)
        return (dx, *(grads[name] for name in names))

    inputs = {"x": rng.standard_normal((B, T, E))}
    inputs.update({f"forward.{k}": v for k, v in forward_params.items()})
    inputs.update({f"backward.{k}": v for k, v in backward_params.items()})
    check_layer(forward, backward, inputs)


def test_right_to_left_direction_reads_each_sentence_from_its_own_end(rng):
    x = rng.standard_normal((B, T, E))
    params = {f"forward.{k}": v for k, v in gru_params(rng).items()}
    params.update({f"backward.{k}": v for k, v in gru_params(rng).items()})
    annotations, _ = bidirectional_forward(x, length_mask(LENGTHS, T), params)
    for row, length in enumerate(LENGTHS):
        alone, _ = bidirectional_forward(x[row : row + 1, :length], np.ones((1, length), dtype=bool), params)
        np.testing.assert_allclose(annotations[row, :length], alone[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("architecture", ["rnnenc", "rnnsearch"])
def test_whole_loss_against_every_parameter_tensor(architecture):
    config = RNNConfig(architecture, src_vocab_size=11, tgt_vocab_size=13, embed_size=4, hidden_size=3,
                       align_size=5, dropout=0.1, dtype="float64")
    model = make_rnn_model(config, seed=3)
    rng = np.random.default_rng(0)
    for key, value in model.params.items():  # no gradient checked only at a special point (zero biases)
        value += 0.1 * rng.standard_normal(value.shape)
        if key.endswith("embed.weight"):
            value[config.pad_id] = 0.0
    src = padded_batch(rng, config.src_vocab_size, [5, 3, 4], width=5)
    tgt = padded_batch(rng, config.tgt_vocab_size, [6, 4, 2], width=6, bos=2)
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]

    def loss():  # the same dropout masks on every call
        return model.loss(src, tgt_in, tgt_out, smoothing=0.1, rng=np.random.default_rng(42))

    model.loss_and_grads(src, tgt_in, tgt_out, smoothing=0.1, rng=np.random.default_rng(42))
    # h = 1e-5: the alignment model's w_query gets a tiny gradient here (norm ~2e-4, the query
    # only shifts every key's tanh a little), which h = 1e-6 would leave to rounding noise
    errors = {}
    for key, param in model.params.items():  # a few entries of each tensor (all of a small one)
        indices = list(np.ndindex(*param.shape))
        if len(indices) > ENTRIES_PER_TENSOR:
            indices = [indices[i] for i in rng.choice(len(indices), ENTRIES_PER_TENSOR, replace=False)]
        numeric = numerical_gradient(loss, param, h=1e-5, indices=indices)
        analytic = np.zeros_like(param)
        for index in indices:
            analytic[index] = model.grads[key][index]
        errors[key] = rel_error(analytic, numeric)
    assert len(errors) == len(model.params)
    assert ("attention.w_score" in errors) == (architecture == "rnnsearch")
    assert_errors_below(errors, 1e-6)
