"""Integrated gradients (Sundararajan, Taly & Yan, 2017) on the source embeddings.

Gradient × input (saliency.py) is one Taylor term at the input; integrated gradients add up
the gradient along the straight path from a baseline x' to the input x:

    IG_t[s] = Σ_D (e_s − e'_s) ⊙ ∫₀¹ ∂f_t/∂e_s (e' + α·(e − e')) dα       f_t = log p(y_t | y_<t, x)

Baseline: every source embedding zero, e' = 0 (the positional encodings stay, so the
baseline is "a sentence of this length with no words"; the target prefix is unchanged).
The integral is the midpoint rule with m steps, α_k = (k + ½)/m, k = 0 … m−1 (default
m = 64). Completeness, the property that makes IG an attribution, is

    Σ_s IG_t[s] = f_t(x) − f_t(x')

exactly for the integral and up to the quadrature error for the sum; `completeness_gap`
measures it and tests/test_interpret.py holds it within 1 % at m = 512. The error shrinks
slowly with m because the path crosses ReLU kinks and sharp softmax turns, where the
integrand jumps; bench/bench_interpret.py reports the gap at the m it uses.

All T·(m + 2) forward passes (every step, every α, and the two ends for f) run as one batch.

    from minitransformer.interpret.integrated_gradients import integrated_gradients
    ig, f_input, f_baseline = integrated_gradients(model, src_ids, output_ids, bos_id, steps=64)
"""

import numpy as np

from ..arrays import to_numpy
from .steps import decoder_input, forward_embedded, source_embedding, step_log_probs_backward

DEFAULT_STEPS = 64


def integrated_gradients(model, src_ids, output_ids, bos_id, steps=DEFAULT_STEPS):
    """src_ids (S,), output_ids (T,) -> IG (T, S) signed, f(x) (T,), f(x') (T,)."""
    xp = model.xp
    src_ids = np.asarray(src_ids, dtype=np.int64)  # (S,)
    output_ids = np.asarray(output_ids, dtype=np.int64)  # (T,)
    n_steps, src_len = len(output_ids), len(src_ids)
    embedded = source_embedding(model, src_ids)  # (S, D): e, and e' = 0
    alphas = np.concatenate([(np.arange(steps) + 0.5) / steps, [1.0, 0.0]])  # (m + 2,)
    # copy (t, k) explains step t at α_k: N = T·(m + 2) copies
    copy_step = np.repeat(np.arange(n_steps), len(alphas))  # (N,)
    copy_alpha = np.tile(alphas, n_steps)  # (N,)
    src = np.tile(src_ids, (len(copy_step), 1))  # (N, S)
    tgt_in = np.tile(decoder_input(output_ids, bos_id), (len(copy_step), 1))  # (N, T)
    path = copy_alpha[:, None, None] * embedded[None]  # (N, S, D): e' + α·(e − e')
    logits, cache = forward_embedded(model, src, path, xp.asarray(tgt_in))  # (N, T, V)
    f, dlogits = step_log_probs_backward(model, logits, output_ids, np.arange(len(copy_step)), copy_step)
    model.backward(dlogits, cache)
    gradient = to_numpy(model.input_grads["src"]).astype(np.float64)  # (N, S, D)
    gradient = gradient.reshape(n_steps, len(alphas), src_len, -1)  # (T, m + 2, S, D)
    f = f.reshape(n_steps, len(alphas))  # (T, m + 2)
    average = gradient[:, :steps].mean(axis=1)  # (T, S, D): the midpoint rule
    ig = (average * embedded[None]).sum(axis=2)  # (T, S)
    return ig, f[:, steps], f[:, steps + 1]


def completeness_gap(ig, f_input, f_baseline):
    """‖Σ_s IG − (f(x) − f(x'))‖ / ‖f(x) − f(x')‖ over the sentence's T steps: 0 for the
    exact integral. (Step by step the ratio explodes where f barely moves, |Δf| ~ 1e-3,
    though the absolute error is as small as elsewhere.)"""
    difference = f_input - f_baseline  # (T,)
    return float(np.linalg.norm(ig.sum(axis=1) - difference) / max(np.linalg.norm(difference), 1e-12))
