"""The attention zoo: the variants that come before (and beside) the Transformer's core.

Every attention mechanism here is the same three steps; only the first one changes:

    1. score    e[t, s] = score(q_t, k_s)             how well key s fits query t
    2. softmax  α[t, s] = exp(e[t, s]) / Σ_s' exp(e[t, s'])   weights, ≥ 0, summing to 1
    3. average  o_t     = Σ_s α[t, s] · v_s            a weighted average of the values

So attention is a differentiable lookup: a dictionary that, instead of returning the value
of the one key equal to the query, returns a blend of all values, weighted by fit.

    kernel_regression.py  Nadaraya–Watson (1964): e = −‖q − k‖² / 2h², a Gaussian kernel
                          with a learnable bandwidth h; attention before it had the name
    additive.py           Bahdanau (2015): e = wᵀ tanh(W_q q + W_k k), a one-layer network
                          scores the pair; q and k may have different widths
    cosine.py             e = cos(q, k) / τ: the angle alone, sharpened by a learnable
                          temperature τ; immune to the length of q and k
    vector.py             one weight per key AND channel: α[t, s, c], from an MLP of q − k
                          (Point Transformer); each channel can look somewhere else
    scoring.py            the score functions side by side: dot, scaled dot, cosine,
                          additive, MLP, each with its backward; why the 1/√Dh

Each module runs a demo that trains its parameters with the hand-written gradients:

    python -m minitransformer.zoo.kernel_regression --seed 0
    python -m minitransformer.zoo.additive --seed 0
    python -m minitransformer.zoo.cosine --seed 0
    python -m minitransformer.zoo.vector --seed 0
    python -m minitransformer.zoo.scoring --seed 0

Steps 2 and 3 are shared by all but vector.py, so they live here, once.

Size letters: B batch, T queries, S keys, D query/key width, Dv value width.
"""

from ..layers.attention import masked_softmax


def softmax_average_forward(scores, values, mask=None):
    """Steps 2 and 3: weights = softmax over keys of the scores, out = weights · values.

    scores (B, T, S), values (B, S, Dv), mask None or bool broadcastable to (B, T, S),
    True where query t may look at key s -> out (B, T, Dv), cache.

    A query whose keys are all masked gets all-zero weights and a zero output (never NaN).
    """
    weights = masked_softmax(scores, mask)  # (B, T, S)
    out = weights @ values  # (B, T, Dv)
    cache = (weights, values)
    return out, cache


def softmax_average_backward(dout, cache):
    """dout (B, T, Dv) -> dscores (B, T, S), dvalues (B, S, Dv).

    With α = softmax(e) row by row, ∂α_s/∂e_s' = α_s (δ_ss' − α_s'), so

        de_s = α_s · (dα_s − Σ_s' α_s' dα_s')

    one row-sum instead of an S×S Jacobian. Masked keys have α = 0, hence de = 0.
    """
    weights, values = cache
    # in the forward pass this was: out = weights @ values
    dvalues = weights.swapaxes(-1, -2) @ dout  # (B, S, Dv)
    dweights = dout @ values.swapaxes(-1, -2)  # (B, T, S)
    # in the forward pass this was: weights = softmax(scores)
    row_dot = (dweights * weights).sum(axis=-1, keepdims=True)  # (B, T, 1)
    dscores = weights * (dweights - row_dot)  # (B, T, S)
    return dscores, dvalues


def attention_weights(cache):
    """The weights α (B, T, S) kept by softmax_average_forward, for printing and plots."""
    return cache[0]
