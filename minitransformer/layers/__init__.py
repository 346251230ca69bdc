"""The layers of the Transformer, one idea per file, each forward directly above its backward.

Size letters, used in every shape comment of this package:
    B batch, S source length, T target length (or query length), D model width,
    H heads, Dh head width (D / H), F feed-forward width, V vocabulary.

Every layer follows one convention (as in CS231n's layers.py):

    out, cache = layer_forward(x, ...)       # cache holds only what the backward needs
    dx, ...    = layer_backward(dout, cache)

Composite layers take a dict of their parameters and return a dict of gradients under the
same keys.
"""
