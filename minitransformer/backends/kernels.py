"""The kernels object: every operation a backend may provide, in one place.

The layers compute with whatever object they are handed (``backend`` in their
signatures); they never look an operation up by name and never import this package. The
object is chosen once, when the model is built (``make_model(config, backend="cython")``,
or ``minitransformer.backends.get(name)``), and passed down through every layer.

``Kernels`` is the protocol and the NumPy reference at once: each operation is the
readable implementation from minitransformer/layers/. A backend subclasses it and
overrides what it has compiled; what it does not override stays the reference's, so every
backend offers every operation:

    operation                                  reference (minitransformer/layers/)   cython  cupy
    out, probs = attention_forward(q, k, v, mask)          attention.py                 yes     yes
    dq, dk, dv = attention_backward(dout, q, k, v, probs)  attention.py                 yes     yes
    out, lse   = attention_forward_blocked(q, k, v, mask, block_size)   blocked_attention.py   yes
    dq, dk, dv = attention_backward_blocked(dout, q, k, v, out, lse, mask, block_size)        yes
    y, cache   = layernorm_forward(x, gamma, beta, eps)    layernorm.py                 yes
    dx, dgamma, dbeta = layernorm_backward(dy, cache)      layernorm.py                 yes
    loss, cache = cross_entropy_forward(logits, targets, pad_id, smoothing)  loss.py    yes
    dlogits    = cross_entropy_backward(cache)             loss.py                      yes
    y, cache   = dropout_forward(x, p, stream)             dropout.py                   yes
    dx         = dropout_backward(dy, cache)               dropout.py                   yes

A forward's cache is the same named tuple on every backend (LayerNormCache,
CrossEntropyCache, DropoutCache), so any backend's backward reads any backend's cache.
Attributes: ``name`` ("numpy", "cython", "cupy") and ``xp``, the array module its tensors
live in (numpy or cupy).
"""

import numpy

from ..layers import attention, blocked_attention, dropout, layernorm, loss


class Kernels:
    """The NumPy reference of every operation; backends override what they compiled."""

    name = "numpy"
    xp = numpy

    attention_forward = staticmethod(attention.attention_forward)
    attention_backward = staticmethod(attention.attention_backward)
    attention_forward_blocked = staticmethod(blocked_attention.blocked_attention_forward)
    attention_backward_blocked = staticmethod(blocked_attention.blocked_attention_backward)
    layernorm_forward = staticmethod(layernorm.layernorm_forward)
    layernorm_backward = staticmethod(layernorm.layernorm_backward)
    cross_entropy_forward = staticmethod(loss.cross_entropy_forward)
    cross_entropy_backward = staticmethod(loss.cross_entropy_backward)
    dropout_forward = staticmethod(dropout.dropout_forward)
    dropout_backward = staticmethod(dropout.dropout_backward)

    @staticmethod
    def unavailable_reason():
        """None when this backend can run here, else a sentence saying what to do."""
        return None

    def compiled(self):
        """The operations this backend overrides (compiled), by name."""
        return sorted(name for name in OPERATIONS if getattr(type(self), name) is not getattr(Kernels, name))

    def __repr__(self):
        return f"<{self.name} kernels: compiled {', '.join(self.compiled()) or 'none'}>"


OPERATIONS = tuple(name for name in vars(Kernels) if name.endswith(("_forward", "_backward", "_blocked")))
