"""Layer normalization over the last axis (Ba, Kiros & Hinton, 2016).

    μ = mean(x),  σ² = mean((x − μ)²),  x̂ = (x − μ) / √(σ² + ε),  y = γ ⊙ x̂ + β

Backward. With dx̂ = dy ⊙ γ, and N = D the width normalized over,

    ∂L/∂x = (1 / √(σ² + ε)) · (dx̂ − mean(dx̂) − x̂ ⊙ mean(dx̂ ⊙ x̂))
    ∂L/∂γ = Σ dy ⊙ x̂,     ∂L/∂β = Σ dy

The two means are what μ and σ² contribute: every x moves the mean and the variance, and
through them every x̂ of the row. The derivation is in docs/07-backward.md.
"""

from typing import NamedTuple

from ..arrays import array_module


class LayerNormCache(NamedTuple):
    """What the backward needs, on every backend."""

    x_hat: object  # (..., D) the normalized input
    inv_std: object  # (..., 1) 1 / √(σ² + ε)
    gamma: object  # (D,)


def layernorm_forward(x, gamma, beta, eps=1e-5):
    """x (..., D), gamma (D,), beta (D,) -> y (..., D)."""
    xp = array_module(x)
    mean = x.mean(axis=-1, keepdims=True)  # (..., 1)
    centered = x - mean  # (..., D)
    variance = (centered * centered).mean(axis=-1, keepdims=True)  # (..., 1)
    inv_std = 1.0 / xp.sqrt(variance + eps)  # (..., 1)
    x_hat = centered * inv_std  # (..., D)
    y = x_hat * gamma + beta  # (..., D)
    return y, LayerNormCache(x_hat, inv_std, gamma)


def layernorm_backward(dy, cache):
    """dy (..., D) -> dx (..., D), dgamma (D,), dbeta (D,)."""
    x_hat, inv_std, gamma = cache
    d_model = x_hat.shape[-1]
    dx_hat = dy * gamma  # (..., D)
    mean_dx_hat = dx_hat.mean(axis=-1, keepdims=True)  # (..., 1)
    mean_dx_hat_x_hat = (dx_hat * x_hat).mean(axis=-1, keepdims=True)  # (..., 1)
    dx = inv_std * (dx_hat - mean_dx_hat - x_hat * mean_dx_hat_x_hat)  # (..., D)
    dgamma = (dy * x_hat).reshape(-1, d_model).sum(axis=0)  # (D,)
    dbeta = dy.reshape(-1, d_model).sum(axis=0)  # (D,)
    return dx, dgamma, dbeta
