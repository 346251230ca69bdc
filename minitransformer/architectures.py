"""The model architectures a run can train, and the one place that builds each from its config.

    transformer   minitransformer/model.py       "Attention Is All You Need" (the default)
    rnnenc        minitransformer/rnn/model.py   Cho et al. (2014): a fixed-length summary
    rnnsearch     minitransformer/rnn/model.py   Bahdanau et al.: GRUs with additive attention

    minitransformer train --model rnnsearch       # runs/toy-rnnsearch/

The trainer, the checkpoints and `translate` go through this module, so a saved run
rebuilds whichever model it trained: the saved model config says which (an RNN config
has an "architecture" field; a Transformer's has none, as before this module existed).
"""

from dataclasses import replace

from .config import ModelConfig
from .fields import ConfigError

NAMES = ("transformer", "rnnenc", "rnnsearch")


def architecture_of(config):
    """"transformer" for a ModelConfig, else the RNNConfig's own architecture."""
    return getattr(config, "architecture", "transformer")


def converted(config, architecture, transformer_base=None):
    """A model config (without vocabulary) of ``architecture`` made from ``config`` of another.

    The recurrent models take their widths from the Transformer's: d_model is the embedding
    width E, the GRU state width H and the alignment width A; dropout, max_len and the dtype
    carry over. Back to a Transformer, D is H and the other fields are ``transformer_base``'s
    (a ModelConfig; default: ModelConfig's own defaults).
    """
    if architecture not in NAMES:
        raise ConfigError(f"TrainConfig.architecture must be one of {', '.join(NAMES)}, got {architecture!r}")
    if architecture == architecture_of(config):
        return config
    from .rnn import RNNConfig

    shared = {"dropout": config.dropout, "max_len": config.max_len, "dtype": config.dtype}
    if architecture == "transformer":
        return replace(transformer_base or ModelConfig(), d_model=config.hidden_size, **shared)
    width = config.d_model
    return RNNConfig(architecture=architecture, embed_size=width, hidden_size=width, align_size=width, **shared)


def model_config_from_dict(values):
    """A saved model config (a dict) -> ModelConfig or RNNConfig; ValueError when bad."""
    if isinstance(values, dict) and values.get("architecture", "transformer") != "transformer":
        from .rnn import RNNConfig

        return RNNConfig.from_dict(values)
    return ModelConfig.from_dict(values)


def make_model(config, seed=0, backend="numpy", params=None):
    """Build the model of ``config`` (either kind, with its vocabulary): model.make_model or
    rnn.make_rnn_model."""
    config.require_vocabulary()
    if architecture_of(config) != "transformer":
        from .rnn import make_rnn_model

        return make_rnn_model(config, seed=seed, backend=backend, params=params)
    from .model import make_model as make_transformer

    return make_transformer(config, seed=seed, backend=backend, params=params)
