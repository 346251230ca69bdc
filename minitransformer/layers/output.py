"""The output projection: decoder states to logits over the target vocabulary.

    logits = h·Wᵀ + b          h (B, T, D), W (V, D), b (V,)

W is stored (V, D), the shape of an embedding matrix, so that tying the output to the
target embedding (section 3.4) is literally the same array. The backward

    ∂L/∂h = dlogits·W,     ∂L/∂W = Σ dlogitsᵀ·h,     ∂L/∂b = Σ dlogits

adds into the embedding's gradient when tied, since one matrix served twice.
"""


def output_forward(h, weight, bias):
    """h (B, T, D), weight (V, D), bias (V,) -> logits (B, T, V)."""
    logits = h @ weight.T + bias  # (B, T, V)
    return logits, (h, weight)


def output_backward(dlogits, cache):
    """dlogits (B, T, V) -> dh (B, T, D), dweight (V, D), dbias (V,)."""
    h, weight = cache
    vocab_size, d_model = weight.shape
    dh = dlogits @ weight  # (B, T, D)
    dlogits_2d = dlogits.reshape(-1, vocab_size)  # (B*T, V)
    dweight = dlogits_2d.T @ h.reshape(-1, d_model)  # (V, D)
    dbias = dlogits_2d.sum(axis=0)  # (V,)
    return dh, dweight, dbias
