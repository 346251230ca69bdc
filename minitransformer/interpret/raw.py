"""Raw attention: the weights themselves, read as an explanation.

    A^(l,h)[t, s]                     one head: how much step t's query weighed source s
    Ā^(l)[t, s] = (1/H) Σ_h A^(l,h)   the head mean of one layer
    Ā[t, s] = (1/L) Σ_l Ā^(l)         the mean over the decoder's layers

For translation the weights that can align are the cross-attention ones: their queries are
French steps and their keys English pieces. Every row is a distribution over the source.

    from minitransformer.interpret.raw import raw_attention
    maps = raw_attention(steps)      # {"head": (L, H, T, S), "layer": (L, T, S), "mean": (T, S)}
"""

import numpy as np


def raw_attention(steps):
    """steps: explain_steps' result -> per head, per layer (head mean) and overall mean."""
    heads = np.stack([cross.transpose(1, 0, 2) for cross in steps.cross])  # (L, H, T, S)
    layer = heads.mean(axis=1)  # (L, T, S)
    return {"head": heads, "layer": layer, "mean": layer.mean(axis=0)}
