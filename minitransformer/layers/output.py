"""The output projection: decoder states to logits over the target vocabulary.

    logits = h·Wᵀ + b          h (B, T, D), W (V, D), b (V,)

W is stored (V, D), the shape of an embedding matrix, so that tying the output to the
target embedding (section 3.4) is literally the same array. The backward

    ∂L/∂h = dlogits·W,     ∂L/∂W = Σ dlogitsᵀ·h,     ∂L/∂b = Σ dlogits

adds into the embedding's gradient when tied, since one matrix served twice.
"""


def output_forward(h, weight, bias):
    """h (B, T, D), weight (V, D), bias (V,) -> logits (B, T, V)."""
    vocab_size, d_model = weight.shape
    h_2d = h.reshape(-1, d_model)  # (B*T, D): one BLAS call, as in linear.py
    logits = (h_2d @ weight.T + bias).reshape(*h.shape[:-1], vocab_size)  # (B, T, V)
    return logits, (h_2d, weight, h.shape)


def output_backward(dlogits, cache):
    """dlogits (B, T, V) -> dh (B, T, D), dweight (V, D), dbias (V,)."""
    h_2d, weight, h_shape = cache
    vocab_size, d_model = weight.shape
    dlogits_2d = dlogits.reshape(-1, vocab_size)  # (B*T, V)
    dh = (dlogits_2d @ weight).reshape(h_shape)  # (B, T, D)
    dweight = dlogits_2d.T @ h_2d  # (V, D)
    dbias = dlogits_2d.sum(axis=0)  # (V,)
    return dh, dweight, dbias
