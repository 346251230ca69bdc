"""Batches of similar-length sentence pairs under a token budget, resumable mid-epoch.

Shapes: B batch, S source length, T target length (+1 for bos or eos).

An example is a pair of id lists (source ids, target ids) with no special tokens. A batch
holds three padded integer arrays, built once when the batch is made:

    src     (B, S)   the source ids                    the 3 in "le chat ."
    tgt_in  (B, T)   bos + target ids: what the decoder reads       [bos, le, chat, .]
    tgt_out (B, T)   target ids + eos: what it must predict         [le, chat, ., eos]

The model derives its masks from the padding in these arrays (``padding_mask(src, pad)``
for the keys, plus the causal mask on the target), so the ids are all a batch must carry.

The token budget: a batch costs what the model actually computes on, padding included,

    cost = B · (S + T)            (longest source + longest decoder sequence, times rows)

and every batch has cost ≤ max_tokens (a single pair longer than the budget becomes a batch
of one). Sorting pairs by length before cutting keeps the padding small, so the budget is
spent on real tokens. Each epoch is a pure function of (seed, epoch):

    1. shuffle the examples with the epoch's generator (so ties in length break randomly
       and batches differ from one epoch to the next),
    2. stable-sort them by length, cut them into batches under the budget,
    3. shuffle the order of the batches (so training does not see lengths in order).

So the position in the data is just (epoch, index in that epoch's batch order), and a
resumed run rebuilds the same batches from the seed.
"""

import warnings
from dataclasses import dataclass

import numpy as np

from .tokenizer import Tokenizer


@dataclass
class Batch:
    src: np.ndarray  # (B, S) int64, padded with pad_id
    tgt_in: np.ndarray  # (B, T) int64: bos + target, padded
    tgt_out: np.ndarray  # (B, T) int64: target + eos, padded
    indices: np.ndarray  # (B,) which examples these rows are
    n_src_tokens: int  # non-pad source tokens
    n_tgt_tokens: int  # non-pad target tokens (target + eos)

    @property
    def size(self):
        return self.src.shape[0]


def pad_sequences(sequences, pad_id):
    """A list of id lists -> (B, L) int64 array, right-padded with ``pad_id``."""
    length = max((len(seq) for seq in sequences), default=0)
    out = np.full((len(sequences), max(length, 1)), pad_id, dtype=np.int64)  # (B, L)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = seq
    return out


def encode_pairs(pairs, tokenizer, max_len, name="data"):
    """(source, target) strings -> examples (source ids, target ids), dropping pairs that
    do not fit the model: the source needs len ≤ max_len positions, the target len + 1
    (for bos/eos). Dropped pairs are counted in one warning. Returns (examples, kept_pairs).
    """
    examples, kept = [], []
    too_long = 0
    for source, target in pairs:
        src_ids, tgt_ids = tokenizer.encode_src(source), tokenizer.encode_tgt(target)
        if len(src_ids) > max_len or len(tgt_ids) + 1 > max_len or not src_ids:
            too_long += 1
            continue
        examples.append((src_ids, tgt_ids))
        kept.append((source, target))
    if too_long:
        warnings.warn(
            f"{name}: skipped {too_long} of {len(pairs)} pair(s) longer than the model's "
            f"{max_len} positions (or empty once encoded)",
            stacklevel=2,
        )
    return examples, kept


class Batcher:
    """Cuts ``examples`` into batches of at most ``max_tokens`` padded tokens."""

    # the special ids: the tokenizer's (every tokenizer has the same)
    def __init__(self, examples, max_tokens, seed=0, pad_id=Tokenizer.pad_id, bos_id=Tokenizer.bos_id,
                 eos_id=Tokenizer.eos_id):
        if not examples:
            raise ValueError("no examples to batch")
        self.examples = examples
        self.max_tokens = int(max_tokens)
        self.seed = int(seed)
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.src_lengths = np.array([len(src) for src, _ in examples])  # (N,)
        self.tgt_lengths = np.array([len(tgt) + 1 for _, tgt in examples])  # (N,) with bos/eos
        self._cached_epoch = None

    def _epoch_rng(self, epoch):
        # one independent stream per (seed, epoch): epoch e never depends on epochs before it
        return np.random.default_rng([self.seed, epoch])

    def epoch_batches(self, epoch):
        """The batches of ``epoch`` (a list of index arrays), in the order they are trained."""
        if self._cached_epoch is not None and self._cached_epoch[0] == epoch:
            return self._cached_epoch[1]
        rng = self._epoch_rng(epoch)
        order = rng.permutation(len(self.examples))  # (N,)
        # sort by target length, then source length; stable, so the shuffle breaks ties
        order = order[np.lexsort((self.src_lengths[order], self.tgt_lengths[order]))]
        batches, start = [], 0
        while start < len(order):
            longest_src = longest_tgt = 0
            end = start
            while end < len(order):
                index = order[end]
                new_src = max(longest_src, self.src_lengths[index])
                new_tgt = max(longest_tgt, self.tgt_lengths[index])
                if end > start and (end - start + 1) * (new_src + new_tgt) > self.max_tokens:
                    break
                longest_src, longest_tgt = new_src, new_tgt
                end += 1
            batches.append(order[start:end])
            start = end
        batches = [batches[i] for i in rng.permutation(len(batches))]
        self._cached_epoch = (epoch, batches)
        return batches

    def make_batch(self, indices):
        """Example indices -> a Batch of padded arrays."""
        sources = [self.examples[i][0] for i in indices]
        targets = [self.examples[i][1] for i in indices]
        src = pad_sequences(sources, self.pad_id)  # (B, S)
        tgt_in = pad_sequences([[self.bos_id] + t for t in targets], self.pad_id)  # (B, T)
        tgt_out = pad_sequences([t + [self.eos_id] for t in targets], self.pad_id)  # (B, T)
        return Batch(
            src=src,
            tgt_in=tgt_in,
            tgt_out=tgt_out,
            indices=np.asarray(indices),
            n_src_tokens=int(sum(len(s) for s in sources)),
            n_tgt_tokens=int(sum(len(t) + 1 for t in targets)),
        )

    def batches_per_epoch(self, epoch=0):
        return len(self.epoch_batches(epoch))

    def iterate(self, epoch, start=0):
        """Yield (index, Batch) for ``epoch`` from batch ``start`` on: (epoch, index + 1) is
        the position to save after training on a batch."""
        batches = self.epoch_batches(epoch)
        for index in range(start, len(batches)):
            yield index, self.make_batch(batches[index])
