"""Additive attention (Bahdanau, Cho & Bengio, 2015): a small network scores each pair.

The first neural translation models squeezed a whole source sentence into one vector.
Bahdanau et al. let the decoder look back at every source word instead: to emit target
word t it scores each source annotation k_s against its own state q_t with a one-layer
network, and reads the softmax-weighted average of the annotations:

    e[t, s] = wᵀ tanh(W_q q_t + W_k k_s)                     (the paper's "alignment model")
    α[t, s] = softmax_s(e[t, s]),        o_t = Σ_s α[t, s] · v_s

W_q (D_q, A) and W_k (D_k, A) map query and key into one hidden space of width A, so q and
k may have different widths (decoder state vs encoder annotation). It is also called
"concat" attention: W_q q + W_k k = [W_q; W_k]·[q; k]. The tanh is what makes it more than
a bilinear form: a unit saturates only when query AND key push it, so a hidden unit can act
as an AND that fires for one particular pair. The price: an A-wide vector per (t, s) pair,
where dot-product attention needs one number, which is why the Transformer uses the dot.

Backward, with de = ∂L/∂e and h = tanh(W_q q_t + W_k k_s) (B, T, S, A):

    ∂L/∂w = Σ_{t,s} de[t, s] · h[t, s]                dh = de · wᵀ
    da = dh ⊙ (1 − h²)                                since tanh' = 1 − tanh²
    ∂L/∂(W_q q_t) = Σ_s da[t, s]      ∂L/∂(W_k k_s) = Σ_t da[t, s]

then the two linear maps as in layers/linear.py. The softmax and average are in
zoo/__init__.py.

The demo learns a toy English→French word alignment, the figure that made the paper famous:

    python -m minitransformer.zoo.additive --seed 0

Size letters: B batch, T queries, S keys, Dq query width, Dk key width, A hidden width,
Dv value width.
"""

import argparse

import numpy as np

from ..optim import Adam
from . import attention_weights, softmax_average_backward, softmax_average_forward


def additive_score_forward(queries, keys, w_query, w_key, w_score):
    """queries (B, T, Dq), keys (B, S, Dk), w_query (Dq, A), w_key (Dk, A), w_score (A,)
    -> scores (B, T, S), cache."""
    projected_queries = queries @ w_query  # (B, T, A)
    projected_keys = keys @ w_key  # (B, S, A)
    # every query meets every key: broadcast to one hidden vector per pair
    hidden = np.tanh(projected_queries[:, :, None, :] + projected_keys[:, None, :, :])  # (B, T, S, A)
    scores = hidden @ w_score  # (B, T, S)
    cache = (queries, keys, w_query, w_key, w_score, hidden)
    return scores, cache


def additive_score_backward(dscores, cache):
    """dscores (B, T, S) -> dqueries (B, T, Dq), dkeys (B, S, Dk), dw_query (Dq, A),
    dw_key (Dk, A), dw_score (A,)."""
    queries, keys, w_query, w_key, w_score, hidden = cache
    hidden_width = w_score.shape[0]
    # in the forward pass this was: scores = hidden @ w_score
    dw_score = hidden.reshape(-1, hidden_width).T @ dscores.reshape(-1)  # (A,)
    dhidden = dscores[..., None] * w_score  # (B, T, S, A)
    # in the forward pass this was: hidden = tanh(pre); tanh' = 1 − tanh²
    dpre = dhidden * (1 - hidden * hidden)  # (B, T, S, A)
    # the broadcast copied each projected query over S keys and each key over T queries
    dprojected_queries = dpre.sum(axis=2)  # (B, T, A)
    dprojected_keys = dpre.sum(axis=1)  # (B, S, A)
    # in the forward pass this was: projected = inputs @ w
    dqueries = dprojected_queries @ w_query.T  # (B, T, Dq)
    dkeys = dprojected_keys @ w_key.T  # (B, S, Dk)
    # every position used the same W: fold batch and time into one axis and sum with a matmul
    dw_query = queries.reshape(-1, queries.shape[-1]).T @ dprojected_queries.reshape(-1, hidden_width)  # (Dq, A)
    dw_key = keys.reshape(-1, keys.shape[-1]).T @ dprojected_keys.reshape(-1, hidden_width)  # (Dk, A)
    return dqueries, dkeys, dw_query, dw_key, dw_score


def additive_attention_forward(queries, keys, values, w_query, w_key, w_score, mask=None):
    """queries (B, T, Dq), keys (B, S, Dk), values (B, S, Dv), w_query (Dq, A), w_key (Dk, A),
    w_score (A,), mask None or bool ~(B, T, S) -> out (B, T, Dv), cache."""
    scores, score_cache = additive_score_forward(queries, keys, w_query, w_key, w_score)  # (B, T, S)
    out, average_cache = softmax_average_forward(scores, values, mask)  # (B, T, Dv)
    return out, (score_cache, average_cache)


def additive_attention_backward(dout, cache):
    """dout (B, T, Dv) -> dqueries, dkeys, dvalues, dw_query, dw_key, dw_score."""
    score_cache, average_cache = cache
    dscores, dvalues = softmax_average_backward(dout, average_cache)  # (B, T, S), (B, S, Dv)
    dqueries, dkeys, dw_query, dw_key, dw_score = additive_score_backward(dscores, score_cache)
    return dqueries, dkeys, dvalues, dw_query, dw_key, dw_score


# ---------------------------------------------------------------------------------------
# Demo: learn which English word each French word aligns to.

ENGLISH = ["the", "cat", "dog", "eats", "sees", "small", "big", "fish"]
# two French words may align to one English word (gender): le/la → the, petit/petite → small
FRENCH_TO_ENGLISH = {
    "le": "the", "la": "the", "chat": "cat", "chien": "dog", "mange": "eats", "voit": "sees",
    "petit": "small", "petite": "small", "grand": "big", "poisson": "fish",
}  # fmt: skip
FRENCH = list(FRENCH_TO_ENGLISH)


def one_hot(indices, size):
    """indices (...) int -> (..., size) float64."""
    return np.eye(size)[indices]


def alignment_batch(batch_size, source_length, rng):
    """Sentence pairs as bags of words: S distinct English words, and their French
    translations in a shuffled order (word order differs between languages).

    Returns source (B, S) English ids, target (B, S) French ids, aligned (B, S): the
    source position of each target word's translation.
    """
    source = np.stack([rng.permutation(len(ENGLISH))[:source_length] for _ in range(batch_size)])  # (B, S)
    aligned = np.stack([rng.permutation(source_length) for _ in range(batch_size)])  # (B, T=S)
    target = np.empty_like(source)  # (B, T)
    for b in range(batch_size):
        for t in range(source_length):
            english = ENGLISH[source[b, aligned[b, t]]]
            choices = [i for i, french in enumerate(FRENCH) if FRENCH_TO_ENGLISH[french] == english]
            target[b, t] = rng.choice(choices)
    return source, target, aligned


def alignment_loss(queries, keys, params, aligned):
    """Cross-entropy of the attention on the aligned source word, and its gradients.

    The values are the source positions one-hot, so the output row o_t is the attention
    distribution itself, and −log o_t[aligned] asks the model to put its weight there.
    Returns loss, accuracy, grads {w_query, w_key, w_score}, weights (B, T, S).
    """
    batch, source_length = aligned.shape
    positions = np.broadcast_to(np.eye(source_length), (batch, source_length, source_length))  # (B, S, S)
    out, cache = additive_attention_forward(
        queries, keys, positions, params["w_query"], params["w_key"], params["w_score"]
    )  # (B, T, S)
    picked = np.take_along_axis(out, aligned[..., None], axis=-1)[..., 0]  # (B, T)
    loss = float(-np.log(picked).mean())
    dout = np.zeros_like(out)  # (B, T, S)
    np.put_along_axis(dout, aligned[..., None], (-1.0 / (picked * picked.size))[..., None], axis=-1)
    _, _, _, dw_query, dw_key, dw_score = additive_attention_backward(dout, cache)
    weights = attention_weights(cache[1])  # (B, T, S)
    accuracy = float((weights.argmax(axis=-1) == aligned).mean())
    return loss, accuracy, {"w_query": dw_query, "w_key": dw_key, "w_score": dw_score}, weights


def print_alignment(source, target, weights):
    """One sentence pair's attention as a grid: rows French (queries), columns English (keys)."""
    english = [ENGLISH[i] for i in source]
    print("          " + "".join(f"{word:>7s}" for word in english))
    for t, french_id in enumerate(target):
        cells = "".join(f"{weight:7.2f}" for weight in weights[t])
        print(f"  {FRENCH[french_id]:>8s}" + cells)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--source-length", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=16, help="A, the width of the scoring network")
    parser.add_argument("--lr", type=float, default=0.01)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    # queries and keys are one-hot words, so W_q q and W_k k are learned word embeddings
    params = {
        "w_query": rng.standard_normal((len(FRENCH), args.hidden)),  # (Dq, A)
        "w_key": rng.standard_normal((len(ENGLISH), args.hidden)),  # (Dk, A)
        "w_score": rng.standard_normal(args.hidden) / np.sqrt(args.hidden),  # (A,)
    }
    optimizer = Adam(params, beta1=0.9, beta2=0.99, eps=1e-8)
    # one fixed sentence pair, to show its alignment before and after training
    shown_source, shown_target, shown_aligned = alignment_batch(1, args.source_length, rng)
    shown = (one_hot(shown_target, len(FRENCH)), one_hot(shown_source, len(ENGLISH)), shown_aligned)
    *_, weights = alignment_loss(*shown[:2], params, shown[2])
    print("attention weights before training (rows: French queries, columns: English keys):")
    print_alignment(shown_source[0], shown_target[0], weights[0])
    print(f"\ntraining the additive scorer (A = {args.hidden}) with the hand-written backward; each example: "
          f"{args.source_length} English words and their French translations, shuffled:")  # fmt: skip
    history = []
    for step in range(args.steps + 1):
        source, target, aligned = alignment_batch(args.batch, args.source_length, rng)
        queries = one_hot(target, len(FRENCH))  # (B, T, Dq)
        keys = one_hot(source, len(ENGLISH))  # (B, S, Dk)
        loss, accuracy, grads, _ = alignment_loss(queries, keys, params, aligned)
        history.append(loss)
        if step % max(1, args.steps // 10) == 0:
            print(f"  step {step:4d}   loss {loss:.4f}   aligned correctly {accuracy:6.1%}")
        if step < args.steps:
            optimizer.step(params, grads, args.lr)

    *_, weights = alignment_loss(*shown[:2], params, shown[2])
    print("\nattention weights after training (each row sums to 1):")
    print_alignment(shown_source[0], shown_target[0], weights[0])
    return history


if __name__ == "__main__":
    main()
