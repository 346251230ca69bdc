"""Bad input gets a clear error that names the problem."""

import numpy as np
import pytest

from minitransformer import backends
from minitransformer.config import ModelConfig
from minitransformer.layers.attention import attention_forward
from minitransformer.layers.loss import cross_entropy_forward
from minitransformer.model import make_model

from helpers import tiny_config


@pytest.fixture
def model():
    return make_model(tiny_config(), seed=0)


def test_token_ids_outside_the_vocabulary(model):
    src = np.array([[4, 5, 11]])  # the source vocabulary is 11: ids 0..10
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, 11\): found 11"):
        model.forward(src, np.array([[2, 5]]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.forward(np.array([[4, 5]]), np.array([[2, -1]]))
    with pytest.raises(ValueError, match=r"target ids outside the vocabulary \[0, 13\): found 13"):
        model.loss_and_grads(np.array([[4, 5]]), np.array([[2, 5]]), np.array([[5, 13]]))


def test_ids_must_be_integer_matrices(model):
    with pytest.raises(ValueError, match="must be integers"):
        model.forward(np.array([[4.0, 5.0]]), np.array([[2, 5]]))
    with pytest.raises(ValueError, match=r"2-D integer array"):
        model.forward(np.array([4, 5]), np.array([[2, 5]]))


def test_mismatched_shapes(model):
    with pytest.raises(ValueError, match="target batch 2 does not match source batch 1"):
        model.forward(np.array([[4, 5]]), np.array([[2, 5], [2, 6]]))
    with pytest.raises(ValueError, match=r"logits of shape \(1, 2, 13\) do not match targets of shape \(1, 3\)"):
        cross_entropy_forward(np.zeros((1, 2, 13)), np.array([[4, 5, 6]]), pad_id=0)
    q = np.zeros((2, 2, 3, 4))
    with pytest.raises(ValueError, match="does not fit q"):
        attention_forward(q, np.zeros((2, 2, 5, 3)), np.zeros((2, 2, 5, 3)))
    with pytest.raises(ValueError, match="rank 4"):
        attention_forward(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="v has shape"):
        attention_forward(q, np.zeros((2, 2, 5, 4)), np.zeros((2, 2, 6, 4)))


def test_sequence_longer_than_the_positions(model):
    too_long = np.full((1, 17), 5)  # max_len is 16
    with pytest.raises(ValueError, match="longer than the model's maximum of 16 positions"):
        model.forward(too_long, np.array([[2, 5]]))


def test_mask_of_the_wrong_shape_or_type():
    q = k = v = np.zeros((2, 2, 3, 4))
    with pytest.raises(ValueError, match=r"does not broadcast to \(B, H, T, S\) = \(2, 2, 3, 3\)"):
        attention_forward(q, k, v, np.ones((2, 1, 1, 4), dtype=bool))
    with pytest.raises(ValueError, match="does not broadcast"):
        attention_forward(q, k, v, np.ones((3, 3), dtype=bool))
    with pytest.raises(ValueError, match="must be boolean"):
        attention_forward(q, k, v, np.ones((1, 1, 3, 3)))


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(d_model=10, n_heads=4), "d_model=10 is not divisible by n_heads=4"),
        (dict(dtype="float16"), "dtype must be one of"),
        (dict(dropout=1.0), r"dropout must lie in \[0, 1\)"),
        (dict(n_encoder_layers=0), "n_encoder_layers must be an integer"),
        (dict(d_model=-8), "d_model must be a positive integer"),
        (dict(share_embeddings=True), "share_embeddings needs equal vocabularies"),
        (dict(pad_id=20), "pad_id=20 lies outside the vocabulary"),
        (dict(attention_core="flash"), r"attention_core must be one of \('fused', 'blocked'\), got 'flash'"),
        (dict(attention_block_size=0), "attention_block_size must be a positive integer"),
    ],
)
def test_bad_config_values(change, message):
    values = tiny_config().to_dict()
    values.update(change)
    with pytest.raises(ValueError, match=message):
        ModelConfig(**values)


def test_unknown_config_field():
    values = tiny_config().to_dict()
    values["n_layer"] = 4
    with pytest.raises(ValueError, match="unknown ModelConfig field.*n_layer"):
        ModelConfig.from_dict(values)


def test_loaded_parameters_must_match_the_config():
    config = tiny_config()
    params = make_model(config).params
    wrong = dict(params)
    wrong["encoder.layers.0.ffn.w_1"] = np.zeros((8, 99))
    with pytest.raises(ValueError, match=r"encoder.layers.0.ffn.w_1 has shape \(8, 99\), the config needs \(8, 12\)"):
        make_model(config, params=wrong)
    missing = {k: v for k, v in params.items() if k != "generator.bias"}
    with pytest.raises(ValueError, match="missing generator.bias"):
        make_model(config, params=missing)


def test_unknown_backend_name():
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'; choose one of numpy, cython, cupy, auto"):
        backends.get("tensorflow")


def test_backend_from_the_environment(monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "numpy")
    assert backends.get().name == "numpy"
    monkeypatch.setenv(backends.ENV_VAR, "nonsense")
    with pytest.raises(ValueError, match="unknown backend 'nonsense'"):
        backends.get()
