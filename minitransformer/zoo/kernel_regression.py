"""Nadaraya–Watson kernel regression: attention with a Gaussian kernel and one learnable width.

To guess the weight y of a person from their waist x, given people (x_s, y_s) we have
measured, average their weights, trusting most the people whose waist is closest to x:

    f(x) = Σ_s K(x − x_s) · y_s / Σ_s' K(x − x_s')          (Nadaraya 1964, Watson 1964)

With the Gaussian kernel K(u) = exp(−‖u‖² / 2h²) the normalized weights are a softmax:

    α(x, x_s) = softmax_s( −‖x − x_s‖² / 2h² )              f(x) = Σ_s α(x, x_s) · y_s

This is attention: x is the query, the x_s are the keys, the y_s the values, and the score
is −‖q − k‖² / 2h². The bandwidth h decides how far "close" reaches:
    h → 0   all weight on the nearest key: nearest-neighbour regression, which copies the
            noise of one sample (high variance);
    h → ∞   every weight 1/S: the global mean, which ignores the query (high bias).
In between lies the best h for the data, and since f is differentiable in h we can find it
by gradient descent, with the hand-written backward below. Fitting h on the training set
itself would pick h → 0 (each point would predict itself perfectly), so the demo masks the
diagonal: every training point is predicted from the others ("leave one out").

Backward. With the softmax and average handled in zoo/__init__.py (de = ∂L/∂e), and
e = −d / 2h², d = ‖q − k‖² = Σ_i (q_i − k_i)²:

    ∂L/∂d = −de / 2h²                  ∂L/∂h = Σ de · d / h³
    ∂L/∂q_t = Σ_s 2(q_t − k_s) ∂L/∂d[t, s]      ∂L/∂k_s = −Σ_t 2(q_t − k_s) ∂L/∂d[t, s]

Run the demo (synthetic data, fixed seed; about a second):

    python -m minitransformer.zoo.kernel_regression --seed 0

Size letters: B batch, T queries, S keys, D input width, Dv value width.
"""

import argparse
import math

import numpy as np

from ..arrays import array_module
from . import attention_weights, softmax_average_backward, softmax_average_forward


def kernel_regression_forward(queries, keys, values, bandwidth, mask=None):
    """queries (B, T, D), keys (B, S, D), values (B, S, Dv), bandwidth () > 0,
    mask None or bool ~(B, T, S) -> out (B, T, Dv), cache."""
    xp = array_module(queries)
    bandwidth = xp.asarray(bandwidth, dtype=queries.dtype)  # ()
    # pass 1: squared distances between every query and every key
    diff = queries[:, :, None, :] - keys[:, None, :, :]  # (B, T, S, D)
    sq_dist = (diff * diff).sum(axis=-1)  # (B, T, S)
    # pass 2: the log of the Gaussian kernel; its constant factor cancels in the softmax
    scores = -sq_dist / (2 * bandwidth * bandwidth)  # (B, T, S)
    # pass 3: softmax over keys and the weighted average of the values
    out, average_cache = softmax_average_forward(scores, values, mask)  # (B, T, Dv)
    cache = (diff, sq_dist, bandwidth, average_cache)
    return out, cache


def kernel_regression_backward(dout, cache):
    """dout (B, T, Dv) -> dqueries (B, T, D), dkeys (B, S, D), dvalues (B, S, Dv), dbandwidth ()."""
    diff, sq_dist, bandwidth, average_cache = cache
    # pass 3
    dscores, dvalues = softmax_average_backward(dout, average_cache)  # (B, T, S), (B, S, Dv)
    # in the forward pass this was: scores = −sq_dist / 2h²
    dsq_dist = -dscores / (2 * bandwidth * bandwidth)  # (B, T, S)
    dbandwidth = (dscores * sq_dist).sum() / bandwidth**3  # ()
    # in the forward pass this was: sq_dist = Σ diff², diff = q − k
    ddiff = 2 * diff * dsq_dist[..., None]  # (B, T, S, D)
    dqueries = ddiff.sum(axis=2)  # (B, T, D)
    dkeys = -ddiff.sum(axis=1)  # (B, S, D)
    return dqueries, dkeys, dvalues, dbandwidth


# ---------------------------------------------------------------------------------------
# Demo: estimate a person's weight from their waist, and learn the bandwidth.


def synthetic_waist_weight(count, rng, noise_kg=5.0):
    """A made-up population (NOT real measurements): waist in cm, weight in kg.

    The weight follows a smooth curve of the waist plus Gaussian noise of ``noise_kg``, so
    the best any estimator can do on fresh people is a root-mean-square error of noise_kg.
    Returns waist (count,), weight (count,), and the noise-free curve as a function.
    """

    def true_weight(waist):
        return 50.0 + 0.5 * (waist - 60.0) + 0.012 * (waist - 60.0) ** 2

    waist = rng.uniform(60.0, 120.0, size=count)  # (count,)
    weight = true_weight(waist) + noise_kg * rng.standard_normal(count)  # (count,)
    return waist, weight, true_weight


def predict(query_waist, train_waist, train_weight, bandwidth, mask=None):
    """Nadaraya–Watson predictions (T,) for query waists (T,) from S training people."""
    out, cache = kernel_regression_forward(
        query_waist[None, :, None], train_waist[None, :, None], train_weight[None, :, None], bandwidth, mask
    )  # (1, T, 1)
    return out[0, :, 0], cache


def rmse(prediction, target):
    return float(np.sqrt(np.mean((prediction - target) ** 2)))


def learn_bandwidth(train_waist, train_weight, init_bandwidth, steps, lr):
    """Gradient descent on log h of the leave-one-out squared error -> [(step, h, loss)].

    Leave one out: person s must not see their own weight, or h → 0 would look perfect.
    h must stay positive and its good values span decades, so descend on log h:
    ∂L/∂log h = h · ∂L/∂h
    """
    count = len(train_waist)
    leave_one_out = ~np.eye(count, dtype=bool)[None]  # (1, S, S)
    log_bandwidth = math.log(init_bandwidth)
    history = []
    for step in range(steps + 1):
        bandwidth = math.exp(log_bandwidth)
        prediction, cache = predict(train_waist, train_waist, train_weight, bandwidth, leave_one_out)
        residual = prediction - train_weight  # (S,)
        loss = float(np.mean(residual**2))
        history.append((step, bandwidth, loss))
        if step == steps:
            break
        dprediction = (2.0 / count) * residual  # (S,)
        *_, dbandwidth = kernel_regression_backward(dprediction[None, :, None], cache)
        # the loss is in kg², roughly 25 to 400 here; dividing by it makes the step size
        # a fraction of log h, whatever the units (this is gradient descent on log L)
        log_bandwidth -= lr * float(dbandwidth) * bandwidth / loss
    return history


def show_neighbours(train_waist, train_weight, true_weight, bandwidth, waist=90.0):
    """Print the prediction for one waist and the five people it listened to most."""
    prediction, cache = predict(np.array([waist]), train_waist, train_weight, bandwidth)
    weights = attention_weights(cache[-1])[0, 0]  # (S,)
    nearest = np.argsort(-weights)[:5]
    print(f"\nwaist {waist:g} cm -> predicted {prediction[0]:.1f} kg (curve: {true_weight(waist):.1f} kg);")
    print("the people it listened to most (the attention weights):")
    for index in nearest:
        print(
            f"  waist {train_waist[index]:6.1f} cm  weight {train_weight[index]:6.1f} kg  "
            f"attention α = {weights[index]:.3f}"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=150, help="people to learn from")
    parser.add_argument("--test", type=int, default=300, help="fresh people to measure the error on")
    parser.add_argument("--init-bandwidth", type=float, default=30.0, help="starting h, in cm")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.4, help="step size on log h")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    train_waist, train_weight, true_weight = synthetic_waist_weight(args.train, rng)
    test_waist, test_weight, _ = synthetic_waist_weight(args.test, rng)
    print(f"synthetic data (seed {args.seed}): {args.train} people to learn from, {args.test} to test on;")
    print("weight = smooth curve of the waist + N(0, 5 kg) noise, so 5.0 kg is the best possible error\n")

    history = learn_bandwidth(train_waist, train_weight, args.init_bandwidth, args.steps, args.lr)
    print("gradient descent on the bandwidth (leave-one-out squared error on the training people):")
    for step, bandwidth, loss in history:
        if step % max(1, args.steps // 10) == 0 or step == args.steps:
            print(f"  step {step:4d}   h = {bandwidth:7.3f} cm   train RMSE = {math.sqrt(loss):6.2f} kg")
    learned = history[-1][1]

    print("\ntest RMSE on fresh people, by bandwidth:")
    rows = [
        ("h → 0    (nearest neighbour)", 1e-3),
        (f"h = {args.init_bandwidth:<6g} (start)", args.init_bandwidth),
        (f"h = {learned:<6.3f} (learned)", learned),
        ("h → ∞    (global mean)", 1e6),
    ]
    for label, bandwidth in rows:
        prediction, _ = predict(test_waist, train_waist, train_weight, bandwidth)
        print(f"  {label:32s} {rmse(prediction, test_weight):6.2f} kg")
    show_neighbours(train_waist, train_weight, true_weight, learned)
    return history


if __name__ == "__main__":
    main()
