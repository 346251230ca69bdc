"""Head ablation and pruning curves: BLEU without some heads (Michel et al., 2019; Voita et
al., 2019).

A head is removed by zeroing its rows of W_o (gates.heads_removed), which is the same as
setting its gate to 0 and works on every decoder path, the cached one too. Then

    ablation[stack][l, h] = BLEU(model without head (l, h)) − BLEU(model)
    pruning curve         = BLEU against the fraction of all heads removed, heads taken in
                            one order: least important first (importance.py), or random

The BLEU is corpus BLEU of greedy translations against all references (evaluate.py's
corpus_bleu, sacreBLEU).

    from minitransformer.interpret.ablation import ablation_table, pruning_curve
"""

import numpy as np

from ..evaluate import corpus_bleu, translate_sentences
from .gates import attention_layers, heads_removed


def bleu_without(model, tokenizer, sources, references, heads=()):
    """BLEU of greedy translations of `sources` with `heads` [(stack, layer, head)] removed."""
    with heads_removed(model, heads):
        return corpus_bleu(translate_sentences(model, tokenizer, sources), references)


def all_heads(config):
    return [(stack, layer, head) for stack, prefixes in attention_layers(config).items()
            for layer in range(len(prefixes)) for head in range(config.n_heads)]


def ablation_table(model, tokenizer, sources, references, progress=False):
    """-> (BLEU of the whole model, {stack: (L, H) BLEU change with that one head removed})."""
    from tqdm import tqdm

    base = bleu_without(model, tokenizer, sources, references)
    layers = attention_layers(model.config)
    table = {stack: np.zeros((len(prefixes), model.config.n_heads)) for stack, prefixes in layers.items()}
    for stack, layer, head in tqdm(all_heads(model.config), desc="ablation", unit="head", disable=not progress):
        table[stack][layer, head] = bleu_without(model, tokenizer, sources, references, [(stack, layer, head)]) - base
    return base, table


def pruning_curve(model, tokenizer, sources, references, order, fractions, progress=False):
    """order [(stack, layer, head)] the removal order -> [(fraction, heads removed, BLEU)]."""
    from tqdm import tqdm

    curve = []
    for fraction in tqdm(fractions, desc="pruning", unit="point", disable=not progress):
        removed = int(round(fraction * len(order)))
        curve.append((float(fraction), removed, bleu_without(model, tokenizer, sources, references, order[:removed])))
    return curve


def random_order(config, seed=0):
    heads = all_heads(config)
    return [heads[i] for i in np.random.default_rng(seed).permutation(len(heads))]
