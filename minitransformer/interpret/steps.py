"""One forward and one backward that explain every output step of one sentence at once.

Each gradient method asks about one output piece y_t at a time, through

    f_t(x) = log p(y_t | y_<t, x)

(the log-probability, not the logit: ∂ log p/∂z = onehot(y_t) − p says why y_t won; see
saliency.py). As in saliency.py, the sentence is copied T times into a batch and copy t
receives the gradient of f_t alone; copies never interact, so the gradients of copy t are
exactly those of f_t. With head gates on (gates.py) the same pass also gives ∂f_t/∂A for
every attention layer.

    from minitransformer.interpret.steps import explain_steps
    result = explain_steps(model, src_ids, output_ids, bos_id=2)
    result.cross[l]        (T, H, S)  cross-attention of step t (row t of copy t)
    result.dcross[l]       (T, H, S)  ∂f_t/∂A over the same weights
    result.encoder[l]      (H, S, S)  encoder self-attention (the same in every copy)
    result.dencoder[l]     (T, H, S, S)  ∂f_t/∂A of the encoder's weights
    result.dgate[stack]    (L, H)     ∂(Σ_t f_t)/∂g_h, the gates' gradient for the whole sentence
    result.dembedded       (T, S, D)  ∂f_t/∂e_s, e_s = Embed(x_s)·√D

Size letters: T output steps, S source pieces, D model width, H heads, L layers.
`forward_embedded` is model.forward with the source embeddings given instead of looked up,
for integrated gradients and the gradient of one attention weight.
"""

from typing import NamedTuple

import numpy as np

from ..arrays import to_numpy
from ..layers.encoder import encoder_forward
from ..layers.positional import positional_forward
from ..model import EmbedCache, EncodeCache, ForwardCache, local_mask, padding_mask
from ..params import subtree
from .gates import attention_gradients, gate_gradients, head_gates


class Steps(NamedTuple):
    log_probs: np.ndarray  # (T,) f_t = log p(y_t | y_<t, x)
    encoder: list  # [(H, S, S)] per encoder layer
    cross: list  # [(T, H, S)] per decoder layer
    decoder_self: list  # [(T, H, T)] per decoder layer
    dencoder: list  # [(T, H, S, S)]
    dcross: list  # [(T, H, S)]
    dgate: dict  # {stack: (L, H)} ∂(Σ_t f_t)/∂g: the gates' gradient summed over the copies
    dembedded: np.ndarray  # (T, S, D)
    embedded: np.ndarray  # (S, D)


def scaled_embedding(model, key, ids):
    """ids (L,) -> Embed(ids)·√D (L, D) float64, from the embedding matrix params[key]."""
    weight = to_numpy(model.params[key]).astype(np.float64)  # (V, D)
    return weight[np.asarray(ids)] * np.sqrt(weight.shape[1])


def source_embedding(model, src_ids):
    """src_ids (S,) -> e (S, D) float64: Embed(x_s)·√D, what the encoder adds PE to."""
    return scaled_embedding(model, model.src_embed_key, src_ids)


def target_embedding(model, tgt_in):
    """tgt_in (T,) -> u (T, D) float64: Embed(y_t)·√D, what the decoder adds PE to."""
    return scaled_embedding(model, model.tgt_embed_key, tgt_in)


def encoder_masks(model, src):
    """src (B, S) ids -> (src_mask (B, 1, 1, S), the encoder self-attention's mask): the
    padding, and with attention_window the band too, as model.encode builds them when
    the band is not a compiled kernel (these explanations run the reference layers)."""
    src_mask = padding_mask(src, model.config.pad_id)  # (B, 1, 1, S)
    if model.config.attention_window is None:
        return src_mask, src_mask
    length = src.shape[1]
    return src_mask, src_mask & local_mask(length, length, model.config.attention_window, model.xp)  # (B, 1, S, S)


def forward_embedded(model, src, embedded, tgt_in):
    """src (B, S) ids, embedded (B, S, D) = what Embed(src)·√D would be, tgt_in (B, T)
    -> logits (B, T, V), cache for model.backward (evaluation mode, no dropout).

    The same steps as model.encode after the lookup; model.backward then leaves
    ∂L/∂embedded in model.input_grads["src"].
    """
    xp, config = model.xp, model.config
    src = xp.asarray(src)
    src_mask, self_mask = encoder_masks(model, src)  # (B, 1, 1, S), (B, 1, 1, S) or (B, 1, S, S)
    weight = model.params[model.src_embed_key]
    x, _ = positional_forward(xp.asarray(embedded, dtype=weight.dtype), model.positional_table)  # (B, S, D)
    memory, cache_encoder = encoder_forward(
        x, subtree(model.params, "encoder"), config, self_mask, model.backend, None
    )  # (B, S, D)
    logits, cache_decode = model.decode(tgt_in, memory, src_mask)  # (B, T, V)
    # the lookup's cache, so that model.backward runs unchanged (its embedding gradient is unused)
    cache_embed = EmbedCache((src, weight.shape, float(np.sqrt(weight.shape[1]))), None)
    return logits, ForwardCache(EncodeCache(cache_embed, cache_encoder), cache_decode)


def step_log_probs_backward(model, logits, output_ids, rows, steps):
    """logits (N, T, V); copy rows[n] explains step steps[n] -> f (N,), dlogits (N, T, V)."""
    xp = model.xp
    rows, steps = xp.asarray(rows), xp.asarray(steps)
    step_logits = logits[rows, steps].astype(np.float64)  # (N, V)
    shifted = step_logits - step_logits.max(axis=1, keepdims=True)  # (N, V)
    log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))  # (N, V)
    targets = xp.asarray(np.asarray(output_ids))[steps]  # (N,)
    f = log_probs[xp.arange(len(rows)), targets]  # (N,)
    # ∂ log p(y_t)/∂z_t = onehot(y_t) − p_t, at position t of its copy, zero elsewhere
    dstep = -xp.exp(log_probs)  # (N, V)
    dstep[xp.arange(len(rows)), targets] += 1.0
    dlogits = xp.zeros_like(logits)  # (N, T, V)
    dlogits[rows, steps] = dstep.astype(logits.dtype)
    return to_numpy(f), dlogits


def decoder_input(output_ids, bos_id):
    """(T,) produced pieces -> (T,) what the decoder reads: <s> y_0 … y_{T-2}."""
    return np.concatenate([[bos_id], np.asarray(output_ids, dtype=np.int64)[:-1]])


def explain_steps(model, src_ids, output_ids, bos_id):
    """src_ids (S,), output_ids (T,) (</s> included when produced) -> Steps."""
    xp = model.xp
    src_ids = np.asarray(src_ids, dtype=np.int64)  # (S,)
    output_ids = np.asarray(output_ids, dtype=np.int64)  # (T,)
    n_steps = len(output_ids)
    src = np.tile(src_ids, (n_steps, 1))  # (T, S): copy t explains step t
    tgt_in = np.tile(decoder_input(output_ids, bos_id), (n_steps, 1))  # (T, T)
    steps = np.arange(n_steps)
    with head_gates(model):
        logits, cache = model.forward(xp.asarray(src), xp.asarray(tgt_in))  # (T, T, V)
        log_probs, dlogits = step_log_probs_backward(model, logits, output_ids, steps, steps)
        model.backward(dlogits, cache)
        maps = model.attention_maps(cache)
        dmaps = attention_gradients(model)
        dgate = gate_gradients(model)
    dembedded = to_numpy(model.input_grads["src"]).astype(np.float64)  # (T, S, D)
    host = [[to_numpy(a).astype(np.float64) for a in maps[stack]] for stack in ("encoder", "cross", "decoder_self")]
    dhost = [[to_numpy(a).astype(np.float64) for a in dmaps[stack]] for stack in ("encoder", "cross")]
    return Steps(
        log_probs=log_probs,
        encoder=[a[0] for a in host[0]],  # (H, S, S)
        cross=[a[steps, :, steps] for a in host[1]],  # (T, H, S): row t of copy t
        decoder_self=[a[steps, :, steps] for a in host[2]],  # (T, H, T)
        dencoder=dhost[0],  # (T, H, S, S)
        dcross=[a[steps, :, steps] for a in dhost[1]],  # (T, H, S)
        dgate=dgate,
        dembedded=dembedded,
        embedded=source_embedding(model, src_ids),
    )

