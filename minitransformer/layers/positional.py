"""Sinusoidal positional encoding (section 3.5 of the paper).

    PE[pos, 2i]   = sin(pos / 10000^(2i/D))
    PE[pos, 2i+1] = cos(pos / 10000^(2i/D))

Each pair of channels is a rotation at its own frequency, from 2π to 10000·2π, so a fixed
offset k acts on PE[pos] as a linear map: the model can learn to attend by relative
position. The encoding is added to the embeddings and has no parameters, so its backward
passes the gradient straight through: ∂L/∂x = dy.
"""

import numpy as np

from ..arrays import array_module


def sinusoidal_table(max_len, d_model, dtype=np.float32):
    """The table PE (max_len, D), computed once in float64 and cast."""
    position = np.arange(max_len, dtype=np.float64)[:, None]  # (P, 1)
    frequency = np.exp(-np.log(10000.0) * np.arange(0, d_model, 2) / d_model)  # (ceil(D/2),)
    table = np.zeros((max_len, d_model))  # (P, D)
    table[:, 0::2] = np.sin(position * frequency)
    table[:, 1::2] = np.cos(position * frequency[: d_model // 2])
    return table.astype(dtype)


def positional_forward(x, table, offset=0):
    """x (B, T, D), table (P, D) -> y (B, T, D); positions offset .. offset+T-1.

    ``offset`` lets incremental decoding add the encoding of step t alone.
    """
    seq_len = x.shape[1]
    if offset + seq_len > table.shape[0]:
        raise ValueError(
            f"sequence of length {offset + seq_len} is longer than the model's "
            f"maximum of {table.shape[0]} positions"
        )
    xp = array_module(x)
    y = x + xp.asarray(table[offset : offset + seq_len], dtype=x.dtype)  # (B, T, D)
    return y, None


def positional_backward(dy, cache):
    """dy (B, T, D) -> dx (B, T, D): addition of a constant passes the gradient through."""
    return dy
