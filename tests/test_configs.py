"""The run config holds the model's config: every model field set from JSON and checked once,
by the model config itself; the vocabulary and the padding id come from the tokenizer."""

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest

from minitransformer.architectures import make_model
from minitransformer.config import ModelConfig
from minitransformer.configs import CONFIGS, TOY, ConfigError, TrainConfig, get_config
from minitransformer.rnn import RNNConfig
from minitransformer.tokenizer import Tokenizer

TOKENIZER = SimpleNamespace(src_vocab_size=40, tgt_vocab_size=40, pad_id=Tokenizer.pad_id)


def test_every_model_field_is_settable_from_json(tmp_path):
    model = {"d_model": 32, "n_heads": 2, "d_ff": 48, "n_encoder_layers": 1, "n_decoder_layers": 3,
             "dropout": 0.2, "max_len": 40, "pre_norm": True, "final_norm": False, "tie_output": False,
             "share_embeddings": False, "attention_window": 3, "attention_core": "blocked",
             "attention_block_size": 8, "encoder_attention": "exact", "decoder_attention": "exact",
             "attention_seed": 5, "layernorm_eps": 1e-6, "dtype": "float64"}
    path = tmp_path / "every.json"
    path.write_text(json.dumps({"model": model}))
    config = get_config(str(path))
    assert config.model.to_dict() == dict(model, src_vocab_size=None, tgt_vocab_size=None, pad_id=0)
    # what the tokenizer adds, and nothing else
    complete = config.model.with_vocabulary(TOKENIZER)
    assert complete == ModelConfig(src_vocab_size=40, tgt_vocab_size=40, **model)
    # and all that is left out of ModelConfig's fields is the tokenizer's
    assert set(ModelConfig(src_vocab_size=4, tgt_vocab_size=4).to_dict()) - set(model) == {
        "src_vocab_size", "tgt_vocab_size", "pad_id"}


def test_final_norm_follows_pre_norm_set_over_a_named_config():
    pre = TrainConfig.from_dict({"model": {"pre_norm": True}}, base=TOY)
    assert pre.model.with_vocabulary(TOKENIZER).final_norm is True
    assert TOY.with_model(pre_norm=True).model.with_vocabulary(TOKENIZER).final_norm is True
    assert TOY.model.with_vocabulary(TOKENIZER).final_norm is False


def test_a_model_needs_its_vocabulary():
    with pytest.raises(ValueError, match="no vocabulary sizes.*with_vocabulary"):
        make_model(TOY.model)


def test_the_recurrent_models_nest_too():
    config = TrainConfig.from_dict({"architecture": "rnnsearch", "model": {"hidden_size": 32}}, base=TOY)
    assert isinstance(config.model, RNNConfig) and config.model.architecture == "rnnsearch"
    # the widths not given come from the Transformer's d_model, as `--model rnnsearch` does
    assert (config.model.embed_size, config.model.hidden_size, config.model.max_len) == (64, 32, 64)
    assert config.peak_lr() == pytest.approx(TOY.lr_factor / (32 * TOY.warmup_steps) ** 0.5)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TOY.with_architecture("rnnenc").with_architecture("transformer").model == TOY.model
    with pytest.raises(ConfigError, match="TrainConfig.model.hidden_size must be a positive integer, got 0"):
        TrainConfig.from_dict({"architecture": "rnnenc", "model": {"hidden_size": 0}}, base=TOY)
    with pytest.raises(ConfigError, match="is a transformer config but the architecture is 'rnnenc'"):
        replace(TOY, architecture="rnnenc")


@pytest.mark.parametrize("values, words", [
    ({"d_model": 32, "model": {"n_heads": 2}}, 'd_model belong in the "model" section'),
    ({"model": [64]}, "TrainConfig.model must be a JSON object"),
    ({"model": {"share_embeddings": True}, "shared_vocab": False}, "share_embeddings needs shared_vocab=True"),
    ({"modle": {}}, "unknown TrainConfig field(s): modle"),
])
def test_bad_layouts_are_one_line_that_names_the_field(values, words):
    with pytest.raises(ConfigError) as error:
        TrainConfig.from_dict(values, base=TOY)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_the_named_configs_round_trip_through_json():
    for name, config in CONFIGS.items():
        assert get_config(name) is config
        assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
        assert "src_vocab_size" not in config.to_dict()["model"]
