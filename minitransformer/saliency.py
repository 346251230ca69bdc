"""Gradient × input saliency: how much each source piece moved each output piece's choice.

Attention weights say where a head looked, not what the decision depended on. Attribution
asks the second question with the model's own backward pass. For output piece y_t,

    G[t, s] = Σ_D  ∂ log p(y_t | y_<t, x) / ∂e_s  ⊙  e_s          e_s = Embed(x_s)·√D

is the first-order change of the log-probability of y_t when source embedding e_s is
scaled from 0 to itself (a Taylor term), so it is signed and in units of log-probability.
The displayed saliency is its magnitude, normalized per output piece so that each row sums
to 1 like an attention row:

    saliency[t, s] = |G[t, s]| / Σ_s' |G[t, s']|

Why the log-probability and not the logit: ∂ log p / ∂z = onehot(y_t) − p, which explains
why y_t won over the other pieces; the raw logit's gradient also carries whatever raises
every logit at once, which changes nothing. Why e_s without the positional encoding: what
we attribute is the choice of the source token; PE(s) is the same for every sentence.

All T rows come from ONE forward and backward pass: the sentence is copied T times into a
batch, and copy t receives the gradient of step t alone, dlogits[t, t] = onehot(y_t) − p_t.
Copies do not interact (nothing mixes the batch axis), so input_grads["src"][t] is exactly
the gradient of log p(y_t). model.backward overwrites model.grads, harmless at inference.

    from minitransformer.saliency import source_saliency
    saliency = source_saliency(model, src_ids, output_ids, bos_id=2)   # (T, S)
"""

import math

import numpy as np

from .arrays import to_numpy
from .decode import log_softmax


def gradient_x_input(model, src_ids, output_ids, bos_id):
    """src_ids (S,), output_ids (T,) the produced pieces (</s> included when produced)
    -> G (T, S) float64, signed: Σ_D ∂log p(y_t)/∂e_s ⊙ e_s."""
    xp = model.xp
    src_ids = np.asarray(src_ids, dtype=np.int64)  # (S,)
    output_ids = np.asarray(output_ids, dtype=np.int64)  # (T,)
    n_steps, src_len = len(output_ids), len(src_ids)
    if n_steps == 0 or src_len == 0:
        return np.zeros((n_steps, src_len))
    decoder_input = np.concatenate([[bos_id], output_ids[:-1]])  # (T,): <s> y_0 … y_{T-2}
    # copy t of the batch explains step t
    src = xp.asarray(np.tile(src_ids, (n_steps, 1)))  # (T, S)
    tgt_in = xp.asarray(np.tile(decoder_input, (n_steps, 1)))  # (T, T)
    logits, cache = model.forward(src, tgt_in)  # (T, T, V), evaluation mode
    steps = xp.arange(n_steps)
    step_logits = logits[steps, steps]  # (T, V): copy t at position t
    probs = xp.exp(log_softmax(step_logits))  # (T, V)
    # ∂ log p(y_t) / ∂z_t = onehot(y_t) − p_t, at position t of copy t, zero elsewhere
    dstep = -probs  # (T, V)
    dstep[steps, xp.asarray(output_ids)] += 1.0
    dlogits = xp.zeros_like(logits)  # (T, T, V)
    dlogits[steps, steps] = dstep.astype(logits.dtype)
    model.backward(dlogits, cache)
    dembedded = to_numpy(model.input_grads["src"]).astype(np.float64)  # (T, S, D)
    embedding = to_numpy(model.params[model.src_embed_key]).astype(np.float64)  # (V_src, D)
    embedded = embedding[src_ids] * math.sqrt(embedding.shape[1])  # (S, D): e_s = Embed(x_s)·√D
    return (dembedded * embedded[None]).sum(axis=2)  # (T, S)


def source_saliency(model, src_ids, output_ids, bos_id):
    """-> saliency (T, S): |G| normalized so that each row sums to 1 (a zero row stays 0)."""
    magnitude = np.abs(gradient_x_input(model, src_ids, output_ids, bos_id))  # (T, S)
    row_sum = magnitude.sum(axis=1, keepdims=True)  # (T, 1)
    return magnitude / np.where(row_sum > 0, row_sum, 1.0)
