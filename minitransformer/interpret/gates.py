"""A gate on each attention head's output, and the other things done to one head.

    MultiHead(X) = Concat(g_1·head_1, …, g_H·head_H)·W_o        g = 1: the model as trained

The gates are optional parameters, "<layer>.gate" (H,), that multihead_forward multiplies in
before W_o (layers/multihead.py). With them the backward returns ∂L/∂g_h, the head
importance of Michel et al. (2019), and ∂L/∂A, the gradient with respect to the attention
weights; g_h = 0 removes the head, which is the same as zeroing its rows h·Dh … (h+1)·Dh − 1
of W_o (tests/test_interpret.py proves it). Without gates the model computes nothing extra.

Every attention layer has a name, (stack, layer): stack "encoder" (self-attention over the
source), "decoder_self" (causal, over the target) or "cross" (target queries, source keys),
the keys of model.attention_maps.
"""

from contextlib import contextmanager

STACKS = ("encoder", "decoder_self", "cross")


def attention_layers(config):
    """{stack: [parameter prefix of layer 0, 1, …]}."""
    return {
        "encoder": [f"encoder.layers.{i}.self_attn" for i in range(config.n_encoder_layers)],
        "decoder_self": [f"decoder.layers.{i}.self_attn" for i in range(config.n_decoder_layers)],
        "cross": [f"decoder.layers.{i}.cross_attn" for i in range(config.n_decoder_layers)],
    }


def check_head(config, stack, layer, head):
    """Raise a ValueError naming the bad part of (stack, layer, head)."""
    layers = attention_layers(config)
    if stack not in layers:
        raise ValueError(f"no attention stack {stack!r}: choose one of {', '.join(STACKS)}")
    if not 0 <= layer < len(layers[stack]):
        raise ValueError(f"layer {layer} is out of range: the {stack} stack has layers 0–{len(layers[stack]) - 1}")
    if not 0 <= head < config.n_heads:
        raise ValueError(f"head {head} is out of range: the model has heads 0–{config.n_heads - 1}")


@contextmanager
def head_gates(model, values=None):
    """Put gates on every attention layer for the duration of a `with` block.

    values: {stack: (L, H) array} to start from (default all ones, the trained model).
    Inside the block model.grads["<layer>.gate"] is ∂L/∂g after a backward, and
    model.attention_grads["<layer>.attn_probs"] is ∂L/∂A.
    """
    xp, dtype = model.xp, model.params[model.src_embed_key].dtype
    keys = []
    try:
        for stack, prefixes in attention_layers(model.config).items():
            for layer, prefix in enumerate(prefixes):
                gate = xp.ones(model.config.n_heads, dtype=dtype)  # (H,)
                if values is not None:
                    gate = xp.asarray(values[stack][layer], dtype=dtype)
                model.params[prefix + ".gate"] = gate
                keys.append(prefix + ".gate")
        yield model
    finally:
        for key in keys:
            model.params.pop(key, None)
            model.grads.pop(key, None)
        model.attention_grads = {}


def gate_gradients(model):
    """{stack: (L, H)} ∂L/∂g of the last backward inside head_gates."""
    import numpy as np

    from ..arrays import to_numpy

    return {
        stack: np.stack([to_numpy(model.grads[prefix + ".gate"]).astype(np.float64) for prefix in prefixes])
        for stack, prefixes in attention_layers(model.config).items()
    }


def attention_gradients(model):
    """{stack: [∂L/∂A (B, H, T, S) per layer]} of the last backward inside head_gates."""
    return {
        stack: [model.attention_grads[prefix + ".attn_probs"] for prefix in prefixes]
        for stack, prefixes in attention_layers(model.config).items()
    }


def output_rows(config, head):
    """The rows of W_o (D, D) that head `head` feeds: h·Dh … (h+1)·Dh − 1."""
    head_dim = config.d_model // config.n_heads
    return slice(head * head_dim, (head + 1) * head_dim)


@contextmanager
def heads_removed(model, heads):
    """Remove heads [(stack, layer, head), …] by zeroing their rows of W_o, for a `with`
    block: every decoder path (the cached one too) then runs without them."""
    saved = {}
    try:
        for stack, layer, head in heads:
            check_head(model.config, stack, layer, head)
            key = attention_layers(model.config)[stack][layer] + ".w_o"
            saved.setdefault(key, model.params[key].copy())
            model.params[key][output_rows(model.config, head)] = 0
        yield model
    finally:
        for key, value in saved.items():
            model.params[key] = value
