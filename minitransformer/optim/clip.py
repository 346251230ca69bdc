"""Gradient clipping by global norm (Pascanu et al., 2013).

    n = √(Σ_tensors ‖g‖²);   if n > max_norm:  g ← g · max_norm / n

Every gradient is scaled by the same factor, so the step keeps its direction and only its
length is bounded: one bad batch cannot throw the weights far.
"""

import math

from ..arrays import array_module


def clip_grad_norm(grads, max_norm):
    """Scale ``grads`` in place so their global norm is at most ``max_norm``; returns the
    norm before clipping (inf or nan when a gradient is not finite, left unscaled)."""
    xp = array_module(*grads.values())
    # the sum of squares stays on the device (a 0-d float64 array), so a GPU is waited for
    # once per step, at float() below, rather than once per tensor
    total = xp.zeros((), dtype=xp.float64)
    for grad in grads.values():
        flat = grad.reshape(-1)
        total += flat @ flat
    norm = math.sqrt(float(total))
    if math.isfinite(norm) and norm > max_norm:
        scale = max_norm / norm
        for grad in grads.values():
            grad *= scale
    return norm
