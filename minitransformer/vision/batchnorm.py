"""Batch normalization (Ioffe & Szegedy, 2015), in its train and eval modes.

Sizes: B batch, C channels, and for feature maps H × W; x is (B, C) or (B, C, H, W).
Statistics are per channel, over the M = B·H·W values that share it.

Training mode normalizes with the batch's own statistics and updates running estimates:

    μ = mean(x),  σ² = mean((x − μ)²),  x̂ = (x − μ) / √(σ² + ε),  y = γ ⊙ x̂ + β
    running_mean ← (1 − m)·running_mean + m·μ
    running_var  ← (1 − m)·running_var  + m·σ²·M/(M − 1)      (unbiased, as PyTorch does)

Eval mode uses the running estimates, so an image's output no longer depends on the rest
of its batch: y = γ ⊙ (x − running_mean) / √(running_var + ε) + β.

Backward. In eval mode the map is affine per channel: ∂L/∂x = dy ⊙ γ / √(running_var + ε).
In training mode μ and σ² depend on every x of the channel, and with dx̂ = dy ⊙ γ

    ∂L/∂x = (1 / √(σ² + ε)) · (dx̂ − mean(dx̂) − x̂ ⊙ mean(dx̂ ⊙ x̂))

(the LayerNorm backward of docs/07-backward.md, with the means over the batch and the
positions instead of over the features).  ∂L/∂γ = Σ dy ⊙ x̂,  ∂L/∂β = Σ dy.
"""

from typing import NamedTuple

import numpy as np


class BatchNormCache(NamedTuple):
    x_hat: np.ndarray  # (B, C, ...) the normalized input
    inv_std: np.ndarray  # (1, C, 1, ...) 1/√(σ² + ε) of the statistics used
    gamma: np.ndarray  # (C,)
    training: bool


def _stat_axes(x):
    if x.ndim not in (2, 4):
        raise ValueError(f"batch norm expects x of shape (B, C) or (B, C, H, W), got {x.shape}")
    return (0,) if x.ndim == 2 else (0, 2, 3)


def _per_channel(vector, ndim):
    """(C,) -> (1, C) or (1, C, 1, 1), to broadcast against x."""
    return vector.reshape(1, -1, *([1] * (ndim - 2)))


def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """x (B, C[, H, W]), gamma, beta, running_mean, running_var (C,) -> y (same as x), cache.

    In training mode ``running_mean`` and ``running_var`` are updated in place."""
    axes = _stat_axes(x)
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    if training:
        count = x.size // x.shape[1]
        if count < 2:
            raise ValueError("batch norm in training mode needs more than one value per channel")
        mean = x.mean(axis=axes, keepdims=True)  # (1, C[, 1, 1])
        centered = x - mean  # (B, C[, H, W])
        variance = (centered * centered).mean(axis=axes, keepdims=True)  # (1, C[, 1, 1])
        running_mean *= 1.0 - momentum
        running_mean += momentum * mean.reshape(-1)
        running_var *= 1.0 - momentum
        running_var += momentum * variance.reshape(-1) * (count / (count - 1))
    else:
        centered = x - _per_channel(running_mean, x.ndim)  # (B, C[, H, W])
        variance = _per_channel(running_var, x.ndim)  # (1, C[, 1, 1])
    inv_std = 1.0 / np.sqrt(variance + eps)  # (1, C[, 1, 1])
    x_hat = centered * inv_std  # (B, C[, H, W])
    y = x_hat * _per_channel(gamma, x.ndim) + _per_channel(beta, x.ndim)  # (B, C[, H, W])
    return y.astype(x.dtype, copy=False), BatchNormCache(x_hat, inv_std, gamma, training)


def batchnorm_backward(dy, cache):
    """dy (B, C[, H, W]) -> dx (same), dgamma (C,), dbeta (C,)."""
    x_hat, inv_std, gamma, training = cache
    axes = _stat_axes(dy)
    dgamma = (dy * x_hat).sum(axis=axes)  # (C,)
    dbeta = dy.sum(axis=axes)  # (C,)
    dx_hat = dy * _per_channel(gamma, dy.ndim)  # (B, C[, H, W])
    if not training:
        # in the forward pass this was: x̂ = (x − running_mean)·inv_std, with constants
        return dx_hat * inv_std, dgamma, dbeta
    # in the forward pass μ and σ² came from this batch: two more terms, one per statistic
    mean_dx_hat = dx_hat.mean(axis=axes, keepdims=True)  # (1, C[, 1, 1])
    mean_dx_hat_x_hat = (dx_hat * x_hat).mean(axis=axes, keepdims=True)  # (1, C[, 1, 1])
    dx = inv_std * (dx_hat - mean_dx_hat - x_hat * mean_dx_hat_x_hat)  # (B, C[, H, W])
    return dx, dgamma, dbeta


def batchnorm_init(channels, dtype=np.float32):
    """γ = 1, β = 0, running mean 0, running variance 1 (PyTorch's defaults)."""
    return {
        "gamma": np.ones(channels, dtype),
        "beta": np.zeros(channels, dtype),
        "running_mean": np.zeros(channels, dtype),
        "running_var": np.ones(channels, dtype),
    }
