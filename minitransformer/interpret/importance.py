"""Head importance (Michel, Levy & Neubig, 2019): how much the loss cares about each head.

With a gate g_h on every head's output (gates.py; g = 1 is the trained model), the
importance of head h is the expected magnitude of the loss's gradient with respect to it,

    I_h = E_batch |∂L/∂g_h|          L = the mean cross-entropy of the reference, teacher-forced

a first-order estimate of how much the loss would change if the head were removed
(g_h: 1 → 0). Following Michel et al., each layer's scores are normalized by their L2 norm,
so layers compare by rank, not by scale:

    Î_h = I_h / ‖I_layer‖₂

    from minitransformer.interpret.importance import head_importance
    scores = head_importance(model, examples, pad_id=0)       # {stack: (L, H)}
"""

import numpy as np

from ..batching import Batcher
from .gates import gate_gradients, head_gates


def head_importance(model, examples, pad_id, max_tokens=2048, progress=False, normalize=True):
    """examples [(source ids, target ids)] -> {stack: (L, H)} importance, averaged over batches.

    Target ids are the reference with <s>/</s> as the Batcher adds them; no smoothing, no
    dropout. progress: show a tqdm bar (one tick a batch)."""
    from tqdm import tqdm

    batcher = Batcher(examples, max_tokens, seed=0, pad_id=pad_id)
    batches = [batch for _, batch in batcher.iterate(epoch=0)]
    total, count = None, 0
    xp = model.xp
    with head_gates(model):
        for batch in tqdm(batches, desc="head importance", unit="batch", disable=not progress):
            model.loss_and_grads(xp.asarray(batch.src), xp.asarray(batch.tgt_in), xp.asarray(batch.tgt_out))
            magnitude = {stack: np.abs(g) for stack, g in gate_gradients(model).items()}  # {stack: (L, H)}
            total = magnitude if total is None else {s: total[s] + magnitude[s] for s in total}
            count += 1
    scores = {stack: value / max(count, 1) for stack, value in total.items()}
    if normalize:
        scores = {stack: normalize_per_layer(value) for stack, value in scores.items()}
    return scores


def normalize_per_layer(scores):
    """(L, H) -> each row divided by its L2 norm (a zero row stays zero)."""
    norm = np.linalg.norm(scores, axis=1, keepdims=True)  # (L, 1)
    return scores / np.where(norm > 0, norm, 1.0)


def ranked_heads(scores):
    """{stack: (L, H)} -> [(stack, layer, head)] from the least to the most important."""
    flat = [(float(value), stack, layer, head)
            for stack, table in scores.items() for layer, row in enumerate(table) for head, value in enumerate(row)]
    return [(stack, layer, head) for _, stack, layer, head in sorted(flat)]
