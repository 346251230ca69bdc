"""The layers of the Transformer, one idea per file, each forward directly above its backward.

Size letters, used in every shape comment of this package:
    B batch, S source length, T target length (or query length), D model width,
    H heads, Dh head width (D / H), F feed-forward width, V vocabulary.

Every layer but one follows one convention (as in CS231n's layers.py):

    out, cache = layer_forward(x, ...)       # cache: a named tuple of what the backward needs
    dx, ...    = layer_backward(dout, cache)

The exception is the attention core (attention.py), whose signature every backend's
compiled kernels share: its forward returns the weights themselves, and its backward takes
the forward's inputs with them,

    out, probs = attention_forward(q, k, v, mask)
    dq, dk, dv = attention_backward(dout, q, k, v, probs)

Composite layers take a dict of their parameters and return a dict of gradients under the
same keys; those that call an operation a backend may compile (attention, LayerNorm,
dropout) take the kernels object as ``backend`` and keep it in their cache, so the backward
runs on the kernels that ran the forward. No layer imports minitransformer.backends.
"""
