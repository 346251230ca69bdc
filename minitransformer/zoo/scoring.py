"""Score functions side by side: the one step in which attention mechanisms differ.

Attention is score → softmax → weighted average (see zoo/__init__.py). Five scores:

    name        e(q, k)                         parameters        blind to
    dot         q · k                           none              nothing
    scaled_dot  q · k / √D                      none              nothing
    cosine      (q̂ · k̂) / τ,  x̂ = x / ‖x‖       τ                 the lengths of q and k
    additive    wᵀ tanh(W_q q + W_k k)          W_q, W_k, w       nothing (q, k widths may differ)
    mlp         wᵀ tanh((q − k) W + b)          W, b, w           moving q and k together

Why the √D. If q and k have independent entries of mean 0 and variance 1, q · k is a sum of
D such products, so its variance is D. At D = 512 the scores are spread ±22 apart, the
softmax puts almost all weight on one key, and its Jacobian diag(α) − ααᵀ is nearly zero:
gradients vanish. Dividing by √D brings the variance back to 1 at every width (section
3.2.1 of "Attention Is All You Need"). Cosine has the opposite problem, its scores shrink
like 1/√D, the weights go uniform, so it needs a temperature. Additive and MLP scores are
bounded by the tanh and scaled by their (learned) output weights w.

Each score below is a forward/backward pair,

    scores, cache = <name>_score_forward(queries, keys, **params)          (B, T, S)
    dqueries, dkeys, *dparams = <name>_score_backward(dscores, cache)

cosine and additive live in cosine.py and additive.py, where their ideas are explained,
and are gathered in SCORES here. The demo measures the table above rather than trusting it:

    python -m minitransformer.zoo.scoring --seed 0

Size letters: B batch, T queries, S keys, D query/key width, A hidden width, G score groups.
"""

import argparse
import math

import numpy as np

from . import softmax_average_backward, softmax_average_forward
from .additive import additive_score_backward, additive_score_forward
from .cosine import cosine_score_backward, cosine_score_forward


def dot_score_forward(queries, keys):
    """queries (B, T, D), keys (B, S, D) -> scores (B, T, S) = q · k, cache."""
    scores = queries @ keys.swapaxes(-1, -2)  # (B, T, S)
    return scores, (queries, keys)


def dot_score_backward(dscores, cache):
    """dscores (B, T, S) -> dqueries (B, T, D), dkeys (B, S, D): e is bilinear, so each
    gradient is the other factor weighted by de."""
    queries, keys = cache
    dqueries = dscores @ keys  # (B, T, D)
    dkeys = dscores.swapaxes(-1, -2) @ queries  # (B, S, D)
    return dqueries, dkeys


def scaled_dot_score_forward(queries, keys):
    """queries (B, T, D), keys (B, S, D) -> scores (B, T, S) = q · k / √D, cache."""
    scale = 1.0 / math.sqrt(queries.shape[-1])
    scores = (queries @ keys.swapaxes(-1, -2)) * scale  # (B, T, S)
    return scores, (queries, keys, scale)


def scaled_dot_score_backward(dscores, cache):
    """dscores (B, T, S) -> dqueries (B, T, D), dkeys (B, S, D); the constant scale
    multiplies both gradients."""
    queries, keys, scale = cache
    dqueries = (dscores @ keys) * scale  # (B, T, D)
    dkeys = (dscores.swapaxes(-1, -2) @ queries) * scale  # (B, S, D)
    return dqueries, dkeys


def mlp_score_forward(queries, keys, w_hidden, b_hidden, w_score):
    """queries (B, T, D), keys (B, S, D), w_hidden (D, A), b_hidden (A,),
    w_score (A,) or (A, G) -> scores (B, T, S) or (B, T, S, G), cache.

    e = w_scoreᵀ tanh((q − k)·W_hidden + b_hidden): a learned function of the displacement
    q − k, so a learned kernel (the Gaussian of kernel_regression.py is a fixed one). With
    w_score of shape (A, G) it gives G scores per pair, which vector.py uses.
    """
    diff = queries[:, :, None, :] - keys[:, None, :, :]  # (B, T, S, D)
    # the bias matters here: without it the tanh of an odd function of q − k is odd too
    hidden = np.tanh(diff @ w_hidden + b_hidden)  # (B, T, S, A)
    scores = hidden @ w_score  # (B, T, S) or (B, T, S, G)
    cache = (diff, hidden, w_hidden, w_score)
    return scores, cache


def mlp_score_backward(dscores, cache):
    """dscores (B, T, S) or (B, T, S, G) -> dqueries (B, T, D), dkeys (B, S, D),
    dw_hidden (D, A), db_hidden (A,), dw_score like w_score."""
    diff, hidden, w_hidden, w_score = cache
    batch, n_queries, n_keys, hidden_width = hidden.shape
    # view a single score per pair as one group, so both cases share the lines below
    dscores_grouped = dscores.reshape(batch, n_queries, n_keys, -1)  # (B, T, S, G)
    w_score_grouped = w_score.reshape(hidden_width, -1)  # (A, G)
    # in the forward pass this was: scores = hidden @ w_score
    n_groups = w_score_grouped.shape[1]
    dw_score = hidden.reshape(-1, hidden_width).T @ dscores_grouped.reshape(-1, n_groups)  # (A, G)
    dhidden = dscores_grouped @ w_score_grouped.T  # (B, T, S, A)
    # in the forward pass this was: hidden = tanh(diff @ w_hidden + b_hidden)
    dpre = dhidden * (1 - hidden * hidden)  # (B, T, S, A)
    db_hidden = dpre.reshape(-1, hidden_width).sum(axis=0)  # (A,)
    dw_hidden = diff.reshape(-1, diff.shape[-1]).T @ dpre.reshape(-1, hidden_width)  # (D, A)
    ddiff = dpre @ w_hidden.T  # (B, T, S, D)
    # in the forward pass this was: diff = q − k, broadcast over keys and over queries
    dqueries = ddiff.sum(axis=2)  # (B, T, D)
    dkeys = -ddiff.sum(axis=1)  # (B, S, D)
    return dqueries, dkeys, dw_hidden, db_hidden, dw_score.reshape(w_score.shape)


def init_params(name, width, rng, hidden_width=32):
    """Parameters for score ``name`` on D = ``width``, drawn so that the hidden
    pre-activations have variance about 1 when q and k have unit-variance entries."""
    if name == "cosine":
        return {"temperature": np.array(1.0)}
    if name == "additive":
        return {
            "w_query": rng.standard_normal((width, hidden_width)) / math.sqrt(2 * width),  # (D, A)
            "w_key": rng.standard_normal((width, hidden_width)) / math.sqrt(2 * width),  # (D, A)
            "w_score": rng.standard_normal(hidden_width) / math.sqrt(hidden_width),  # (A,)
        }
    if name == "mlp":
        return {
            "w_hidden": rng.standard_normal((width, hidden_width)) / math.sqrt(2 * width),  # (D, A)
            "b_hidden": rng.standard_normal(hidden_width),  # (A,)
            "w_score": rng.standard_normal(hidden_width) / math.sqrt(hidden_width),  # (A,)
        }
    return {}


# name -> (forward, backward, parameter names in argument order)
SCORES = {
    "dot": (dot_score_forward, dot_score_backward, ()),
    "scaled_dot": (scaled_dot_score_forward, scaled_dot_score_backward, ()),
    "cosine": (cosine_score_forward, cosine_score_backward, ("temperature",)),
    "additive": (additive_score_forward, additive_score_backward, ("w_query", "w_key", "w_score")),
    "mlp": (mlp_score_forward, mlp_score_backward, ("w_hidden", "b_hidden", "w_score")),
}


def score(name, queries, keys, params):
    """scores (B, T, S), cache of score ``name``; ``params`` from init_params."""
    forward, _, param_names = SCORES[name]
    return forward(queries, keys, *(params[key] for key in param_names))


# ---------------------------------------------------------------------------------------
# Demo: measure how each score behaves as the width grows, and what it is blind to.


def width_tables(args, rng, names):
    """Part 1: unit-variance q and k of growing width D; what reaches the softmax, and back.
    -> {title: {(D, score name): value}}, printed as one table per title."""
    tables = {"spread of the scores, std(e)": {}, "largest weight, mean max α": {},
              "gradient leaving the softmax, mean ‖∂L/∂e‖ per query": {}}  # fmt: skip
    for width in args.widths:
        queries = rng.standard_normal((args.batch, 1, width))  # (B, 1, D)
        keys = rng.standard_normal((args.batch, args.keys, width))  # (B, S, D)
        values = rng.standard_normal((args.batch, args.keys, 1))  # (B, S, 1)
        dout = rng.standard_normal((args.batch, 1, 1))  # (B, 1, 1)
        for name in names:
            scores, _ = score(name, queries, keys, init_params(name, width, rng))  # (B, 1, S)
            _, average_cache = softmax_average_forward(scores, values)  # (B, 1, 1)
            weights = average_cache[0]  # (B, 1, S)
            # a saturated softmax passes almost nothing back to the scores, whatever dout
            dscores, _ = softmax_average_backward(dout, average_cache)  # (B, 1, S)
            row = (float(scores.std()), float(weights.max(axis=-1).mean()),
                   float(np.linalg.norm(dscores, axis=-1).mean()))  # fmt: skip
            for table, value in zip(tables.values(), row):
                table[width, name] = value
    print(f"q, k with N(0, 1) entries, S = {args.keys} keys, parameters as initialized (seed {args.seed})")
    for title, table in tables.items():
        print(f"\n{title}:")
        print("        D" + "".join(f"{name:>12s}" for name in names))
        for width in args.widths:
            print(f"  {width:7d}" + "".join(f"{table[width, name]:12.3g}" for name in names))
    print(f"\n(a uniform softmax has max α = 1/S = {1 / args.keys:.3g}; "
          "a saturated one has max α → 1 and passes back no gradient)")  # fmt: skip
    return tables


def invariances(args, rng, names, width=16):
    """Part 2: invariances, measured as the relative change of the scores
    -> {(change, score name): ‖e' − e‖ / ‖e‖ after removing each row's mean change}."""
    queries = rng.standard_normal((args.batch, 4, width))  # (B, T, D)
    keys = rng.standard_normal((args.batch, args.keys, width))  # (B, S, D)
    shift = 3.0 * rng.standard_normal(width)  # (D,)
    changes = {
        "keys ×10": (queries, 10.0 * keys),
        "queries ×10": (10.0 * queries, keys),
        "q, k + same shift": (queries + shift, keys + shift),
    }
    print("\nhow much the scores change, ‖e' − e‖ / ‖e‖, after removing from each row its mean change,")
    print("which the softmax ignores (0 = the attention weights are blind to it):")
    print(f"  {'change':20s}" + "".join(f"{name:>12s}" for name in names))
    blindness = {}
    for label, (changed_queries, changed_keys) in changes.items():
        cells = []
        for name in names:
            params = init_params(name, width, np.random.default_rng(args.seed))
            before, _ = score(name, queries, keys, params)  # (B, T, S)
            after, _ = score(name, changed_queries, changed_keys, params)  # (B, T, S)
            # a change that adds the same number to every score of a row leaves α as it was
            difference = (after - before) - (after - before).mean(axis=-1, keepdims=True)  # (B, T, S)
            cells.append(float(np.linalg.norm(difference) / np.linalg.norm(before)))
            blindness[label, name] = cells[-1]
        print(f"  {label:20s}" + "".join(f"{cell:12.3g}" for cell in cells))
    return blindness


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--keys", type=int, default=16, help="S, keys per query")
    parser.add_argument("--widths", type=int, nargs="+", default=[4, 16, 64, 256, 1024])
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    names = list(SCORES)
    tables = width_tables(args, rng, names)
    blindness = invariances(args, rng, names)
    return tables, blindness


if __name__ == "__main__":
    main()
