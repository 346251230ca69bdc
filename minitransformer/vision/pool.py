"""Average and max pooling over KH × KW windows, and adaptive (pyramid) average pooling.

Sizes: B batch, C channels, H × W input, Ho × Wo output, N = H·W positions, S pooled cells.

Windows are placed as in a convolution (conv.py: stride s, padding p, dilation 1):

    avg:  y[b, c, i, j] = (1 / (KH·KW)) · Σ_{p, q} x̃[b, c, i·sh + p, j·sw + q]     x̃ padded with 0
    max:  y[b, c, i, j] = max_{p, q} x̃[b, c, i·sh + p, j·sw + q]                    x̃ padded with −∞

The average counts the padding in its divisor (PyTorch's count_include_pad=True).

Backward:
    avg:  every pixel of a window receives dy / (KH·KW)
    max:  the whole dy goes to the window's argmax, the one element that made the output.
          Ties (two equal maxima in one window) have no derivative; like PyTorch, the
          gradient goes to the first maximum in row-major order. A pixel that is the
          maximum of several overlapping windows collects all their gradients.

Adaptive average pooling to an s × s grid (PSPNet, and the key sampling of ANLNet) splits
the rows into bins [⌊i·H/s⌋, ⌈(i+1)·H/s⌉) and the columns alike, and averages each cell.
It is linear, so it is written as one matrix P (S, N) with rows that sum to 1:

    pooled = P · x_flat           ∂L/∂x_flat = Pᵀ · ∂L/∂pooled
"""

from typing import NamedTuple

import numpy as np

from .conv import ConvGeometry, _pair, output_size, receptive_fields


def pool_geometry(x_shape, kernel, stride, padding):
    """Check a pooling's arguments; return (kernel pair, ConvGeometry, (Ho, Wo))."""
    if len(x_shape) != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got {x_shape}")
    kernel = _pair(kernel, "kernel")
    stride = _pair(kernel if stride is None else stride, "stride")
    padding = _pair(padding, "padding")
    if min(kernel) < 1 or min(stride) < 1:
        raise ValueError(f"kernel and stride must be >= 1, got kernel {kernel}, stride {stride}")
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"padding {padding} must be at most half the kernel {kernel}")
    out_h = output_size(x_shape[2], kernel[0], stride[0], padding[0], 1)
    out_w = output_size(x_shape[3], kernel[1], stride[1], padding[1], 1)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"the kernel {kernel} does not fit the padded input {x_shape[2:]}")
    return kernel, ConvGeometry(stride, padding, (1, 1), 1), (out_h, out_w)


def _windows(x, kernel, geometry, out_hw, fill):
    """x (B, C, H, W) -> a view (B, C, Ho, Wo, KH·KW) of every window of x padded with ``fill``."""
    (ph, pw) = geometry.padding
    x_padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)  # (B, C, H+2ph, W+2pw)
    fields = receptive_fields(x_padded, kernel, out_hw, geometry)  # (B, C, KH, KW, Ho, Wo)
    return fields.transpose(0, 1, 4, 5, 2, 3).reshape(*x.shape[:2], *out_hw, kernel[0] * kernel[1])


def _scatter_windows(dwindows, x_shape, kernel, geometry, out_hw):
    """dwindows (B, C, Ho, Wo, KH·KW) -> dx (B, C, H, W): each window's gradient added back
    onto the pixels it covered (the adjoint of _windows)."""
    batch, channels, height, width = x_shape
    (sh, sw), (ph, pw) = geometry.stride, geometry.padding
    out_h, out_w = out_hw
    dwindows = dwindows.reshape(batch, channels, out_h, out_w, kernel[0], kernel[1])
    dx_padded = np.zeros((batch, channels, height + 2 * ph, width + 2 * pw), dtype=dwindows.dtype)
    for p in range(kernel[0]):
        for q in range(kernel[1]):
            dx_padded[:, :, p : p + sh * (out_h - 1) + 1 : sh, q : q + sw * (out_w - 1) + 1 : sw] += dwindows[..., p, q]
    return dx_padded[:, :, ph : ph + height, pw : pw + width]  # (B, C, H, W)


class PoolCache(NamedTuple):
    x_shape: tuple
    kernel: tuple
    geometry: ConvGeometry
    out_hw: tuple
    argmax: object  # (B, C, Ho, Wo) int for max pooling, None for average pooling


def avgpool2d_forward(x, kernel, stride=None, padding=0):
    """x (B, C, H, W) -> y (B, C, Ho, Wo), cache. ``stride`` defaults to the kernel."""
    kernel, geometry, out_hw = pool_geometry(x.shape, kernel, stride, padding)
    windows = _windows(x, kernel, geometry, out_hw, 0.0)  # (B, C, Ho, Wo, KH·KW)
    y = windows.mean(axis=-1)  # (B, C, Ho, Wo)
    return y, PoolCache(x.shape, kernel, geometry, out_hw, None)


def avgpool2d_backward(dy, cache):
    """dy (B, C, Ho, Wo) -> dx (B, C, H, W)."""
    x_shape, kernel, geometry, out_hw, _ = cache
    area = kernel[0] * kernel[1]
    # in the forward pass this was: y = mean of the window, so each pixel gets 1/area of dy
    dwindows = np.broadcast_to((dy / area)[..., None], (*dy.shape, area))  # (B, C, Ho, Wo, KH·KW)
    return _scatter_windows(dwindows, x_shape, kernel, geometry, out_hw)


def maxpool2d_forward(x, kernel, stride=None, padding=0):
    """x (B, C, H, W) -> y (B, C, Ho, Wo), cache. ``stride`` defaults to the kernel."""
    kernel, geometry, out_hw = pool_geometry(x.shape, kernel, stride, padding)
    windows = _windows(x, kernel, geometry, out_hw, -np.inf)  # (B, C, Ho, Wo, KH·KW)
    argmax = windows.argmax(axis=-1)  # (B, C, Ho, Wo): np.argmax keeps the first of tied maxima
    y = np.take_along_axis(windows, argmax[..., None], axis=-1)[..., 0]  # (B, C, Ho, Wo)
    return y, PoolCache(x.shape, kernel, geometry, out_hw, argmax)


def maxpool2d_backward(dy, cache):
    """dy (B, C, Ho, Wo) -> dx (B, C, H, W): each dy goes to its window's argmax."""
    x_shape, kernel, geometry, out_hw, argmax = cache
    area = kernel[0] * kernel[1]
    # in the forward pass this was: y = windows[argmax]; only that element moved y
    dwindows = np.zeros((*dy.shape, area), dtype=dy.dtype)  # (B, C, Ho, Wo, KH·KW)
    np.put_along_axis(dwindows, argmax[..., None], dy[..., None], axis=-1)
    return _scatter_windows(dwindows, x_shape, kernel, geometry, out_hw)


def adaptive_pool_matrix(height, width, size):
    """P (s·s, H·W): row (i, j) averages the cell of bin i of the rows and bin j of the columns."""
    if int(size) != size or size < 1 or size > min(height, width):
        raise ValueError(f"the pooled size must be an int in [1, min(H, W) = {min(height, width)}], got {size!r}")

    def bins(length):
        matrix = np.zeros((size, length))  # (s, length)
        for i in range(size):
            start, end = (i * length) // size, -((-(i + 1) * length) // size)  # floor, ceil
            matrix[i, start:end] = 1.0 / (end - start)
        return matrix

    rows, columns = bins(height), bins(width)  # (s, H), (s, W)
    return np.einsum("ih,jw->ijhw", rows, columns).reshape(size * size, height * width)  # (S, N)


def pyramid_pool_matrix(height, width, sizes):
    """The adaptive pooling matrices of several grid sizes stacked: (Σ s², H·W)."""
    if len(sizes) == 0:
        raise ValueError("sizes must name at least one pooled grid size")
    return np.concatenate([adaptive_pool_matrix(height, width, size) for size in sizes], axis=0)
