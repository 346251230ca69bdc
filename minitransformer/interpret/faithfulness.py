"""Faithfulness by deletion: if an explanation is right, removing the source words it ranks
highest should hurt the word it explains the most (Samek et al., 2017; DeYoung et al., 2020).

For French word j (teacher-forced, its reference prefix kept) and a method's row M[j, :],
delete the k English words with the highest scores and measure the word's probability

    p_j(k) = Π over the pieces of word j of p(piece | prefix, x without those k words)

A word is deleted by turning its pieces into padding, which every attention layer masks
out as a key (the positions of the other words do not move). The deletion curve is the
mean drop Δ(k) = E_j [p_j(0) − p_j(k)], k = 1 … K, and its area AOPC = (1/K) Σ_k Δ(k)
(the "area over the perturbation curve"): higher is more faithful. A random ranking is the
floor to beat.

    from minitransformer.interpret.faithfulness import deletion_drops
"""

import numpy as np

from ..arrays import to_numpy
from .steps import decoder_input


def word_log_probs(model, sources, output_ids, target_index, bos_id):
    """sources (N, S) ids, one reference output_ids (T,) -> (N, T') log p of each French word."""
    xp = model.xp
    n_rows = len(sources)
    tgt_in = np.tile(decoder_input(output_ids, bos_id), (n_rows, 1))  # (N, T)
    logits, _ = model.forward(xp.asarray(sources), xp.asarray(tgt_in))  # (N, T, V)
    logits = to_numpy(logits).astype(np.float64)
    shifted = logits - logits.max(axis=2, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=2, keepdims=True))  # (N, T, V)
    piece = log_probs[:, np.arange(len(output_ids)), np.asarray(output_ids)]  # (N, T)
    n_words = int(target_index.max()) + 1
    return np.stack([piece[:, target_index == j].sum(axis=1) for j in range(n_words)], axis=1)  # (N, T')


def deletion_drops(model, explained, scores, max_deleted, bos_id, pad_id):
    """scores {method: (T', S')} -> {method: (T', K)} the drop p_j(0) − p_j(k), k = 1 … K."""
    source_ids = np.asarray(explained.source_ids)
    source_index, target_index = explained.source_index, explained.target_index
    n_words_fr, n_words_en = scores[next(iter(scores))].shape
    rows, keys = [source_ids], []
    for method, matrix in scores.items():
        for j in range(n_words_fr):
            ranking = np.argsort(-matrix[j], kind="stable")
            for k in range(1, max_deleted + 1):
                deleted = np.isin(source_index, ranking[:k])  # (S,) the pieces of the top-k words
                rows.append(np.where(deleted, pad_id, source_ids))
                keys.append((method, j, k))
    log_p = word_log_probs(model, np.stack(rows), explained.output_ids, target_index, bos_id)  # (N, T')
    full = np.exp(log_p[0])  # (T',)
    drops = {method: np.zeros((n_words_fr, max_deleted)) for method in scores}
    for row, (method, j, k) in enumerate(keys, start=1):
        drops[method][j, k - 1] = full[j] - np.exp(log_p[row, j])
    return drops
