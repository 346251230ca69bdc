"""minitransformer: an encoder-decoder Transformer in NumPy with every gradient written by hand.

Where to look:
    layers/attention.py   the attention core, softmax(QKᵀ/√Dh + M)·V, forward and backward
    layers/               every other layer, forward directly above backward
    model.py              the Transformer, built from the layers; make_model(config)
    optim/                Adam, the warmup schedule, gradient clipping
    backends/             one dispatch for the attention core: numpy, cython, cupy
"""

__version__ = "0.1.0"
