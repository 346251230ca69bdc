"""2-D convolution through im2col, with stride, padding, dilation and groups.

Sizes: B batch, C input channels, F filters (output channels), G groups, Cg = C/G and
Fg = F/G the channels of one group, KH × KW the kernel, H × W the input, Ho × Wo the output,
K = Cg·KH·KW the length of one unrolled receptive field.

    y[b, f, i, j] = bias[f] + Σ_{c in group(f)} Σ_{p, q} w[f, c, p, q] · x̃[b, c, i·sh + p·dh, j·sw + q·dw]

where x̃ is x padded with zeros (ph rows top and bottom, pw columns left and right), and a
filter f of group g = f // Fg reads only the channels g·Cg … (g+1)·Cg − 1. The output size is

    Ho = ⌊(H + 2·ph − dh·(KH − 1) − 1) / sh⌋ + 1        (and Wo alike)

im2col turns the sum into one matrix product per group. Every receptive field of x̃ is
copied into a row of ``cols`` (G, B·Ho·Wo, K), the filters of a group form a (K, Fg) matrix,
and y_g = cols_g · w_gᵀ: the convolution becomes BLAS's matrix product, at the price of
copying every input pixel KH·KW times.

Backward, with dy = ∂L/∂y reshaped like the product, (G, B·Ho·Wo, Fg):

    ∂L/∂w_g = dy_gᵀ · cols_g           ∂L/∂bias = Σ_{b,i,j} dy
    ∂L/∂cols_g = dy_g · w_g            then col2im: each row of ∂L/∂cols is added back
                                        onto the pixels it was copied from

col2im is the adjoint of the copy: a pixel that sat in several receptive fields (stride
smaller than the kernel) collects the sum of their gradients.
"""

from typing import NamedTuple

import numpy as np


def _pair(value, name):
    """An int or a pair of ints -> a pair of ints, each >= 0 (ValueError naming ``name``)."""
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or any(int(v) != v or v < 0 for v in pair):
        raise ValueError(f"{name} must be a non-negative int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def output_size(size, kernel, stride, padding, dilation):
    """The output length along one axis: ⌊(size + 2·padding − dilation·(kernel − 1) − 1) / stride⌋ + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class ConvGeometry(NamedTuple):
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int


def conv_geometry(x_shape, w_shape, stride, padding, dilation, groups):
    """Check the arguments of a convolution; return its ConvGeometry and (Ho, Wo)."""
    stride, padding, dilation = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    if min(stride) < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if min(dilation) < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    if len(x_shape) != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got {x_shape}")
    if len(w_shape) != 4:
        raise ValueError(f"weight must have shape (F, C/groups, KH, KW), got {w_shape}")
    if int(groups) != groups or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    channels, n_filters = x_shape[1], w_shape[0]
    if channels % groups or n_filters % groups:
        raise ValueError(f"groups={groups} must divide the input channels ({channels}) and the filters ({n_filters})")
    if w_shape[1] != channels // groups:
        raise ValueError(f"weight has {w_shape[1]} input channels per filter; groups={groups} needs {channels // groups}")
    out_h = output_size(x_shape[2], w_shape[2], stride[0], padding[0], dilation[0])
    out_w = output_size(x_shape[3], w_shape[3], stride[1], padding[1], dilation[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"the kernel {w_shape[2:]} (dilation {dilation}) does not fit the padded input {x_shape[2:]}")
    return ConvGeometry(stride, padding, dilation, int(groups)), (out_h, out_w)


def receptive_fields(x_padded, kernel, out_hw, geometry):
    """A strided view (B, C, KH, KW, Ho, Wo) of every receptive field of x̃; nothing is copied."""
    (sh, sw), (dh, dw) = geometry.stride, geometry.dilation
    stride_b, stride_c, stride_h, stride_w = x_padded.strides
    return np.lib.stride_tricks.as_strided(
        x_padded,
        shape=(*x_padded.shape[:2], kernel[0], kernel[1], *out_hw),
        strides=(stride_b, stride_c, stride_h * dh, stride_w * dw, stride_h * sh, stride_w * sw),
        writeable=False,
    )


def im2col(x, kernel, out_hw, geometry):
    """x (B, C, H, W) -> cols (G, B·Ho·Wo, Cg·KH·KW): one row per receptive field and group."""
    batch, channels = x.shape[:2]
    (ph, pw), groups = geometry.padding, geometry.groups
    x_padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # (B, C, H + 2ph, W + 2pw)
    fields = receptive_fields(x_padded, kernel, out_hw, geometry)  # (B, C, KH, KW, Ho, Wo)
    fields = fields.reshape(batch, groups, channels // groups, kernel[0], kernel[1], *out_hw)
    # (G, B, Ho, Wo, Cg, KH, KW): the copy happens here, once
    cols = fields.transpose(1, 0, 5, 6, 2, 3, 4).reshape(groups, batch * out_hw[0] * out_hw[1], -1)
    return cols  # (G, B·Ho·Wo, K)


def col2im(dcols, x_shape, kernel, out_hw, geometry):
    """dcols (G, B·Ho·Wo, Cg·KH·KW) -> dx (B, C, H, W): the adjoint of im2col (sums overlaps)."""
    batch, channels, height, width = x_shape
    (sh, sw), (ph, pw), (dh, dw), groups = geometry
    out_h, out_w = out_hw
    # (G, B, Ho, Wo, Cg, KH, KW) -> (B, G·Cg, KH, KW, Ho, Wo)
    dfields = dcols.reshape(groups, batch, out_h, out_w, channels // groups, kernel[0], kernel[1])
    dfields = dfields.transpose(1, 0, 4, 5, 6, 2, 3).reshape(batch, channels, kernel[0], kernel[1], out_h, out_w)
    dx_padded = np.zeros((batch, channels, height + 2 * ph, width + 2 * pw), dtype=dcols.dtype)
    # one strided add per kernel tap: tap (p, q) touched rows p·dh, p·dh + sh, … of x̃
    for p in range(kernel[0]):
        for q in range(kernel[1]):
            rows = slice(p * dh, p * dh + sh * (out_h - 1) + 1, sh)
            columns = slice(q * dw, q * dw + sw * (out_w - 1) + 1, sw)
            dx_padded[:, :, rows, columns] += dfields[:, :, p, q]
    return dx_padded[:, :, ph : ph + height, pw : pw + width]  # (B, C, H, W)


class ConvCache(NamedTuple):
    cols: np.ndarray  # (G, B·Ho·Wo, K)
    weight: np.ndarray  # (F, Cg, KH, KW)
    x_shape: tuple
    out_hw: tuple
    geometry: ConvGeometry
    has_bias: bool


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """x (B, C, H, W), weight (F, C/G, KH, KW), bias (F,) or None -> y (B, F, Ho, Wo), cache."""
    geometry, out_hw = conv_geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    batch = x.shape[0]
    n_filters, _, kernel_h, kernel_w = weight.shape
    groups = geometry.groups
    cols = im2col(x, (kernel_h, kernel_w), out_hw, geometry)  # (G, B·Ho·Wo, K)
    w_groups = weight.reshape(groups, n_filters // groups, -1)  # (G, Fg, K)
    y = cols @ w_groups.transpose(0, 2, 1)  # (G, B·Ho·Wo, Fg)
    # (G, B, Ho, Wo, Fg) -> (B, G, Fg, Ho, Wo) = (B, F, Ho, Wo)
    y = y.reshape(groups, batch, *out_hw, n_filters // groups).transpose(1, 0, 4, 2, 3)
    y = y.reshape(batch, n_filters, *out_hw)
    if bias is not None:
        y = y + bias[:, None, None]  # (B, F, Ho, Wo)
    cache = ConvCache(cols, weight, x.shape, out_hw, geometry, bias is not None)
    return np.ascontiguousarray(y), cache


def conv2d_backward(dy, cache):
    """dy (B, F, Ho, Wo) -> dx (B, C, H, W), dweight (F, C/G, KH, KW), dbias (F,) or None."""
    cols, weight, x_shape, out_hw, geometry, has_bias = cache
    batch = x_shape[0]
    n_filters, _, kernel_h, kernel_w = weight.shape
    groups = geometry.groups
    # in the forward pass this was: y = cols @ w_gᵀ, laid out (G, B·Ho·Wo, Fg)
    dy_groups = dy.reshape(batch, groups, n_filters // groups, *out_hw).transpose(1, 0, 3, 4, 2)
    dy_groups = dy_groups.reshape(groups, batch * out_hw[0] * out_hw[1], n_filters // groups)  # (G, B·Ho·Wo, Fg)
    w_groups = weight.reshape(groups, n_filters // groups, -1)  # (G, Fg, K)
    dweight = (dy_groups.transpose(0, 2, 1) @ cols).reshape(weight.shape)  # (F, Cg, KH, KW)
    dcols = dy_groups @ w_groups  # (G, B·Ho·Wo, K)
    # in the forward pass this was: cols = im2col(x)
    dx = col2im(dcols, x_shape, (kernel_h, kernel_w), out_hw, geometry)  # (B, C, H, W)
    dbias = dy.sum(axis=(0, 2, 3)) if has_bias else None  # (F,)
    return dx, dweight, dbias


def conv_init(rng, n_filters, channels_per_group, kernel, dtype=np.float32):
    """He (Kaiming) normal initialisation for a convolution followed by a ReLU:
    w ~ N(0, 2 / (Cg·KH·KW)), so the output variance matches the input's."""
    kernel_h, kernel_w = _pair(kernel, "kernel")
    fan_in = channels_per_group * kernel_h * kernel_w
    weight = rng.standard_normal((n_filters, channels_per_group, kernel_h, kernel_w)) * np.sqrt(2.0 / fan_in)
    return weight.astype(dtype)
