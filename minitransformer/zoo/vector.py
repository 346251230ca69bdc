"""Vector attention: a separate softmax for every channel, so each channel can look elsewhere.

Ordinary (scalar) attention gives one weight per query–key pair and mixes every channel of
the value with it. Vector attention (Zhao et al., "Exploring Self-attention for Image
Recognition", 2020; the Point Transformer, 2021) gives one weight per pair AND channel:

    e[t, s, :] = MLP(q_t − k_s)                              a vector of C scores
    α[t, s, c] = softmax over s of e[t, s, c]                 for each channel c on its own
    o[t, c]    = Σ_s α[t, s, c] · v[s, c]

Why an MLP, and not a linear map, of q − k: (q_t − k_s)·W = q_t·W − k_s·W, and the softmax
over s ignores anything that does not depend on s, so q_t·W would drop out and every query
would get the same weights. The tanh in between lets q and k interact.
Here MLP(d) = tanh(d·W_hidden + b_hidden)·W_score (the mlp score of scoring.py).

Grouped vector attention (Point Transformer V2) shares one weight among C/G channels: G
groups of scores instead of C. G = C is full vector attention; G = 1 is ordinary scalar
attention with an MLP score, which is how the demo builds its baseline.

Backward, with dα = ∂L/∂α and everything per group g (Cg = C/G channels in each):

    ∂L/∂v[s, g, c] = Σ_t α[t, s, g] · do[t, g, c]      dα[t, s, g] = Σ_c do[t, g, c] · v[s, g, c]
    de[t, :, g] = α[t, :, g] ⊙ (dα[t, :, g] − Σ_s α[t, s, g] dα[t, s, g])   (the softmax)

then the MLP backward of scoring.py.

The demo learns a stencil: channel 0 must copy its left neighbour, channel 1 itself and
channel 2 its right neighbour, which one weight per key cannot do:

    python -m minitransformer.zoo.vector --seed 0

Size letters: B batch, T queries, S keys, D query/key width, A hidden width, C value
channels, G weight groups (G divides C).
"""

import argparse

import numpy as np

from ..layers.attention import masked_softmax
from ..optim import Adam
from .scoring import mlp_score_backward, mlp_score_forward


def vector_attention_forward(queries, keys, values, w_hidden, b_hidden, w_score, mask=None):
    """queries (B, T, D), keys (B, S, D), values (B, S, C), w_hidden (D, A), b_hidden (A,),
    w_score (A, G), mask None or bool ~(B, T, S) -> out (B, T, C), cache.

    A query whose keys are all masked gets zero weights in every channel, and a zero output.
    """
    batch, n_keys, channels = values.shape
    n_groups = w_score.shape[1]
    if channels % n_groups:
        raise ValueError(f"{n_groups} weight groups do not divide {channels} value channels")
    # pass 1: G scores per pair, from the MLP of q − k
    scores, score_cache = mlp_score_forward(queries, keys, w_hidden, b_hidden, w_score)  # (B, T, S, G)
    # pass 2: softmax over keys, separately per group; keys last so the shared helper applies
    group_mask = None if mask is None else mask[..., None, :]  # ~(B, T, 1, S)
    weights = masked_softmax(scores.swapaxes(-1, -2), group_mask)  # (B, T, G, S)
    # pass 3: each group of channels averages the values with its own weights
    grouped_values = values.reshape(batch, n_keys, n_groups, channels // n_groups)  # (B, S, G, Cg)
    grouped_out = np.einsum("btgs,bsgc->btgc", weights, grouped_values)  # (B, T, G, Cg)
    out = grouped_out.reshape(batch, -1, channels)  # (B, T, C)
    cache = (score_cache, weights, grouped_values)
    return out, cache


def vector_attention_backward(dout, cache):
    """dout (B, T, C) -> dqueries (B, T, D), dkeys (B, S, D), dvalues (B, S, C),
    dw_hidden (D, A), db_hidden (A,), dw_score (A, G)."""
    score_cache, weights, grouped_values = cache
    batch, n_keys, n_groups, group_width = grouped_values.shape
    # pass 3, in the forward pass: grouped_out = Σ_s weights · grouped_values
    dgrouped_out = dout.reshape(batch, -1, n_groups, group_width)  # (B, T, G, Cg)
    dgrouped_values = np.einsum("btgs,btgc->bsgc", weights, dgrouped_out)  # (B, S, G, Cg)
    dweights = np.einsum("btgc,bsgc->btgs", dgrouped_out, grouped_values)  # (B, T, G, S)
    # pass 2, in the forward pass: weights = softmax over s; one row-sum per (t, g)
    row_dot = (dweights * weights).sum(axis=-1, keepdims=True)  # (B, T, G, 1)
    dscores = (weights * (dweights - row_dot)).swapaxes(-1, -2)  # (B, T, S, G)
    # pass 1
    dqueries, dkeys, dw_hidden, db_hidden, dw_score = mlp_score_backward(dscores, score_cache)
    dvalues = dgrouped_values.reshape(batch, n_keys, n_groups * group_width)  # (B, S, C)
    return dqueries, dkeys, dvalues, dw_hidden, db_hidden, dw_score


def vector_attention_weights(cache):
    """The weights α (B, T, S, G) kept by vector_attention_forward, for printing."""
    return cache[1].swapaxes(-1, -2)


# ---------------------------------------------------------------------------------------
# Demo: learn a three-point stencil, left / self / right, one channel each.

CHANNEL_OFFSETS = (-1, 0, +1)  # channel c of the output copies the value at position t + offset[c]


def stencil_batch(batch_size, length, rng):
    """Points at positions 0 … L−1 carry random 3-channel values; the queries are the inner
    points 1 … L−2, and the answer for channel c of query t is channel c of point t + offset[c].

    Returns queries (1, T, 1) and keys (1, S, 1) positions (the same for every example),
    values (B, S, C), wanted (B, T, C).
    """
    positions = np.arange(length, dtype=np.float64)  # (S,)
    inner = np.arange(1, length - 1)  # (T,)
    values = rng.standard_normal((batch_size, length, len(CHANNEL_OFFSETS)))  # (B, S, C)
    wanted = np.stack(
        [values[:, inner + offset, channel] for channel, offset in enumerate(CHANNEL_OFFSETS)], axis=-1
    )  # (B, T, C)
    return positions[None, inner, None], positions[None, :, None], values, wanted


def train(n_groups, args, rng):
    """Train vector attention with G = ``n_groups`` weight groups on the stencil task.
    Returns the losses and the parameters."""
    hidden = args.hidden
    params = {
        "w_hidden": rng.standard_normal((1, hidden)),  # (D, A)
        "b_hidden": rng.standard_normal(hidden),  # (A,)
        "w_score": rng.standard_normal((hidden, n_groups)) / np.sqrt(hidden),  # (A, G)
    }
    optimizer = Adam(params, beta1=0.9, beta2=0.99, eps=1e-8)
    losses = []
    for step in range(args.steps + 1):
        queries, keys, values, wanted = stencil_batch(args.batch, args.length, rng)
        # the positions are the same in every example; broadcast them over the batch
        queries = np.broadcast_to(queries, (args.batch,) + queries.shape[1:])  # (B, T, 1)
        keys = np.broadcast_to(keys, (args.batch,) + keys.shape[1:])  # (B, S, 1)
        out, cache = vector_attention_forward(queries, keys, values, **params)  # (B, T, C)
        residual = out - wanted  # (B, T, C)
        losses.append(float((residual * residual).mean()))
        if step < args.steps:
            dout = 2.0 * residual / residual.size  # (B, T, C)
            *_, dw_hidden, db_hidden, dw_score = vector_attention_backward(dout, cache)
            grads = {"w_hidden": dw_hidden, "b_hidden": db_hidden, "w_score": dw_score}
            optimizer.step(params, grads, args.lr)
    return losses, params


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=10, help="points on the line")
    parser.add_argument("--hidden", type=int, default=16, help="A, the width of the score MLP")
    parser.add_argument("--lr", type=float, default=0.03)
    args = parser.parse_args(argv)

    channels = len(CHANNEL_OFFSETS)
    print("task: output channel 0 = left neighbour's channel 0, channel 1 = own channel 1, "
          "channel 2 = right neighbour's channel 2")  # fmt: skip
    print("mean squared error while training with the hand-written backward (a blind guess of 0 scores 1.0):")
    vector_losses, vector_params = train(channels, args, np.random.default_rng(args.seed))
    scalar_losses, _ = train(1, args, np.random.default_rng(args.seed))
    print("   step   vector (G = C = 3)   scalar (G = 1)")
    for step in range(0, args.steps + 1, max(1, args.steps // 8)):
        print(f"  {step:5d}   {vector_losses[step]:17.4f}   {scalar_losses[step]:14.4f}")
    print("one weight per key can at best spread itself over the three neighbours (error ≈ 2/3).")

    queries, keys, values, _ = stencil_batch(1, args.length, np.random.default_rng(args.seed))
    _, cache = vector_attention_forward(queries, keys, values, **vector_params)
    middle = queries.shape[1] // 2
    weights = vector_attention_weights(cache)[0, middle]  # (S, C)
    query_position = int(queries[0, middle, 0])
    print(f"\nlearned weights α[t, s, c] of the query at position {query_position}, one column per channel:")
    print("  key position   left (c=0)   self (c=1)   right (c=2)")
    for s in range(max(0, query_position - 3), min(args.length, query_position + 4)):
        print(f"  {s:12d}" + "".join(f"{weights[s, c]:13.3f}" for c in range(channels)))
    return vector_losses, scalar_losses


if __name__ == "__main__":
    main()
