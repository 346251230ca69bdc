"""Helpers shared by the tests: small float64 models and padded batches."""

import numpy as np


def tiny_config(**overrides):
    """A float64 model small enough for finite differences over every tensor."""
    from minitransformer.config import ModelConfig

    values = dict(
        src_vocab_size=11,
        tgt_vocab_size=13,
        d_model=8,
        n_heads=2,
        d_ff=12,
        n_encoder_layers=2,
        n_decoder_layers=2,
        dropout=0.0,
        max_len=16,
        tie_output=False,
        dtype="float64",
    )
    values.update(overrides)
    return ModelConfig(**values)


def padded_batch(rng, vocab_size, lengths, width, pad_id=0, bos=None):
    """Random ids in [4, V) (clear of the special ids 0-3) padded to ``width``."""
    ids = np.full((len(lengths), width), pad_id, dtype=np.int64)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(4, vocab_size, size=length)
        if bos is not None:
            ids[row, 0] = bos
    return ids
