"""The Cython backend: the attention core compiled from csrc/attention.pyx, on the CPU.

Same interface and same results as the NumPy reference (minitransformer/layers/attention.py)
up to rounding, in float32 and float64, with OpenMP threads over batch × heads and one
portable micro-kernel for the matrix products, compiled for every instruction set and
chosen at run time (csrc/kernels.h; MINITRANSFORMER_ISA forces one). It also offers the
blocked kernels, for long sequences:

    out, probs     = attention_forward(q, k, v, mask)
    dq, dk, dv     = attention_backward(dout, q, k, v, probs)
    out, logsumexp = attention_forward_blocked(q, k, v, mask, block_size=64)
    dq, dk, dv     = attention_backward_blocked(dout, q, k, v, out, logsumexp, mask, block_size=64)

The blocked pair never stores the (T, S) weights; the algorithm is explained in
minitransformer/layers/blocked_attention.py, its NumPy reference.

Compiled from csrc/ops.pyx, with the references' signatures and caches (layers/loss.py,
layers/layernorm.py, layers/dropout.py):

    loss, cache  = cross_entropy_forward(logits, targets, pad_id, smoothing)
    dlogits      = cross_entropy_backward(cache)      # computed by the forward, same pass
    y, cache     = layernorm_forward(x, gamma, beta, eps)
    dx, dgamma, dbeta = layernorm_backward(dy, cache)
    y, cache     = dropout_forward(x, p, stream)      # the reference's masks and cache
    dx           = dropout_backward(dy, cache)

``kernels`` (a CythonKernels) gathers them all for the model: see backends/kernels.py.

Threads: OMP_NUM_THREADS sets how many (default: one per core).
"""

import numpy as xp  # noqa: F401  (the array module this backend's tensors live in)

from ..layers.attention import check_attention_inputs

name = "cython"

from .. import _ext
from ..layers.dropout import DropoutCache, dropout_threshold, next_key
from ..layers.layernorm import LayerNormCache
from ..layers.loss import CrossEntropyCache
from .kernels import Kernels

try:
    from .._ext import attention as _kernels

    _import_error = None
except ImportError as error:  # not built, or built for another Python
    _kernels = None
    _import_error = error

_ops = _ext.ops

if _ops is not None:

    def cross_entropy_forward(logits, targets, pad_id, smoothing=0.0):
        """logits (B, T, V), targets (B, T) -> loss, CrossEntropyCache (the gradient, same pass)."""
        loss, (dlogits,) = _ops.cross_entropy_forward(logits, targets, pad_id, smoothing)
        return loss, CrossEntropyCache(dlogits)

    def cross_entropy_backward(cache):
        return cache.dlogits

    def layernorm_forward(x, gamma, beta, eps=1e-5):
        """x (..., D) -> y (..., D), LayerNormCache."""
        y, cache = _ops.layernorm_forward(x, gamma, beta, eps)
        return y, LayerNormCache(*cache)

    layernorm_backward = _ops.layernorm_backward

    def dropout_forward(x, p, stream):
        """The reference's dropout (same generator, same masks, same cache), in one fused pass."""
        if stream is None or p == 0.0:
            return x, None
        scale = 1.0 / (1.0 - p)
        y, keep = _ops.dropout_mask_forward(x, next_key(stream), dropout_threshold(p), scale)
        return y, DropoutCache(keep, scale)

    def dropout_backward(dy, cache):
        """dx = dy ⊙ keep / (1 − p)."""
        if cache is None:
            return dy
        return _ops.dropout_mask_backward(dy, cache.keep, cache.scale)


def unavailable_reason():
    """None when the compiled kernels load; otherwise a sentence saying what to do."""
    if _kernels is not None and _ext.isa_error:
        return _ext.isa_error
    if _kernels is None:
        missing = getattr(_import_error, "name", None)
        if isinstance(_import_error, ModuleNotFoundError) and missing and not missing.startswith("minitransformer"):
            return f"the Cython extension needs the Python package {missing!r}: pip install {missing}"
        return (
            "the Cython extension minitransformer._ext.attention is not built: run `make setup` "
            f"or `pip install -e .` (needs a C compiler) [{_import_error}]"
        )
    return None


def _kernels_or_raise():
    if _kernels is None:
        from . import BackendUnavailable

        raise BackendUnavailable(f"the 'cython' backend cannot run: {unavailable_reason()}")
    return _kernels


def attention_forward(q, k, v, mask=None):
    """q (B, H, T, Dh), k, v (B, H, S, Dh), mask ~(B, H, T, S) bool -> out (B, H, T, Dh), probs (B, H, T, S)."""
    check_attention_inputs(q, k, v, mask)
    return _kernels_or_raise().attention_forward(q, k, v, mask)


def attention_backward(dout, q, k, v, probs):
    """dout (B, H, T, Dh) -> dq (B, H, T, Dh), dk (B, H, S, Dh), dv (B, H, S, Dh)."""
    return _kernels_or_raise().attention_backward(dout, q, k, v, probs)


def attention_forward_blocked(q, k, v, mask=None, block_size=64):
    """q (B, H, T, Dh), k, v (B, H, S, Dh), mask -> out (B, H, T, Dh), logsumexp (B, H, T)."""
    check_attention_inputs(q, k, v, mask)
    return _kernels_or_raise().attention_forward_blocked(q, k, v, mask, block_size)


def attention_backward_blocked(dout, q, k, v, out, logsumexp, mask=None, block_size=64):
    """dout (B, H, T, Dh), with the forward's inputs, out and logsumexp -> dq, dk, dv."""
    check_attention_inputs(q, k, v, mask)
    return _kernels_or_raise().attention_backward_blocked(dout, q, k, v, out, logsumexp, mask, block_size)


class CythonKernels(Kernels):
    """The kernels object of this backend: the compiled attention core, and the compiled
    LayerNorm, cross-entropy and dropout where csrc/ops.pyx is built."""

    name = "cython"
    unavailable_reason = staticmethod(unavailable_reason)
    attention_forward = staticmethod(attention_forward)
    attention_backward = staticmethod(attention_backward)
    attention_forward_blocked = staticmethod(attention_forward_blocked)
    attention_backward_blocked = staticmethod(attention_backward_blocked)
    if _ops is not None:
        cross_entropy_forward = staticmethod(cross_entropy_forward)
        cross_entropy_backward = staticmethod(cross_entropy_backward)
        layernorm_forward = staticmethod(layernorm_forward)
        layernorm_backward = staticmethod(layernorm_backward)
        dropout_forward = staticmethod(dropout_forward)
        dropout_backward = staticmethod(dropout_backward)


kernels = CythonKernels()
