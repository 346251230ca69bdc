"""Gradient-weighted attention: the weights a step's decision is sensitive to.

Chefer, Gur & Wolf (2021) weigh each attention map by its gradient and keep the positive
part, averaged over heads:

    Ā^(l)[t, s] = E_h [ (∂f_t/∂A^(l,h)[t, s] ⊙ A^(l,h)[t, s])⁺ ]          f_t = log p(y_t | y_<t, x)

The product is the first-order change of f_t if A[t, s] were switched off (A·∂f/∂A is the
Taylor term from 0 to A), so a weight counts only if it is large *and* the decision
depends on it; the ⁺ keeps the weights that argue for y_t. Here it is taken on the
cross-attention, per layer, and averaged over the decoder's layers; ∂f_t/∂A comes from the
head gates' backward (gates.py). Rows are normalized to sum to 1 (a zero row stays 0).

    from minitransformer.interpret.grad_attention import gradient_weighted_attention
"""

import numpy as np


def normalize_rows(matrix):
    """(…, S) -> the same with each row divided by its sum; zero rows stay zero."""
    total = matrix.sum(axis=-1, keepdims=True)
    return matrix / np.where(total > 0, total, 1.0)


def gradient_weighted_attention(steps):
    """steps: explain_steps' result -> {"layer": (L, T, S), "mean": (T, S)}."""
    per_layer = np.stack([
        np.maximum(dcross * cross, 0.0).mean(axis=1)  # (T, S): E_h (∂f/∂A ⊙ A)⁺
        for cross, dcross in zip(steps.cross, steps.dcross)
    ])  # (L, T, S)
    return {"layer": normalize_rows(per_layer), "mean": normalize_rows(per_layer.mean(axis=0))}
