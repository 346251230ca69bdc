"""Evaluation during and after training: the loss per target token and corpus BLEU.

    from minitransformer.evaluate import EvalSet, corpus_bleu, mean_loss, translate_sentences
    valid = EvalSet.from_pairs("valid", pairs, tokenizer, max_len=64)
    hypotheses = translate_sentences(model, tokenizer, valid.sources)     # greedy, batched
    corpus_bleu(hypotheses, valid.references)                             # sacreBLEU, multi-reference
    mean_loss(model, valid.examples, tokenizer.pad_id, max_tokens=2048)   # no smoothing, no dropout
    evaluate(model, tokenizer, valid, max_tokens=2048, samples=3, say=print)  # {"loss", "bleu"}
    choose_final_weights(model, ring, lambda: evaluate(model, …)["bleu"])     # the last, or the average

BLEU is sacreBLEU's corpus BLEU, every hypothesis against all the references of its source
(a sentence of Tatoeba often has several translations).
"""

from dataclasses import dataclass

import sacrebleu

from .batching import Batcher, encode_pairs
from .checkpoint import average_checkpoints
from .data import group_references
from .decode import decode_batches

# sentences decoded together when measuring BLEU (more than translate's default: a
# validation set is many short sentences, and memory is not the user's)
DECODE_BATCH = 100


@dataclass
class EvalSet:
    """A valid or test set: every pair for the loss, distinct sources with all their
    references for BLEU."""

    name: str
    examples: list  # (source ids, target ids) of every pair that fits the model
    sources: list  # distinct source sentences, in file order
    references: list  # references[i]: every translation of sources[i]

    @classmethod
    def from_pairs(cls, name, pairs, tokenizer, max_len):
        examples, kept = encode_pairs(pairs, tokenizer, max_len, name=name)
        sources, references = group_references(kept)
        return cls(name, examples, sources, references)

    def subset(self, n_sources, tokenizer):
        """The first ``n_sources`` sources, and only the pairs of those (for quick evaluations)."""
        if n_sources is None or n_sources >= len(self.sources):
            return self
        sources, references = self.sources[:n_sources], self.references[:n_sources]
        examples = [
            (tokenizer.encode_src(source), tokenizer.encode_tgt(target))
            for source, targets in zip(sources, references)
            for target in targets
        ]
        return EvalSet(self.name, examples, sources, references)


def corpus_bleu(hypotheses, references):
    """sacreBLEU's corpus BLEU, each hypothesis against all its references.

    sacreBLEU takes references as streams (stream j holds every sentence's j-th reference);
    a sentence with fewer references gets None in the later streams, which sacreBLEU skips.
    """
    n_streams = max(len(refs) for refs in references)
    streams = [[refs[j] if j < len(refs) else None for refs in references] for j in range(n_streams)]
    # force: the toy corpus is already split at punctuation ("dort ."), which sacreBLEU would
    # warn about; its 13a tokenization leaves such text as it is, so the score is unaffected
    return float(sacrebleu.corpus_bleu(hypotheses, streams, force=True).score)


def translate_sentences(model, tokenizer, sentences, batch_size=DECODE_BATCH):
    """Greedy translations of ``sentences`` (strings), decoded in batches of similar length."""
    encoded = [tokenizer.encode_src(sentence)[: model.config.max_len] or [tokenizer.unk_id] for sentence in sentences]
    outputs = decode_batches(model, encoded, tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id, batch_size)
    return [tokenizer.decode_tgt(ids) for ids in outputs]


def mean_loss(model, examples, pad_id, max_tokens):
    """The plain cross-entropy per target token over ``examples`` (no smoothing, no dropout)."""
    if not examples:
        return float("nan")
    batcher = Batcher(examples, max_tokens, seed=0, pad_id=pad_id)
    total, tokens = 0.0, 0
    xp = model.xp
    for _, batch in batcher.iterate(epoch=0):
        loss = model.loss(xp.asarray(batch.src), xp.asarray(batch.tgt_in), xp.asarray(batch.tgt_out))
        total += loss * batch.n_tgt_tokens  # the model's loss is a mean: weight it back by tokens
        tokens += batch.n_tgt_tokens
    return total / tokens


def evaluate(model, tokenizer, eval_set, max_tokens, samples=0, say=print):
    """-> {"loss", "bleu"} of ``model`` on ``eval_set``, saying ``samples`` of its translations."""
    loss = mean_loss(model, eval_set.examples, tokenizer.pad_id, max_tokens)
    hypotheses = translate_sentences(model, tokenizer, eval_set.sources)
    bleu = corpus_bleu(hypotheses, eval_set.references)
    for source, references, hypothesis in list(zip(eval_set.sources, eval_set.references, hypotheses))[:samples]:
        say(f"  source:     {source}")
        say(f"  reference:  {references[0]}" + (f"  (+{len(references) - 1} more)" if len(references) > 1 else ""))
        say(f"  hypothesis: {hypothesis}")
    return {"loss": loss, "bleu": bleu}


def choose_final_weights(model, ring, score):
    """The final weights of a run: the average of the checkpoints of ``ring`` (paths, two or
    more) if it scores a better valid BLEU (``score()``, of the weights in ``model``) than
    the last weights, else the last ones. ``model`` is left holding the choice; returns
    what the metrics record of it."""
    last_params = {key: value.copy() for key, value in model.params.items()}
    bleu_last = score()
    for key, value in average_checkpoints(ring).items():
        model.params[key][...] = model.xp.asarray(value)
    bleu_averaged = score()
    final = {"final_weights": "last", "valid_subset_bleu_last": bleu_last, "valid_subset_bleu_averaged": bleu_averaged}
    if bleu_averaged > bleu_last:
        steps = ", ".join(path.name[5:].lstrip("0") for path in ring)
        final["final_weights"] = f"average of the last {len(ring)} checkpoints (steps {steps})"
    else:
        for key, value in last_params.items():
            model.params[key][...] = value
    return final


def final_scores(evaluate, valid, test_sets, samples, say):
    """The loss and BLEU of the end of a run, on the full valid set and every test set;
    ``evaluate(eval_set, samples)`` gives each {"loss", "bleu"} -> {"valid_loss", …, "test_bleu", …}."""
    say(f"Evaluating on the full valid set ({len(valid.sources)} sources):")
    result = evaluate(valid, samples=samples)
    scores = {"valid_loss": result["loss"], "valid_bleu": result["bleu"]}
    for name, eval_set in test_sets.items():
        say(f"Evaluating on {name} ({len(eval_set.sources)} sources):")
        result = evaluate(eval_set, samples=samples)
        scores[f"{name}_bleu"] = result["bleu"]
        scores[f"{name}_loss"] = result["loss"]
    return scores
