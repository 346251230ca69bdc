"""Global pooling: one number per channel (or per position) from a whole axis.

Sizes: B batch, C channels, H × W the map.

    global average:  z[b, c] = (1 / (H·W)) Σ_{i,j} x[b, c, i, j]      ∂L/∂x = dz / (H·W), everywhere
    global max:      z[b, c] = max_{i,j} x[b, c, i, j]                 ∂L/∂x = dz at the argmax, 0 elsewhere

SE-Net squeezes with the global average; CBAM uses both. CBAM's spatial branch pools the
other way, across channels at every position: mean_c and max_c give two (B, 1, H, W) maps.
Both directions are the same two reductions over different axes, so the functions take the
axis. As with max pooling (pool.py), tied maxima send the gradient to the first of them.
"""

from typing import NamedTuple

import numpy as np


class ReduceCache(NamedTuple):
    shape: tuple  # the input's shape
    axes: tuple  # the axes reduced
    argmax: object  # for max: the index of the maximum along the flattened reduced axes


def _move_axes_last(x, axes):
    """x -> (view with the ``axes`` flattened into one last axis, the kept axes' order)."""
    kept = [axis for axis in range(x.ndim) if axis not in axes]
    moved = x.transpose(*kept, *axes)
    return moved.reshape(*moved.shape[: len(kept)], -1), kept


def _normalize_axes(x, axes):
    axes = (axes,) if np.isscalar(axes) else tuple(axes)
    axes = tuple(sorted(axis % x.ndim for axis in axes))
    if len(set(axes)) != len(axes) or not axes:
        raise ValueError(f"axes must name distinct axes of a rank-{x.ndim} array, got {axes}")
    return axes


def mean_pool_forward(x, axes):
    """x (any shape) -> the mean over ``axes`` (kept as size-1 axes), cache."""
    axes = _normalize_axes(x, axes)
    return x.mean(axis=axes, keepdims=True), ReduceCache(x.shape, axes, None)


def mean_pool_backward(dy, cache):
    """dy (the reduced shape) -> dx (the input's shape)."""
    count = int(np.prod([cache.shape[axis] for axis in cache.axes]))
    return np.broadcast_to(dy / count, cache.shape).copy()


def max_pool_forward(x, axes):
    """x (any shape) -> the maximum over ``axes`` (kept as size-1 axes), cache."""
    axes = _normalize_axes(x, axes)
    flat, _ = _move_axes_last(x, axes)  # (kept..., R) with R the reduced size
    argmax = flat.argmax(axis=-1)  # (kept...)
    y = x.max(axis=axes, keepdims=True)
    return y, ReduceCache(x.shape, axes, argmax)


def max_pool_backward(dy, cache):
    """dy (the reduced shape) -> dx (the input's shape): dy goes to the argmax."""
    shape, axes, argmax = cache
    kept = [axis for axis in range(len(shape)) if axis not in axes]
    reduced = int(np.prod([shape[axis] for axis in axes]))
    dflat = np.zeros((*argmax.shape, reduced), dtype=dy.dtype)  # (kept..., R)
    np.put_along_axis(dflat, argmax[..., None], dy.reshape(*argmax.shape, 1), axis=-1)
    dmoved = dflat.reshape(*[shape[axis] for axis in kept], *[shape[axis] for axis in axes])
    return dmoved.transpose(np.argsort([*kept, *axes]))  # back to the input's axis order


def global_avg_pool_forward(x):
    """x (B, C, H, W) -> z (B, C), cache."""
    z, cache = mean_pool_forward(x, (2, 3))  # (B, C, 1, 1)
    return z[:, :, 0, 0], cache


def global_avg_pool_backward(dz, cache):
    """dz (B, C) -> dx (B, C, H, W)."""
    return mean_pool_backward(dz[:, :, None, None], cache)


def global_max_pool_forward(x):
    """x (B, C, H, W) -> z (B, C), cache."""
    z, cache = max_pool_forward(x, (2, 3))  # (B, C, 1, 1)
    return z[:, :, 0, 0], cache


def global_max_pool_backward(dz, cache):
    """dz (B, C) -> dx (B, C, H, W)."""
    return max_pool_backward(dz[:, :, None, None], cache)
