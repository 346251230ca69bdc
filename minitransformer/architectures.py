"""The model architectures a run can train, and the one place that builds each from its config.

    transformer   minitransformer/model.py       "Attention Is All You Need" (the default)
    rnnenc        minitransformer/rnn/model.py   Cho et al. (2014): a fixed-length summary
    rnnsearch     minitransformer/rnn/model.py   Bahdanau et al.: GRUs with additive attention

    minitransformer train --model rnnsearch       # runs/toy-rnnsearch/

The trainer, the checkpoints and `translate` go through this module, so a saved run
rebuilds whichever model it trained: the saved model config says which (an RNN config
has an "architecture" field; a Transformer's has none, as before this module existed).
"""

NAMES = ("transformer", "rnnenc", "rnnsearch")


def model_config(train_config, src_vocab_size, tgt_vocab_size):
    """The model config of a TrainConfig's architecture, for vocabularies of these sizes.

    The recurrent models take their widths from the same fields as the Transformer:
    d_model is the embedding width E, the GRU state width H and the alignment width A.
    """
    architecture = getattr(train_config, "architecture", "transformer")
    if architecture not in NAMES:
        raise ValueError(f"TrainConfig.architecture must be one of {', '.join(NAMES)}, got {architecture!r}")
    if architecture == "transformer":
        return None  # configs.py builds the ModelConfig itself
    from .rnn import RNNConfig

    width = train_config.d_model
    return RNNConfig(
        architecture=architecture,
        src_vocab_size=src_vocab_size,
        tgt_vocab_size=tgt_vocab_size,
        embed_size=width,
        hidden_size=width,
        align_size=width,
        dropout=train_config.dropout,
        max_len=train_config.max_len,
        pad_id=0,
        dtype=train_config.dtype,
    )


def model_config_from_dict(values):
    """A saved model config (a dict) -> ModelConfig or RNNConfig; ValueError when bad."""
    if isinstance(values, dict) and values.get("architecture", "transformer") != "transformer":
        from .rnn import RNNConfig

        return RNNConfig.from_dict(values)
    from .config import ModelConfig

    return ModelConfig.from_dict(values)


def make_model(config, seed=0, backend="numpy", params=None):
    """Build the model of ``config`` (either kind): model.make_model or rnn.make_rnn_model."""
    if hasattr(config, "architecture"):
        from .rnn import make_rnn_model

        return make_rnn_model(config, seed=seed, backend=backend, params=params)
    from .model import make_model as make_transformer

    return make_transformer(config, seed=seed, backend=backend, params=params)
