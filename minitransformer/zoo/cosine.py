"""Cosine attention: score by the angle between query and key, sharpened by a temperature.

    e[t, s] = cos(q_t, k_s) / τ = (q_t · k_s) / (‖q_t‖ ‖k_s‖ τ)
    α[t, s] = softmax_s(e[t, s]),        o_t = Σ_s α[t, s] · v_s

The dot product q·k = ‖q‖ ‖k‖ cos θ mixes two things: how well the directions agree and how
long the vectors are. A long key wins the softmax against a short key that points exactly
the right way, and a long query makes every softmax nearly one-hot (saturated, with almost
no gradient). Cosine keeps only the direction, so every score lies in [−1/τ, 1/τ]:
    τ large   scores are close together: weights near uniform, a blurry average;
    τ small   the best-aligned key takes nearly all the weight.
A bounded score has no sharpness of its own, so τ must be chosen, and here it is learned.
Cosine attention with a learned temperature is used where training must stay stable at
scale (Swin Transformer V2; "QK-norm" in large language models normalizes q and k for
the same reason) and in retrieval, where memories have unrelated norms.

Backward, with de = ∂L/∂e, c = cos(q, k), q̂ = q / n_q and n_q = √(‖q‖² + ε):

    dc = de / τ                 ∂L/∂τ = −Σ de · c / τ²
    dq̂_t = Σ_s dc[t, s] k̂_s    dk̂_s = Σ_t dc[t, s] q̂_t
    ∂L/∂q = (dq̂ − q̂ (q̂ · dq̂)) / n_q        (and the same for k)

The last line says: normalizing removes the part of the gradient along q, because
stretching q along itself does not change q̂. The small ε only keeps 0/0 away from a zero
vector; the formula above is exact with it.

The demo retrieves the value of the key a noisy query points to, among keys whose lengths
differ a hundredfold, learns τ, and compares with scaled dot-product attention:

    python -m minitransformer.zoo.cosine --seed 0

Size letters: B batch, T queries, S keys, D query/key width, Dv value width.
"""

import argparse
import math

import numpy as np

from ..arrays import array_module
from ..optim import Adam
from . import attention_weights, softmax_average_backward, softmax_average_forward

NORM_EPS = 1e-12  # added to ‖x‖² so that a zero vector normalizes to 0, not NaN


def normalize_forward(x):
    """x (..., D) -> x̂ = x / √(‖x‖² + ε) (..., D), norm (..., 1)."""
    xp = array_module(x)
    norm = xp.sqrt((x * x).sum(axis=-1, keepdims=True) + NORM_EPS)  # (..., 1)
    return x / norm, norm


def normalize_backward(dunit, unit, norm):
    """dunit (..., D) -> dx (..., D): drop the component along x̂, divide by the norm."""
    along = (dunit * unit).sum(axis=-1, keepdims=True)  # (..., 1)
    return (dunit - unit * along) / norm  # (..., D)


def cosine_score_forward(queries, keys, temperature):
    """queries (B, T, D), keys (B, S, D), temperature () > 0 -> scores (B, T, S), cache."""
    xp = array_module(queries)
    temperature = xp.asarray(temperature, dtype=queries.dtype)  # ()
    unit_queries, query_norms = normalize_forward(queries)  # (B, T, D), (B, T, 1)
    unit_keys, key_norms = normalize_forward(keys)  # (B, S, D), (B, S, 1)
    cosines = unit_queries @ unit_keys.swapaxes(-1, -2)  # (B, T, S)
    scores = cosines / temperature  # (B, T, S)
    cache = (unit_queries, query_norms, unit_keys, key_norms, cosines, temperature)
    return scores, cache


def cosine_score_backward(dscores, cache):
    """dscores (B, T, S) -> dqueries (B, T, D), dkeys (B, S, D), dtemperature ()."""
    unit_queries, query_norms, unit_keys, key_norms, cosines, temperature = cache
    # in the forward pass this was: scores = cosines / τ
    dcosines = dscores / temperature  # (B, T, S)
    dtemperature = -(dscores * cosines).sum() / (temperature * temperature)  # ()
    # in the forward pass this was: cosines = q̂ · k̂ᵀ
    dunit_queries = dcosines @ unit_keys  # (B, T, D)
    dunit_keys = dcosines.swapaxes(-1, -2) @ unit_queries  # (B, S, D)
    # in the forward pass this was: q̂ = q / n_q, k̂ = k / n_k
    dqueries = normalize_backward(dunit_queries, unit_queries, query_norms)  # (B, T, D)
    dkeys = normalize_backward(dunit_keys, unit_keys, key_norms)  # (B, S, D)
    return dqueries, dkeys, dtemperature


def cosine_attention_forward(queries, keys, values, temperature, mask=None):
    """queries (B, T, D), keys (B, S, D), values (B, S, Dv), temperature () > 0,
    mask None or bool ~(B, T, S) -> out (B, T, Dv), cache."""
    scores, score_cache = cosine_score_forward(queries, keys, temperature)  # (B, T, S)
    out, average_cache = softmax_average_forward(scores, values, mask)  # (B, T, Dv)
    return out, (score_cache, average_cache)


def cosine_attention_backward(dout, cache):
    """dout (B, T, Dv) -> dqueries (B, T, D), dkeys (B, S, D), dvalues (B, S, Dv), dtemperature ()."""
    score_cache, average_cache = cache
    dscores, dvalues = softmax_average_backward(dout, average_cache)  # (B, T, S), (B, S, Dv)
    dqueries, dkeys, dtemperature = cosine_score_backward(dscores, score_cache)
    return dqueries, dkeys, dvalues, dtemperature


# ---------------------------------------------------------------------------------------
# Demo: retrieval among keys of very different lengths.


def retrieval_batch(batch_size, n_keys, width, value_width, noise, rng):
    """S keys with random directions and lengths spread over 0.1 … 10; S queries, each a
    noisy copy (also of random length) of one key's direction; the values to retrieve.

    Returns queries (B, T, D), keys (B, S, D), values (B, S, Dv), answer (B, T) key index.
    """
    directions = rng.standard_normal((batch_size, n_keys, width))  # (B, S, D)
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    key_lengths = np.exp(rng.uniform(math.log(0.1), math.log(10.0), (batch_size, n_keys, 1)))  # (B, S, 1)
    keys = directions * key_lengths  # (B, S, D)
    answer = np.stack([rng.permutation(n_keys) for _ in range(batch_size)])  # (B, T=S)
    target_directions = np.take_along_axis(directions, answer[..., None], axis=1)  # (B, T, D)
    jitter = noise / math.sqrt(width) * rng.standard_normal(target_directions.shape)  # (B, T, D)
    query_lengths = np.exp(rng.uniform(math.log(0.1), math.log(10.0), (batch_size, n_keys, 1)))  # (B, T, 1)
    queries = (target_directions + jitter) * query_lengths  # (B, T, D)
    values = rng.standard_normal((batch_size, n_keys, value_width))  # (B, S, Dv)
    return queries, keys, values, answer


def retrieval_error(out, values, answer):
    """Mean squared distance between the retrieved and the wanted value, and its gradient."""
    wanted = np.take_along_axis(values, answer[..., None], axis=1)  # (B, T, Dv)
    residual = out - wanted  # (B, T, Dv)
    count = answer.size
    loss = float((residual * residual).sum() / count)
    return loss, 2.0 * residual / count


def accuracy(weights, answer):
    """How often the largest weight is on the wanted key."""
    return float((weights.argmax(axis=-1) == answer).mean())


def learn_temperature(args, batch):
    """Adam on log τ for args.steps steps, a fresh batch each -> the losses and the learned τ.

    τ must stay positive and its good values span decades, so learn log τ:
    ∂L/∂log τ = τ · ∂L/∂τ
    """
    params = {"log_temperature": np.array(math.log(args.init_temperature))}
    optimizer = Adam(params, beta1=0.9, beta2=0.99, eps=1e-8)
    history = []
    for step in range(args.steps + 1):
        queries, keys, values, answer = batch(args.batch)
        temperature = float(np.exp(params["log_temperature"]))
        out, cache = cosine_attention_forward(queries, keys, values, temperature)  # (B, T, Dv)
        loss, dout = retrieval_error(out, values, answer)
        history.append(loss)
        if step % max(1, args.steps // 8) == 0 or step == args.steps:
            hits = accuracy(attention_weights(cache[1]), answer)
            print(f"  step {step:4d}   τ = {temperature:6.4f}   loss {loss:.4f}   right key on top {hits:6.1%}")
        if step < args.steps:
            *_, dtemperature = cosine_attention_backward(dout, cache)
            optimizer.step(params, {"log_temperature": dtemperature * temperature}, args.lr)
    return history, float(np.exp(params["log_temperature"]))


def compare(queries, keys, values, answer, start, learned):
    """(loss, accuracy) of cosine attention at τ = start and τ = learned, and of the scaled dot product."""
    contenders = {
        f"cosine, τ = {start:g} (start)": cosine_attention(queries, keys, values, start),
        f"cosine, τ = {learned:.4f} (learned)": cosine_attention(queries, keys, values, learned),
        "scaled dot product (no parameter)": scaled_dot_attention(queries, keys, values),
    }
    scores = {}
    for label, (out, weights) in contenders.items():
        scores[label] = (retrieval_error(out, values, answer)[0], accuracy(weights, answer))
        print(f"  {label:36s} loss {scores[label][0]:.4f}   right key on top {scores[label][1]:6.1%}")
    return list(scores.values())


def show_confident_mistake(queries, keys, values, answer, learned):
    """Print the query on which the dot product is most sure of a wrong key (a long one)."""
    cosine_weights = cosine_attention(queries, keys, values, learned)[1]  # (B, T, S)
    dot_weights = scaled_dot_attention(queries, keys, values)[1]  # (B, T, S)
    wrong_confidence = np.where(dot_weights.argmax(axis=-1) != answer, dot_weights.max(axis=-1), 0)  # (B, T)
    b, t = np.unravel_index(np.argmax(wrong_confidence), wrong_confidence.shape)
    cosine_weights, dot_weights = cosine_weights[b, t], dot_weights[b, t]  # (S,), (S,)
    print("\nthe query the dot product gets most confidently wrong (the wanted key is marked <-):")
    print("  key length   cosine α   dot α")
    for s in range(keys.shape[1]):
        mark = "  <-" if s == answer[b, t] else ""
        length = np.linalg.norm(keys[b, s])
        print(f"  {length:10.2f}   {cosine_weights[s]:8.3f}   {dot_weights[s]:5.3f}{mark}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--keys", type=int, default=8, help="S, keys per example")
    parser.add_argument("--width", type=int, default=16, help="D, query and key width")
    parser.add_argument("--noise", type=float, default=1.0, help="how far a query strays from its key")
    parser.add_argument("--init-temperature", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=0.05, help="Adam step on log τ")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)

    def batch(size):
        return retrieval_batch(size, args.keys, args.width, 4, args.noise, rng)

    print(f"retrieve the value of the key each query points to; S = {args.keys} keys of lengths 0.1 … 10")
    print("learning the temperature τ of cosine attention with the hand-written backward:")
    history, learned = learn_temperature(args, batch)
    queries, keys, values, answer = batch(1000)
    print("\non 1000 fresh examples:")
    fresh = compare(queries, keys, values, answer, args.init_temperature, learned)
    show_confident_mistake(queries, keys, values, answer, learned)
    # (start, learned, dot) as (loss, accuracy), for the tests
    return {"losses": history, "temperature": learned, "fresh": fresh}


def cosine_attention(queries, keys, values, temperature):
    """Output (B, T, Dv) and weights (B, T, S) of cosine attention, for the comparison."""
    out, cache = cosine_attention_forward(queries, keys, values, temperature)
    return out, attention_weights(cache[1])


def scaled_dot_attention(queries, keys, values):
    """Output (B, T, Dv) and weights (B, T, S) of the Transformer's softmax(q·kᵀ/√D)·v."""
    scores = queries @ keys.swapaxes(-1, -2) / math.sqrt(queries.shape[-1])  # (B, T, S)
    out, cache = softmax_average_forward(scores, values)
    return out, attention_weights(cache)


if __name__ == "__main__":
    main()
