"""Every method on one sentence pair, each as a word-level (T', S') matrix.

The French side is the reference, teacher-forced (as attention-based aligners are scored):
the model reads <s> y_0 … and each step's output is the reference piece, so the rows are
the French words the gold alignment names. Pieces become words by words.py's rule.

    method                        what a row holds for French word j
    attention                     cross-attention, mean over heads and decoder layers
    attention L<l>                the head mean of decoder layer l
    attention L<l>H<h>            one head (in "heads", (L, H, T', S'))
    rollout                       cross-attention pushed through the encoder's rollout
    gradient-weighted attention   E_h (∂f/∂A ⊙ A)⁺ over the cross-attention
    gradient × input              |Σ_D ∂f/∂e ⊙ e|, normalized per row
    integrated gradients          |IG|, normalized per row (baseline 0, m steps)

    from minitransformer.interpret.methods import explain_pair
    explained = explain_pair(model, tokenizer, "the black cat sleeps .", "le chat noir dort .")
"""

from typing import NamedTuple

import numpy as np

from .grad_attention import gradient_weighted_attention, normalize_rows
from .integrated_gradients import DEFAULT_STEPS, completeness_gap, integrated_gradients
from .raw import raw_attention
from .rollout import rollout
from .steps import explain_steps
from .words import reduce_to_words, word_index

METHODS = ("attention", "rollout", "gradient-weighted attention", "gradient × input", "integrated gradients")


class Explained(NamedTuple):
    english: list  # (S',) words
    french: list  # (T',) words
    methods: dict  # {name: (T', S')}
    heads: np.ndarray  # (L, H, T', S') raw cross-attention per head
    source_ids: list
    output_ids: list  # the reference pieces and </s>
    source_index: np.ndarray  # (S,) the English word of each source piece
    target_index: np.ndarray  # (T,) the French word of each output piece, −1 for </s>
    ig_completeness: float  # integrated_gradients.completeness_gap of this pair


def explain_pair(model, tokenizer, english, french, ig_steps=DEFAULT_STEPS):
    """-> Explained: every method on the pair, reduced to words."""
    source_ids = [int(i) for i in tokenizer.encode_src(english)]
    output_ids = [int(i) for i in tokenizer.encode_tgt(french)] + [tokenizer.eos_id]
    english_words, french_words = english.split(), french.split()
    source_index = word_index(tokenizer.src_pieces(source_ids), len(english_words))
    target_index = word_index(tokenizer.tgt_pieces(output_ids), len(french_words))

    def words(matrix):  # (T, S) pieces -> (T', S') words
        return reduce_to_words(matrix, target_index, source_index)

    steps = explain_steps(model, source_ids, output_ids, tokenizer.bos_id)
    raw = raw_attention(steps)
    gradient_x_input = (steps.dembedded * steps.embedded[None]).sum(axis=2)  # (T, S)
    ig, f_input, f_baseline = integrated_gradients(model, source_ids, output_ids, tokenizer.bos_id, steps=ig_steps)
    weighted = gradient_weighted_attention(steps)
    methods = {
        "attention": words(raw["mean"]),
        "rollout": words(rollout(steps)),
        "gradient-weighted attention": words(weighted["mean"]),
        "gradient × input": normalize_rows(words(np.abs(gradient_x_input))),
        "integrated gradients": normalize_rows(words(np.abs(ig))),
    }
    for layer, matrix in enumerate(raw["layer"]):
        methods[f"attention L{layer}"] = words(matrix)
    for layer, matrix in enumerate(weighted["layer"]):
        methods[f"gradient-weighted attention L{layer}"] = words(matrix)
    heads = np.array([[words(head) for head in layer] for layer in raw["head"]])  # (L, H, T', S')
    return Explained(english_words, french_words, methods, heads, source_ids, output_ids, source_index, target_index,
                     completeness_gap(ig, f_input, f_baseline))


def piece_views(model, src_ids, output_ids, bos_id, ig_steps=DEFAULT_STEPS):
    """The views the attention trace keeps beside the weights, over pieces, not words:
    -> ({"rollout": (T, S), "integrated gradients": (T, S) |IG| per row}, {stack: (L, H)}
    head importance for this sentence, |∂ log p(output)/∂g_h| normalized per layer)."""
    from .importance import normalize_per_layer
    from .rollout import rollout

    steps = explain_steps(model, src_ids, output_ids, bos_id)
    ig, _, _ = integrated_gradients(model, src_ids, output_ids, bos_id, steps=ig_steps)
    views = {"rollout": rollout(steps), "integrated gradients": normalize_rows(np.abs(ig))}
    return views, {stack: normalize_per_layer(np.abs(value)) for stack, value in steps.dgate.items()}
