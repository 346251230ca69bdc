"""The decoder: N identical layers of causal self-attention, cross-attention and a
feed-forward block (§3.1).

    decoder layer:  y = Residual(y, CausalSelfAttention)   position t sees targets ≤ t only
                    y = Residual(y, CrossAttention(·, memory))   queries from the target,
                                                                  keys/values from the source
                    y = Residual(y, FeedForward)
    decoder:        y = Layer_N(… Layer_1(y))  [then LayerNorm, when config.final_norm]

The memory (encoder output) feeds the cross-attention of every layer, so its gradient is
the sum over layers. Parameters of one layer: self_attn.*, norm1.*, cross_attn.*, norm2.*,
ffn.*, norm3.*.
"""

from typing import NamedTuple

from ..params import add_into, subtree
from .encoder import StackCache, block_size, final_norm_backward, final_norm_forward, self_attention_backward
from .feedforward import feedforward_backward, feedforward_forward
from .multihead import attention_probs, multihead_backward, multihead_forward
from .residual import residual_backward, residual_forward


class DecoderLayerCache(NamedTuple):
    self_attention: tuple  # each a residual block's cache (its .sublayer: the MultiheadCache)
    cross_attention: tuple
    feed_forward: tuple


def cross_attention_backward(dy, cache):
    """Queries came from the decoder stream, keys/values from the memory."""
    dy_q, dmemory, grads = multihead_backward(dy, cache)
    return dy_q, (grads, dmemory)


def decoder_layer_forward(y, memory, params, config, self_mask, cross_mask, backend, rng, kv_cache=None):
    """y (B, T, D), memory (B, S, D), self_mask (B, 1, T, T), cross_mask (B, 1, 1, S)
    -> y (B, T, D).

    ``kv_cache``: this layer's keys and values of earlier decoding steps (decode.py), with
    ``.self_attention`` and ``.cross_attention``; None in training.
    """
    self_attn, cross_attn, ffn = (subtree(params, name) for name in ("self_attn", "cross_attn", "ffn"))
    common = dict(pre_norm=config.pre_norm, dropout=config.dropout, rng=rng, eps=config.layernorm_eps, backend=backend)

    self_kv, cross_kv = (None, None) if kv_cache is None else (kv_cache.self_attention, kv_cache.cross_attention)

    def causal_self_attention(h):
        return multihead_forward(h, h, self_attn, config.n_heads, self_mask, backend, self_kv, block_size(config))

    def cross_attention(h):
        # cross-attention stays exact: an approximate self-attention core keeps the exact one
        exact = getattr(backend, "exact", backend)
        return multihead_forward(h, memory, cross_attn, config.n_heads, cross_mask, exact, cross_kv, block_size(config))

    def feed_forward(h):
        return feedforward_forward(h, ffn, config.dropout, rng, backend)

    y, cache_self = residual_forward(y, causal_self_attention, subtree(params, "norm1"), **common)  # (B, T, D)
    y, cache_cross = residual_forward(y, cross_attention, subtree(params, "norm2"), **common)  # (B, T, D)
    y, cache_ffn = residual_forward(y, feed_forward, subtree(params, "norm3"), **common)  # (B, T, D)
    return y, DecoderLayerCache(cache_self, cache_cross, cache_ffn)


def decoder_layer_backward(dy, cache):
    """dy (B, T, D) -> dy_in (B, T, D), dmemory (B, S, D), grads of the layer."""
    grads = {}
    dy, grads["norm3"], grads["ffn"] = residual_backward(dy, cache.feed_forward, feedforward_backward)
    dy, grads["norm2"], (grads["cross_attn"], dmemory) = residual_backward(
        dy, cache.cross_attention, cross_attention_backward
    )
    dy, grads["norm1"], grads["self_attn"] = residual_backward(dy, cache.self_attention, self_attention_backward)
    return dy, dmemory, grads


def decoder_forward(y, memory, params, config, self_mask, cross_mask, backend, rng, kv_cache=None):
    """y (B, T, D) embedded target prefix, memory (B, S, D) -> hidden (B, T, D), caches.

    ``kv_cache`` (decoding only): the keys and values of earlier steps, ``kv_cache.layer(i)``
    for layer i."""
    caches = []
    for i in range(config.n_decoder_layers):
        layer_kv = None if kv_cache is None else kv_cache.layer(i)
        y, cache = decoder_layer_forward(
            y, memory, subtree(params, f"layers.{i}"), config, self_mask, cross_mask, backend, rng, layer_kv
        )
        caches.append(cache)
    y, cache_norm = final_norm_forward(y, params, config, backend)
    return y, StackCache(caches, cache_norm)


def decoder_backward(dhidden, cache):
    """dhidden (B, T, D) -> dy (B, T, D), dmemory (B, S, D), grads of the stack."""
    grads = {}
    dy = final_norm_backward(dhidden, cache.norm, grads)
    dmemory = None
    for i in reversed(range(len(cache.layers))):
        dy, dmemory_i, layer_grads = decoder_layer_backward(dy, cache.layers[i])
        dmemory = dmemory_i if dmemory is None else dmemory + dmemory_i  # (B, S, D)
        add_into(grads, f"layers.{i}", layer_grads)
    return dy, dmemory, grads


def decoder_attention_probs(cache):
    """[layer] -> (self-attention weights (B, H, T, T), cross-attention weights (B, H, T, S))."""
    return [
        (attention_probs(layer.self_attention.sublayer), attention_probs(layer.cross_attention.sublayer))
        for layer in cache.layers
    ]
