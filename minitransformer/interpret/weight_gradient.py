"""The gradient of one attention weight with respect to the input embeddings.

The notes' "gradient interpretability": which input features move an attention weight
most. For one weight A = A^(l,h)[q, k] of any attention layer, the gradients

    ∂A / ∂e_s  (S, D)           e_s = Embed(x_s)·√D      the source embeddings
    ∂A / ∂u_t  (T, D)           u_t = Embed(y_t)·√D      the decoder input embeddings

say how each token's embedding pushes that weight up or down; the norm over D, ‖∂A/∂e_s‖,
ranks the tokens. They are computed by starting the backward at the weight itself:

    dA = onehot(h, q, k)                                            (H, Tq, Tk) in layer l
    dS = A ⊙ (dA − rowsum(dA ⊙ A))                                  the softmax backward
    dQ = dS·K / √Dh,  dK = dSᵀ·Q / √Dh                              the scores' backward
    dh_q = dQ·W_qᵀ,   dh_kv = dK·W_kᵀ                               the projections' backward

and then back through what fed the queries and the keys, with the same functions the model
trains with (layers/attention.py, linear.py, residual.py, encoder.py, decoder.py):

    encoder self-attention   h_q = h_kv = LN(x) or x: layers l−1 … 0 of the encoder
    decoder self-attention   h_q = h_kv from the decoder stream: layers l−1 … 0 of the
                             decoder, whose cross-attentions hand a gradient to the memory,
                             and through the memory the whole encoder
    cross-attention          h_q from the stream after layer l's self-attention block (so
                             back through that block too), h_kv = the memory itself

The values V and everything above the weight's sublayer play no part. A decoder
self-attention weight of layer 0 depends on no source token: its ∂A/∂e is exactly 0.
Only exact attention (fused or blocked) has this backward; an approximate core is refused.

    from minitransformer.interpret.weight_gradient import attention_weight_gradient, decoder_weight_gradient
    weight, grad = attention_weight_gradient(model, src_ids, layer=1, head=0, query=2, key=1)  # (S, D)
    result = decoder_weight_gradient(model, src_ids, tgt_in, "cross", layer=1, head=0, query=3, key=1)
    result.source (S, D), result.target (T, D)
"""

import math
from typing import NamedTuple

import numpy as np

from ..arrays import to_numpy
from ..layers.decoder import decoder_layer_backward, decoder_layer_forward
from ..layers.encoder import encoder_backward, encoder_forward, encoder_layer_backward, encoder_layer_forward
from ..layers.encoder import self_attention_backward
from ..layers.linear import linear_backward
from ..layers.multihead import attention_probs, merge_heads
from ..layers.positional import positional_forward
from ..layers.residual import residual_backward
from ..model import causal_mask, local_mask, padding_mask
from ..params import subtree
from .gates import check_head
from .steps import encoder_masks, source_embedding, target_embedding


class WeightGradient(NamedTuple):
    weight: float  # A^(l,h)[q, k]
    source: np.ndarray  # (S, D) ∂A/∂e, the source embeddings
    target: np.ndarray  # (T, D) ∂A/∂u, the decoder input embeddings


def check_exact(config):
    """Raise a ValueError when an attention core has no exact weights to differentiate."""
    for side in ("encoder_attention", "decoder_attention"):
        if getattr(config, side, "exact") != "exact":
            raise ValueError(f"the gradient of an attention weight needs exact attention; {side} is "
                             f"{getattr(config, side)!r}")


def check_position(name, position, length, what):
    if not 0 <= position < length:
        raise ValueError(f"{name} {position} must lie in 0–{length - 1}, the {what}")


def weight_backward(attention, head, query, key):
    """attention: a MultiheadCache -> (A[head, query, key], dh_q (1, Tq, D), dh_kv (1, Tk, D)).

    The backward of one weight through the softmax, the scores and the Q, K projections."""
    xp = attention.backend.xp
    q, k = attention.q, attention.k  # (1, H, Tq, Dh), (1, H, Tk, Dh)
    probs = attention_probs(attention)  # (1, H, Tq, Tk)
    weight = float(to_numpy(probs[0, head, query, key]))
    # dA = onehot(h, q, k); the softmax backward with its one row-sum
    dprobs = xp.zeros_like(probs)  # (1, H, Tq, Tk)
    dprobs[0, head, query, key] = 1.0
    row_dot = (dprobs * probs).sum(axis=-1, keepdims=True)  # (1, H, Tq, 1)
    dscores = probs * (dprobs - row_dot)  # (1, H, Tq, Tk)
    scale = 1.0 / math.sqrt(q.shape[-1])
    dq = (dscores @ k) * scale  # (1, H, Tq, Dh)
    dk = (dscores.swapaxes(-1, -2) @ q) * scale  # (1, H, Tk, Dh)
    dh_q, _, _ = linear_backward(merge_heads(dq), attention.linear_q)  # (1, Tq, D)
    dh_kv, _, _ = linear_backward(merge_heads(dk), attention.linear_k)  # (1, Tk, D)
    return weight, dh_q, dh_kv


def sublayer_input_backward(dh, residual):
    """dh (1, T, D) at a sublayer's input -> (1, T, D) at its residual block's input.

    In the forward pass this was: h = LayerNorm(x) (pre-norm) or h = x (post-norm)."""
    return residual.backend.layernorm_backward(dh, residual.norm)[0] if residual.pre_norm else dh


def attention_weight_gradient(model, src_ids, layer, head, query, key, embedded=None):
    """src_ids (S,) -> (A^(layer, head)[query, key] of the encoder, ∂A/∂e (S, D) float64).

    embedded: the source embeddings (S, D) to evaluate at (default Embed(x)·√D).
    """
    config, xp = model.config, model.xp
    check_head(config, "encoder", layer, head)
    check_exact(config)
    src_ids = np.asarray(src_ids, dtype=np.int64)
    check_position("query", query, len(src_ids), "source positions")
    check_position("key", key, len(src_ids), "source positions")
    if embedded is None:
        embedded = source_embedding(model, src_ids)  # (S, D)
    src = xp.asarray(src_ids[None])  # (1, S)
    mask = encoder_masks(model, src)[1]  # (1, 1, S, S) or (1, 1, 1, S)
    dtype = model.params[model.src_embed_key].dtype
    x, _ = positional_forward(xp.asarray(embedded[None], dtype=dtype), model.positional_table)  # (1, S, D)
    # forward through layers 0 … layer, keeping each one's cache
    caches = []
    params = subtree(model.params, "encoder")
    for i in range(layer + 1):
        x, cache = encoder_layer_forward(x, subtree(params, f"layers.{i}"), config, mask, model.backend, None)
        caches.append(cache)
    residual = caches[layer].self_attention  # ResidualCache; its .sublayer is the MultiheadCache
    weight, dh_q, dh_kv = weight_backward(residual.sublayer, head, query, key)
    dx = sublayer_input_backward(dh_q + dh_kv, residual)  # (1, S, D): h fed both queries and keys
    for i in reversed(range(layer)):
        dx, _ = encoder_layer_backward(dx, caches[i])  # (1, S, D)
    # x = e + PE: the gradient reaches e unchanged
    return weight, to_numpy(dx[0]).astype(np.float64)


def decoder_stack_forward(model, src_ids, tgt_in, embedded, embedded_target, n_layers):
    """-> (encoder cache, [decoder layer caches 0 … n_layers−1]), one sentence, no dropout."""
    config, xp = model.config, model.xp
    dtype = model.params[model.src_embed_key].dtype
    src, tgt = xp.asarray(src_ids[None]), xp.asarray(tgt_in[None])  # (1, S), (1, T)
    src_mask, encoder_self_mask = encoder_masks(model, src)  # (1, 1, 1, S), (1, 1, 1 or S, S)
    x, _ = positional_forward(xp.asarray(embedded[None], dtype=dtype), model.positional_table)  # (1, S, D)
    memory, cache_encoder = encoder_forward(
        x, subtree(model.params, "encoder"), config, encoder_self_mask, model.backend, None
    )  # (1, S, D)
    self_mask = causal_mask(len(tgt_in), xp) & padding_mask(tgt, config.pad_id)  # (1, 1, T, T)
    if config.attention_window is not None:
        self_mask = self_mask & local_mask(len(tgt_in), len(tgt_in), config.attention_window, xp)
    y, _ = positional_forward(xp.asarray(embedded_target[None], dtype=dtype), model.positional_table)  # (1, T, D)
    params, caches = subtree(model.params, "decoder"), []
    for i in range(n_layers):
        y, cache = decoder_layer_forward(y, memory, subtree(params, f"layers.{i}"), config, self_mask, src_mask,
                                         model.backend, None)  # (1, T, D)
        caches.append(cache)
    return cache_encoder, caches


def decoder_weight_gradient(model, src_ids, tgt_in, stack, layer, head, query, key,
                            embedded=None, embedded_target=None):
    """src_ids (S,), tgt_in (T,) the decoder's input pieces (<s> y_0 …) -> WeightGradient of
    A^(layer, head)[query, key] of stack "decoder_self" (keys: decoder inputs) or "cross"
    (keys: source pieces).

    embedded (S, D), embedded_target (T, D): the embeddings to evaluate at (default the lookups).
    """
    config, xp = model.config, model.xp
    if stack not in ("decoder_self", "cross"):
        raise ValueError(f"stack {stack!r}: choose decoder_self or cross (attention_weight_gradient for the encoder)")
    check_head(config, stack, layer, head)
    check_exact(config)
    src_ids, tgt_in = np.asarray(src_ids, dtype=np.int64), np.asarray(tgt_in, dtype=np.int64)
    check_position("query", query, len(tgt_in), "decoder positions")
    check_position("key", key, len(tgt_in) if stack == "decoder_self" else len(src_ids),
                   "decoder positions" if stack == "decoder_self" else "source positions")
    embedded = source_embedding(model, src_ids) if embedded is None else embedded  # (S, D)
    if embedded_target is None:
        embedded_target = target_embedding(model, tgt_in)  # (T, D)
    cache_encoder, caches = decoder_stack_forward(model, src_ids, tgt_in, embedded, embedded_target, layer + 1)
    dmemory = xp.zeros((1, len(src_ids), config.d_model), dtype=model.params[model.src_embed_key].dtype)  # (1, S, D)
    if stack == "decoder_self":
        residual = caches[layer].self_attention
        weight, dh_q, dh_kv = weight_backward(residual.sublayer, head, query, key)
        dy = sublayer_input_backward(dh_q + dh_kv, residual)  # (1, T, D): the stream fed queries and keys
    else:
        residual = caches[layer].cross_attention
        weight, dh_q, dh_kv = weight_backward(residual.sublayer, head, query, key)
        dmemory = dmemory + dh_kv  # the keys were projected from the memory itself
        dy = sublayer_input_backward(dh_q, residual)  # (1, T, D) after layer l's self-attention block
        # in the forward pass this was: y = Residual(y_in, CausalSelfAttention)
        dy, _, _ = residual_backward(dy, caches[layer].self_attention, self_attention_backward)  # (1, T, D)
    for i in reversed(range(layer)):
        dy, dmemory_i, _ = decoder_layer_backward(dy, caches[i])  # (1, T, D), (1, S, D)
        dmemory = dmemory + dmemory_i
    dx, _ = encoder_backward(dmemory, cache_encoder)  # (1, S, D)
    # x = e + PE and y = u + PE: both gradients reach the embeddings unchanged
    return WeightGradient(weight, to_numpy(dx[0]).astype(np.float64), to_numpy(dy[0]).astype(np.float64))
