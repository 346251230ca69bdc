"""Every method scored on a corpus with gold alignments: the AER tables and deletion
curves of chapter 11, shared by bench/bench_interpret.py and `minitransformer inspect`.

    from minitransformer.interpret.evaluate import read_aligned_pairs, score_alignments
    pairs, gold = read_aligned_pairs("data/toy-test.tsv", "data/toy-test.align")
    report = score_alignments(model, tokenizer, pairs[:300], gold[:300])
    report["aer"]["attention"], report["head_aer"]["cross"]     # corpus AER; (L, H)
"""

import numpy as np

from .aer import alignment_error_rate, argmax_alignment, read_alignments
from .faithfulness import deletion_drops
from .integrated_gradients import DEFAULT_STEPS
from .methods import METHODS, explain_pair
from .words import WordMismatch

FAITHFULNESS_METHODS = ("attention", "rollout", "gradient × input", "integrated gradients")


class CorpusError(ValueError):
    """A sentence file that cannot be read or does not fit its alignments."""


def read_pairs(path):
    """An English<TAB>French file -> [(english, french)]; a CorpusError names a bad line."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as error:
        raise CorpusError(f"cannot read {path}: {error.strerror}") from None
    pairs = []
    for number, line in enumerate(lines, 1):
        columns = line.split("\t")
        if len(columns) < 2 or not columns[0].strip() or not columns[1].strip():
            raise CorpusError(f"{path}:{number}: expected English<TAB>French")
        pairs.append((columns[0], columns[1]))
    return pairs


def read_aligned_pairs(tsv_path, align_path):
    """-> pairs [(english, french)], gold [{(i, j)}], one per line of both files."""
    pairs = read_pairs(tsv_path)
    try:
        return pairs, read_alignments(align_path, pairs)
    except OSError as error:
        raise CorpusError(f"cannot read {align_path}: {error.strerror}") from None


def score_alignments(model, tokenizer, pairs, gold, ig_steps=DEFAULT_STEPS, faithfulness_k=3, progress=False):
    """Every method on every pair, against the gold links.

    Returns {"aer": {method: AER}, "head_aer": (L, H) for each cross-attention head,
    "best_head": (layer, head, AER), "aopc": {method: AOPC}, "deletion": {method: [Δ(k)]},
    "ig_completeness": [gap per sentence], "sentences": n, "skipped": n}."""
    from tqdm import tqdm

    predicted, heads_predicted, sure = {}, None, []
    drops = {method: [] for method in (*FAITHFULNESS_METHODS, "random")}
    gaps, skipped = [], 0
    rng = np.random.default_rng(0)
    for (english, french), links in tqdm(list(zip(pairs, gold)), desc="explain", unit="pair", disable=not progress):
        try:
            explained = explain_pair(model, tokenizer, english, french, ig_steps=ig_steps)
        except WordMismatch:  # an <unk> piece that hides a word boundary: nothing to score
            skipped += 1
            continue
        sure.append(links)
        for method, matrix in explained.methods.items():
            predicted.setdefault(method, []).append(argmax_alignment(matrix))
        n_layers, n_heads = explained.heads.shape[:2]
        if heads_predicted is None:
            heads_predicted = [[[] for _ in range(n_heads)] for _ in range(n_layers)]
        for layer in range(n_layers):
            for head in range(n_heads):
                heads_predicted[layer][head].append(argmax_alignment(explained.heads[layer, head]))
        scores = {method: explained.methods[method] for method in FAITHFULNESS_METHODS}
        scores["random"] = rng.random(scores["attention"].shape)
        k = min(faithfulness_k, len(explained.english))
        for method, table in deletion_drops(model, explained, scores, k, tokenizer.bos_id, model.config.pad_id).items():
            drops[method].append(np.pad(table, ((0, 0), (0, faithfulness_k - k)), constant_values=np.nan))
        gaps.append(explained.ig_completeness)
    aer = {method: alignment_error_rate(links, sure) for method, links in predicted.items()}
    head_aer = np.array([[alignment_error_rate(h, sure) for h in layer] for layer in heads_predicted])
    best = np.unravel_index(np.argmin(head_aer), head_aer.shape)
    deletion = {method: np.nanmean(np.concatenate(tables), axis=0).tolist() for method, tables in drops.items()}
    return {
        "aer": {method: aer[method] for method in (*METHODS, *sorted(set(aer) - set(METHODS)))},
        "head_aer": head_aer.tolist(),
        "best_head": (int(best[0]), int(best[1]), float(head_aer[best])),
        "deletion": deletion,
        "aopc": {method: float(np.mean(curve)) for method, curve in deletion.items()},
        "ig_completeness": gaps,
        "sentences": len(sure),
        "skipped": skipped,
    }


def collect_head_maps(model, tokenizer, pairs, stack):
    """The self-attention maps of every head of `stack` ("encoder" or "decoder_self") on
    `pairs` (teacher-forced) -> ({"enc L0H1": [sentences] of (Q, K)}, punctuation [(K,) bool]).

    Punctuation marks the keys that are "." or "?" pieces, and for the decoder also <s>:
    with the last position, they make the "eos/punct" pattern (clustering.py)."""
    if stack not in ("encoder", "decoder_self"):
        raise ValueError(f"heads of {stack!r} have queries and keys of two sentences: cluster encoder or decoder_self")
    short = {"encoder": "enc", "decoder_self": "dec"}[stack]
    maps, punctuation = {}, []
    xp = model.xp
    for english, french in pairs:
        source = [int(i) for i in tokenizer.encode_src(english)]
        target = [tokenizer.bos_id] + [int(i) for i in tokenizer.encode_tgt(french)]
        _, cache = model.forward(xp.asarray([source]), xp.asarray([target]))
        layers = model.attention_maps(cache)[stack]
        pieces = tokenizer.src_pieces(source) if stack == "encoder" else ["<s>"] + tokenizer.tgt_pieces(target[1:])
        punctuation.append(np.array([p.strip("▁") in (".", "?", "<s>") for p in pieces]))
        for layer, probs in enumerate(layers):
            for head in range(probs.shape[1]):
                maps.setdefault(f"{short} L{layer}H{head}", []).append(np.asarray(probs[0, head], dtype=np.float64))
    return maps, punctuation
