"""Token embedding, scaled by √D as in section 3.4 of "Attention Is All You Need".

    y[b, t] = √D · W[ids[b, t]]            W (V, D)

A lookup is a matrix product with a one-hot matrix, so its backward scatters the output
gradient back into the rows that were read, adding where an id repeats:

    ∂L/∂W[v] = √D · Σ_{(b,t): ids[b,t]=v} dy[b, t]

The padding row is special: padding carries no meaning, so the lookup gives it no gradient
and, untied, the row stays at its initial zero. (Tied to the output projection, the row
still learns the logit of the padding token, which the loss drives down.)
"""

import math

from ..arrays import array_module, check_token_ids


def embedding_forward(ids, weight):
    """ids (B, T) int, weight (V, D) -> y (B, T, D)."""
    vocab_size, d_model = weight.shape
    check_token_ids(ids, vocab_size)
    scale = math.sqrt(d_model)
    y = weight[ids] * scale  # (B, T, D)
    cache = (ids, weight.shape, scale)
    return y, cache


def embedding_backward(dy, cache, pad_id=None):
    """dy (B, T, D) -> dweight (V, D); the row ``pad_id`` stays zero."""
    xp = array_module(dy)
    ids, weight_shape, scale = cache
    vocab_size, d_model = weight_shape
    dweight = xp.zeros(weight_shape, dtype=dy.dtype)  # (V, D)
    # add.at accumulates repeated ids instead of overwriting them
    xp.add.at(dweight, ids.reshape(-1), dy.reshape(-1, d_model) * scale)
    if pad_id is not None:
        dweight[pad_id] = 0
    return dweight
