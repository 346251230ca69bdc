"""The gradient of one attention weight with respect to the input embeddings.

The notes' "gradient interpretability": which input features move an attention weight
most. For one weight of the encoder's self-attention, A = A^(l,h)[q, k], the gradient

    ∂A / ∂e_s  (S, D)           e_s = Embed(x_s)·√D

says how each source token's embedding pushes that weight up or down; its norm over D,
‖∂A/∂e_s‖, ranks the tokens. It is computed by starting the backward at the weight itself:

    dA = onehot(h, q, k)                                            (H, S, S) in layer l
    dS = A ⊙ (dA − rowsum(dA ⊙ A))                                  the softmax backward
    dQ = dS·K / √Dh,  dK = dSᵀ·Q / √Dh                              the scores' backward
    dh = dQ·W_qᵀ + dK·W_kᵀ                                          the projections' backward
    then the residual's LayerNorm (pre-norm) and layers l−1 … 0 of the encoder's backward,

the same functions the model trains with (layers/attention.py, linear.py, residual.py,
encoder.py); the values V and everything above layer l play no part.

    from minitransformer.interpret.weight_gradient import attention_weight_gradient
    grad = attention_weight_gradient(model, src_ids, layer=1, head=0, query=2, key=1)   # (S, D)
"""

import math

import numpy as np

from ..arrays import to_numpy
from ..layers.encoder import encoder_layer_backward, encoder_layer_forward
from ..layers.linear import linear_backward
from ..layers.multihead import merge_heads
from ..layers.positional import positional_forward
from ..model import padding_mask
from ..params import subtree
from .gates import check_head
from .steps import source_embedding


def attention_weight_gradient(model, src_ids, layer, head, query, key, embedded=None):
    """src_ids (S,) -> (A^(layer, head)[query, key], ∂A/∂e (S, D) float64).

    embedded: the source embeddings (S, D) to evaluate at (default Embed(x)·√D).
    """
    config, xp = model.config, model.xp
    check_head(config, "encoder", layer, head)
    src_ids = np.asarray(src_ids, dtype=np.int64)
    src_len = len(src_ids)
    if not (0 <= query < src_len and 0 <= key < src_len):
        raise ValueError(f"query {query} and key {key} must lie in 0–{src_len - 1}, the source positions")
    if embedded is None:
        embedded = source_embedding(model, src_ids)  # (S, D)
    src = xp.asarray(src_ids[None])  # (1, S)
    mask = padding_mask(src, config.pad_id)  # (1, 1, 1, S)
    dtype = model.params[model.src_embed_key].dtype
    x, _ = positional_forward(xp.asarray(embedded[None], dtype=dtype), model.positional_table)  # (1, S, D)
    # forward through layers 0 … layer, keeping each one's cache
    caches = []
    params = subtree(model.params, "encoder")
    for i in range(layer + 1):
        x, cache = encoder_layer_forward(x, subtree(params, f"layers.{i}"), config, mask, model.backend, None)
        caches.append(cache)
    # the attention sublayer of `layer`: its residual cache, and inside it multihead's
    residual = caches[layer].self_attention  # ResidualCache
    attention = residual.sublayer  # MultiheadCache
    q, k, probs = attention.q, attention.k, attention.probs  # (1, H, S, Dh) twice, (1, H, S, S)
    weight = float(to_numpy(probs[0, head, query, key]))
    # dA = onehot(h, q, k); the softmax backward with its one row-sum
    dprobs = xp.zeros_like(probs)  # (1, H, S, S)
    dprobs[0, head, query, key] = 1.0
    row_dot = (dprobs * probs).sum(axis=-1, keepdims=True)  # (1, H, S, 1)
    dscores = probs * (dprobs - row_dot)  # (1, H, S, S)
    scale = 1.0 / math.sqrt(q.shape[-1])
    dq = (dscores @ k) * scale  # (1, H, S, Dh)
    dk = (dscores.swapaxes(-1, -2) @ q) * scale  # (1, H, S, Dh)
    dh_q, _, _ = linear_backward(merge_heads(dq), attention.linear_q)  # (1, S, D)
    dh_k, _, _ = linear_backward(merge_heads(dk), attention.linear_k)  # (1, S, D)
    dh = dh_q + dh_k  # (1, S, D): the sublayer's input fed both queries and keys
    # in the forward pass this was: h = LayerNorm(x) (pre-norm) or h = x (post-norm)
    dx = residual.backend.layernorm_backward(dh, residual.norm)[0] if residual.pre_norm else dh  # (1, S, D)
    for i in reversed(range(layer)):
        dx, _ = encoder_layer_backward(dx, caches[i])  # (1, S, D)
    # x = e + PE: the gradient reaches e unchanged
    return weight, to_numpy(dx[0]).astype(np.float64)
