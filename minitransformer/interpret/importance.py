"""Head importance (Michel, Levy & Neubig, 2019): how much the loss cares about each head.

With a gate g_h on every head's output (gates.py; g = 1 is the trained model), the
importance of head h is the expected magnitude, over the sentences x of a data set, of the
gradient of that sentence's loss with respect to the gate,

    I_h = E_x |∂L(x)/∂g_h|       L(x) = the mean cross-entropy of x's reference, teacher-forced

a first-order estimate of how much the loss would change if the head were removed
(g_h: 1 → 0). Following Michel et al., each layer's scores are normalized by their L2 norm,
so layers compare by rank, not by scale:

    Î_h = I_h / ‖I_layer‖₂

The absolute value is taken per sentence, before the mean (a batch's summed gradient could
cancel between sentences). One batched backward still gives every sentence's gradient: at
g = 1 the gate's gradient is Σ A ⊙ ∂L/∂A over the head's weights (head_h = A_h·V_h), and
sentences never interact, so row b of that sum, times N_batch / N_b (the batch loss is the
mean over all N_batch target tokens, sentence b has N_b), is ∂L(x_b)/∂g_h.

    from minitransformer.interpret.importance import head_importance
    scores = head_importance(model, examples, pad_id=0)       # {stack: (L, H)}
"""

import numpy as np

from ..arrays import to_numpy
from ..batching import Batcher
from .gates import attention_gradients, gate_gradients, head_gates


def sentence_gate_gradients(model, batch):
    """A Batch -> {stack: (B, L, H)} ∂L(x_b)/∂g_h of each of its sentences, from one backward."""
    xp = model.xp
    tgt_out = xp.asarray(batch.tgt_out)  # (B, T)
    with head_gates(model):
        logits, cache = model.forward(xp.asarray(batch.src), xp.asarray(batch.tgt_in))  # (B, T, V)
        loss, cache_loss = model.backend.cross_entropy_forward(logits, tgt_out, model.config.pad_id, 0.0)
        model.backward(model.backend.cross_entropy_backward(cache_loss), cache)
        maps, dmaps, dgate = model.attention_maps(cache), attention_gradients(model), gate_gradients(model)
    tokens = to_numpy((tgt_out != model.config.pad_id).sum(axis=1)).astype(np.float64)  # (B,) N_b
    scale = tokens.sum() / np.maximum(tokens, 1.0)  # (B,) N_batch / N_b
    rows = {}
    for stack in maps:
        per_layer = [to_numpy((a * da).sum(axis=(2, 3))).astype(np.float64) for a, da in zip(maps[stack], dmaps[stack])]
        rows[stack] = np.stack(per_layer, axis=1) if per_layer else np.zeros((len(tokens), 0, model.config.n_heads))
        # the rows add up to the batch's own gate gradient, or the weights were not those that ran
        if not np.allclose(rows[stack].sum(axis=0), dgate[stack], rtol=1e-4, atol=1e-6 * (1 + np.abs(dgate[stack]).max())):
            raise ValueError("per-sentence head importance needs exact attention weights (head = A·V)")
        rows[stack] = rows[stack] * scale[:, None, None]  # (B, L, H)
    return rows


def head_importance(model, examples, pad_id, max_tokens=2048, progress=False, normalize=True):
    """examples [(source ids, target ids)] -> {stack: (L, H)} E_x |∂L(x)/∂g_h|, the mean over
    the sentences, normalized per layer (unless normalize=False).

    Target ids are the reference with <s>/</s> as the Batcher adds them; no smoothing, no
    dropout. progress: show a tqdm bar (one tick a batch)."""
    from tqdm import tqdm

    batcher = Batcher(examples, max_tokens, seed=0, pad_id=pad_id)
    batches = [batch for _, batch in batcher.iterate(epoch=0)]
    total, count = None, 0
    for batch in tqdm(batches, desc="head importance", unit="batch", disable=not progress):
        magnitude = {stack: np.abs(g).sum(axis=0) for stack, g in sentence_gate_gradients(model, batch).items()}
        total = magnitude if total is None else {s: total[s] + magnitude[s] for s in total}  # {stack: (L, H)}
        count += len(batch.src)
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


def read_importance(path, config):
    """heads.json of `minitransformer inspect heads` -> {"label": str, "importance": {stack: (L, H)}}
    for the HTML page (viz/html.py); a file that does not fit the model's heads is a ValueError."""
    import json
    from pathlib import Path

    from .gates import attention_layers

    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
        tables = report["importance"]
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{path} is not the heads.json of `minitransformer inspect heads` (no importance)") from None
    importance = {}
    for stack, prefixes in attention_layers(config).items():
        table = np.asarray(tables.get(stack, []), dtype=np.float64)
        if table.shape != (len(prefixes), config.n_heads):
            raise ValueError(f"{path}: {stack} importance has shape {table.shape}; the model's {stack} heads are "
                             f"({len(prefixes)}, {config.n_heads})")
        importance[stack] = table
    sentences, data = report.get("sentences"), report.get("data", "a data set")
    over = f"{sentences} sentences of {data}" if sentences else str(data)
    return {"label": f"over {over}, E_x |∂L(x) / ∂gate|, normalized per layer", "importance": importance}
