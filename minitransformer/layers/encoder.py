"""The encoder: N identical layers, each self-attention then a feed-forward block (§3.1).

    encoder layer:  x = Residual(x, SelfAttention)      every source position sees every
                    x = Residual(x, FeedForward)        other non-padding source position
    encoder:        x = Layer_N(… Layer_1(x))  [then LayerNorm, when config.final_norm]

Parameters of one layer: self_attn.*, norm1.*, ffn.*, norm2.*. Of the stack:
layers.<i>.* and, with a final norm, norm.*.
"""

from typing import NamedTuple

from ..params import add_into, subtree
from .feedforward import feedforward_backward, feedforward_forward
from .multihead import attention_probs, multihead_backward, multihead_forward
from .residual import residual_backward, residual_forward


class EncoderLayerCache(NamedTuple):
    self_attention: tuple  # the residual block's cache (its .sublayer: the MultiheadCache)
    feed_forward: tuple


class StackCache(NamedTuple):
    """An encoder's or decoder's stack: one cache per layer, and the final norm's (or None)."""

    layers: list
    norm: tuple


def block_size(config):
    """The blocked core's block size when config.attention_core is "blocked", else None (fused)."""
    return config.attention_block_size if config.attention_core == "blocked" else None


def self_attention_backward(dy, cache):
    """Self-attention read X as both queries and keys/values, so both gradients add."""
    dx_q, dx_kv, grads = multihead_backward(dy, cache)
    return dx_q + dx_kv, grads


def encoder_layer_forward(x, params, config, mask, backend, rng):
    """x (B, S, D), mask (B, 1, 1, S) -> y (B, S, D)."""
    attn, ffn = subtree(params, "self_attn"), subtree(params, "ffn")
    common = dict(pre_norm=config.pre_norm, dropout=config.dropout, rng=rng, eps=config.layernorm_eps, backend=backend)

    def self_attention(h):
        return multihead_forward(h, h, attn, config.n_heads, mask, backend, block_size=block_size(config))

    def feed_forward(h):
        return feedforward_forward(h, ffn, config.dropout, rng, backend)

    x, cache_attn = residual_forward(x, self_attention, subtree(params, "norm1"), **common)  # (B, S, D)
    x, cache_ffn = residual_forward(x, feed_forward, subtree(params, "norm2"), **common)  # (B, S, D)
    return x, EncoderLayerCache(cache_attn, cache_ffn)


def encoder_layer_backward(dy, cache):
    """dy (B, S, D) -> dx (B, S, D), grads of the layer."""
    grads = {}
    dx, grads["norm2"], grads["ffn"] = residual_backward(dy, cache.feed_forward, feedforward_backward)
    dx, grads["norm1"], grads["self_attn"] = residual_backward(dx, cache.self_attention, self_attention_backward)
    return dx, grads


def encoder_forward(x, params, config, mask, backend, rng):
    """x (B, S, D) embedded source -> memory (B, S, D), caches."""
    caches = []
    for i in range(config.n_encoder_layers):
        x, cache = encoder_layer_forward(x, subtree(params, f"layers.{i}"), config, mask, backend, rng)
        caches.append(cache)
    x, cache_norm = final_norm_forward(x, params, config, backend)
    return x, StackCache(caches, cache_norm)


def final_norm_forward(x, params, config, backend):
    """The stack's last LayerNorm (norm.*), when config.final_norm (pre-norm stacks need it:
    their residual stream is never normalized otherwise) -> x, cache (None without it)."""
    if not config.final_norm:
        return x, None
    x, cache = backend.layernorm_forward(x, params["norm.gamma"], params["norm.beta"], config.layernorm_eps)
    return x, (cache, backend)


def final_norm_backward(dx, cache, grads):
    """dx -> dx through the final norm (unchanged without one); its grads go into ``grads``."""
    if cache is None:
        return dx
    cache_norm, backend = cache
    dx, grads["norm.gamma"], grads["norm.beta"] = backend.layernorm_backward(dx, cache_norm)
    return dx


def encoder_backward(dmemory, cache):
    """dmemory (B, S, D) -> dx (B, S, D), grads of the stack."""
    grads = {}
    dx = final_norm_backward(dmemory, cache.norm, grads)
    for i in reversed(range(len(cache.layers))):
        dx, layer_grads = encoder_layer_backward(dx, cache.layers[i])
        add_into(grads, f"layers.{i}", layer_grads)
    return dx, grads


def encoder_attention_probs(cache):
    """[layer] -> self-attention weights (B, H, S, S), for inspection."""
    return [attention_probs(layer.self_attention.sublayer) for layer in cache.layers]
