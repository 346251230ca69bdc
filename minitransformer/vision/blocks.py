"""Small pieces shared by the vision modules and the CNN: the run mode, named sub-parameters,
1×1 convolutions as matrix products, and the conv → BatchNorm → ReLU unit.

Sizes: B batch, C channels, H × W the map, N = H·W positions, F output channels.

Parameters are one flat dict per model, keyed "module.part.name" (as in model.py), so that
the optimizer and a checkpoint see plain arrays. ``sub(params, "fc1")`` gives the entries
under a prefix without copying them, and ``prefixed(grads, "fc1")`` puts gradients back
under it. BatchNorm's running statistics live among the parameters (keys ending in
running_mean / running_var) but get no gradient; the optimizer steps only what has one.
"""

from typing import NamedTuple

import numpy as np

from ..layers.linear import linear_backward, linear_forward
from ..layers.relu import relu_backward, relu_forward
from .batchnorm import batchnorm_backward, batchnorm_forward, batchnorm_init
from .conv import conv2d_backward, conv2d_forward, conv_init


class Mode(NamedTuple):
    """How a forward runs: ``training`` switches BatchNorm to batch statistics; ``backend`` is
    the attention core (minitransformer.backends.get(...)) that the pixel-attention modules
    call."""

    training: bool
    backend: object


def sub(params, prefix):
    """The entries of ``params`` under ``prefix.``, with the prefix removed (same arrays)."""
    start = prefix + "."
    return {key[len(start) :]: value for key, value in params.items() if key.startswith(start)}


def prefixed(grads, prefix):
    """{name: g} -> {prefix.name: g}."""
    return {f"{prefix}.{key}": value for key, value in grads.items()}


def trainable(params):
    """The keys that take a gradient (everything but BatchNorm's running statistics)."""
    return [key for key in params if not key.endswith(("running_mean", "running_var"))]


def count_parameters(params):
    """The number of trained scalars (running statistics are not parameters)."""
    return int(sum(params[key].size for key in trainable(params)))


def linear_init(rng, d_in, d_out, dtype=np.float32, relu=True):
    """weight (D_in, D_out) ~ N(0, gain / D_in) with gain 2 before a ReLU (He) and 1 otherwise; bias 0."""
    gain = 2.0 if relu else 1.0
    return {
        "weight": (rng.standard_normal((d_in, d_out)) * np.sqrt(gain / d_in)).astype(dtype),
        "bias": np.zeros(d_out, dtype),
    }


def to_sequence(x):
    """(B, C, H, W) -> (B, N, C): each position becomes a token of C features."""
    batch, channels = x.shape[:2]
    return x.reshape(batch, channels, -1).transpose(0, 2, 1)


def to_map(sequence, height, width):
    """(B, N, C) -> (B, C, H, W), the inverse of to_sequence."""
    batch, _, channels = sequence.shape
    return np.ascontiguousarray(sequence.transpose(0, 2, 1)).reshape(batch, channels, height, width)


def pointwise_forward(x, params):
    """A 1×1 convolution as one matrix product over positions.
    x (B, C, H, W), weight (C, F), bias (F,) -> y (B, F, H, W), cache."""
    height, width = x.shape[2:]
    y, cache = linear_forward(to_sequence(x), params["weight"], params["bias"])  # (B, N, F)
    return to_map(y, height, width), (cache, height, width)


def pointwise_backward(dy, cache):
    """dy (B, F, H, W) -> dx (B, C, H, W), {weight, bias}."""
    linear_cache, height, width = cache
    dx, dweight, dbias = linear_backward(to_sequence(dy), linear_cache)  # (B, N, C)
    return to_map(dx, height, width), {"weight": dweight, "bias": dbias}


def conv_bn_relu_init(rng, channels, n_filters, kernel, groups=1, dtype=np.float32):
    """A convolution without bias (BatchNorm's β replaces it), BatchNorm and ReLU."""
    params = {"conv.weight": conv_init(rng, n_filters, channels // groups, kernel, dtype)}
    params.update(prefixed(batchnorm_init(n_filters, dtype), "bn"))
    return params


def conv_bn_relu_forward(x, params, mode, stride=1, padding=0, dilation=1, groups=1, relu=True):
    """x (B, C, H, W) -> y (B, F, Ho, Wo), cache: y = ReLU(BN(conv(x)))."""
    bn = sub(params, "bn")
    u, conv_cache = conv2d_forward(x, params["conv.weight"], None, stride, padding, dilation, groups)  # (B, F, Ho, Wo)
    v, bn_cache = batchnorm_forward(u, bn["gamma"], bn["beta"], bn["running_mean"], bn["running_var"], mode.training)
    if not relu:
        return v, (conv_cache, bn_cache, None)
    y, relu_cache = relu_forward(v)  # (B, F, Ho, Wo)
    return y, (conv_cache, bn_cache, relu_cache)


def conv_bn_relu_backward(dy, cache):
    """dy (B, F, Ho, Wo) -> dx (B, C, H, W), gradients under the init's keys."""
    conv_cache, bn_cache, relu_cache = cache
    dv = relu_backward(dy, relu_cache) if relu_cache is not None else dy
    du, dgamma, dbeta = batchnorm_backward(dv, bn_cache)
    dx, dweight, _ = conv2d_backward(du, conv_cache)
    return dx, {"conv.weight": dweight, "bn.gamma": dgamma, "bn.beta": dbeta}
