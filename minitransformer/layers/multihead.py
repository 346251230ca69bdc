"""Multi-head attention: H attention cores side by side, each on its own projection.

    head_h = Attention(X_q·W_q,h, X_kv·W_k,h, X_kv·W_v,h)
    MultiHead(X_q, X_kv) = Concat(head_1, …, head_H)·W_o                 (section 3.2.2)

The H projections of width Dh = D/H are computed as one D×D matrix product and then the
last axis is split into H heads ("split"); after the core the heads are put back side by
side ("merge"). One layer serves the three uses in the Transformer:
    self-attention         X_q = X_kv = X            mask: padding
    causal self-attention  X_q = X_kv = Y            mask: padding and "no peeking ahead"
    cross-attention        X_q = Y, X_kv = memory    mask: source padding

Parameters (dict): w_q, w_k, w_v, w_o (D, D) and b_q, b_k, b_v, b_o (D,), and optionally
gate (H,), which only minitransformer/interpret/ sets: each head's output is multiplied
by its gate before W_o, head_h·g_h, so g = 1 changes nothing and g_h = 0 removes head h
(Michel et al., 2019). With a gate the backward also returns

    ∂L/∂g_h = Σ_{b,t,d} ∂L/∂(head_h·g_h) ⊙ head_h          "gate"        (H,)
    ∂L/∂A   = ∂L/∂head · Vᵀ                                 "attn_probs"  (B, H, T, S)

the second being the gradient with respect to the attention weights themselves. Without a
gate nothing of this is computed.
Backward returns dx_q, dx_kv and the gradients under the same keys; for self-attention the
caller adds dx_q and dx_kv, since X fed both.
"""

from typing import NamedTuple

from .blocked_attention import weights_from_logsumexp
from .linear import linear_backward, linear_forward


class MultiheadCache(NamedTuple):
    """What multihead_backward needs; ``probs`` are the attention weights, for inspection."""

    linear_q: tuple
    linear_k: tuple
    linear_v: tuple
    linear_o: tuple
    q: object  # (B, H, T, Dh)
    k: object  # (B, H, S, Dh)
    v: object  # (B, H, S, Dh)
    probs: object  # (B, H, T, S); None from the blocked core, which never stores them
    n_heads: int
    backend: object  # the kernels object whose attention core ran the forward
    blocked: tuple = None  # the blocked core's (out, logsumexp, mask, block_size), else None
    gate: object = None  # (H,) the head gates, when params has them (interpret/)
    heads: object = None  # (B, H, T, Dh) the heads before their gates, only with a gate


def split_heads(x, n_heads):
    """(B, T, D) -> (B, H, T, Dh)."""
    batch, seq_len, d_model = x.shape
    return x.reshape(batch, seq_len, n_heads, d_model // n_heads).transpose(0, 2, 1, 3)


def merge_heads(x):
    """(B, H, T, Dh) -> (B, T, D)."""
    batch, n_heads, seq_len, head_dim = x.shape
    return x.transpose(0, 2, 1, 3).reshape(batch, seq_len, n_heads * head_dim)


def multihead_forward(x_q, x_kv, params, n_heads, mask, backend, kv_cache=None, block_size=None):
    """x_q (B, T, D), x_kv (B, S, D), mask ~(B, H, T, S) -> y (B, T, D), cache.

    ``backend`` is the kernels object (minitransformer/backends/kernels.py) whose attention
    core runs: attention_forward / attention_backward.

    ``kv_cache``, when decoding one position at a time (decode.py), keeps the keys and values
    of earlier steps: its ``attend(q, project, backend, mask)`` calls ``project()`` for the
    keys and values it lacks (self-attention: the newest position's, appended; cross-attention:
    the memory's, once) and runs the core on all of them. Such a forward has no backward.

    ``block_size``: run the blocked core (layers/blocked_attention.py) in blocks of this
    many queries and keys; its backward recomputes the weights instead of storing them.
    """
    q2, cache_q = linear_forward(x_q, params["w_q"], params["b_q"])  # (B, T, D)
    q = split_heads(q2, n_heads)  # (B, H, T, Dh)

    def project():
        k2, cache_k = linear_forward(x_kv, params["w_k"], params["b_k"])  # (B, S, D)
        v2, cache_v = linear_forward(x_kv, params["w_v"], params["b_v"])  # (B, S, D)
        return split_heads(k2, n_heads), split_heads(v2, n_heads), cache_k, cache_v  # k, v (B, H, S, Dh)

    blocked = None
    if kv_cache is not None:
        # one query per step: the cache runs the fused core (there is nothing to block)
        k = v = cache_k = cache_v = None
        heads, probs = kv_cache.attend(q, project, backend, mask)
    elif block_size is None:
        k, v, cache_k, cache_v = project()
        heads, probs = backend.attention_forward(q, k, v, mask)  # (B, H, T, Dh), (B, H, T, S)
    else:
        k, v, cache_k, cache_v = project()
        heads, logsumexp = backend.attention_forward_blocked(q, k, v, mask, block_size)  # (B, H, T, Dh), (B, H, T)
        probs, blocked = None, (heads, logsumexp, mask, block_size)
    gate = params.get("gate")  # (H,) or None: see the module docstring
    merged = merge_heads(heads if gate is None else heads * gate[:, None, None])  # (B, T, D)
    y, cache_o = linear_forward(merged, params["w_o"], params["b_o"])  # (B, T, D)
    return y, MultiheadCache(cache_q, cache_k, cache_v, cache_o, q, k, v, probs, n_heads, backend, blocked,
                             gate, None if gate is None else heads)


def multihead_backward(dy, cache):
    """dy (B, T, D) -> dx_q (B, T, D), dx_kv (B, S, D), grads {w_q, b_q, …}."""
    grads = {}
    dmerged, grads["w_o"], grads["b_o"] = linear_backward(dy, cache.linear_o)  # (B, T, D)
    dheads = split_heads(dmerged, cache.n_heads)  # (B, H, T, Dh)
    if cache.gate is not None:
        # in the forward pass this was: merged = Concat(head_h · g_h)
        grads["gate"] = (dheads * cache.heads).sum(axis=(0, 2, 3))  # (H,)
        dheads = dheads * cache.gate[:, None, None]  # (B, H, T, Dh)
        # in the forward pass this was (inside the core): head = A·V, so ∂L/∂A = ∂L/∂head·Vᵀ
        grads["attn_probs"] = dheads @ cache.v.swapaxes(-1, -2)  # (B, H, T, S)
    if cache.blocked is None:
        dq, dk, dv = cache.backend.attention_backward(dheads, cache.q, cache.k, cache.v, cache.probs)
    else:
        out, logsumexp, mask, block_size = cache.blocked
        dq, dk, dv = cache.backend.attention_backward_blocked(
            dheads, cache.q, cache.k, cache.v, out, logsumexp, mask, block_size
        )
    dx_q, grads["w_q"], grads["b_q"] = linear_backward(merge_heads(dq), cache.linear_q)  # (B, T, D)
    dx_k, grads["w_k"], grads["b_k"] = linear_backward(merge_heads(dk), cache.linear_k)  # (B, S, D)
    dx_v, grads["w_v"], grads["b_v"] = linear_backward(merge_heads(dv), cache.linear_v)  # (B, S, D)
    return dx_q, dx_k + dx_v, grads


def attention_probs(cache):
    """The attention weights (B, H, T, S) of a multihead_forward, for inspection (rebuilt
    from the log-sum-exp when the blocked core ran)."""
    if cache.blocked is None:
        # an approximate core (minitransformer/approx/core.py) keeps a state that gives its
        # approximate or implied weights
        return cache.probs.weights() if hasattr(cache.probs, "weights") else cache.probs
    _, logsumexp, mask, _ = cache.blocked
    return weights_from_logsumexp(cache.q, cache.k, logsumexp, mask)
