"""Batching: the token budget, each pair once per epoch, a deterministic shuffle, padding
and masks, and resuming in the middle of an epoch."""

import numpy as np
import pytest

from minitransformer.batching import Batcher, encode_pairs, pad_sequences
from minitransformer.model import causal_mask, padding_mask

PAD, BOS, EOS = 0, 2, 3


def random_examples(n=300, seed=0, max_len=20):
    rng = np.random.default_rng(seed)
    return [
        (list(rng.integers(4, 50, rng.integers(1, max_len))), list(rng.integers(4, 50, rng.integers(1, max_len))))
        for _ in range(n)
    ]


@pytest.mark.parametrize("max_tokens", [40, 150, 1000])
def test_every_batch_respects_the_token_budget(max_tokens):
    batcher = Batcher(random_examples(), max_tokens, seed=0)
    for epoch in range(2):
        for _, batch in batcher.iterate(epoch):
            batch_size, src_len = batch.src.shape
            tgt_len = batch.tgt_in.shape[1]
            assert batch_size * (src_len + tgt_len) <= max_tokens


def test_budget_is_well_used():
    # sorting by length should leave little padding: most of the budget is real tokens
    batcher = Batcher(random_examples(2000), 500, seed=0)
    real = padded = 0
    for _, batch in batcher.iterate(0):
        real += batch.n_src_tokens + batch.n_tgt_tokens
        padded += batch.src.size + batch.tgt_out.size
    assert real / padded > 0.8


def test_a_pair_longer_than_the_budget_is_a_batch_of_one():
    examples = [([5] * 30, [6] * 30), ([5, 6], [7])]
    batcher = Batcher(examples, max_tokens=20, seed=0)
    sizes = sorted(len(indices) for indices in batcher.epoch_batches(0))
    assert sizes == [1, 1]


def test_every_pair_appears_exactly_once_per_epoch():
    examples = random_examples(257)
    batcher = Batcher(examples, 120, seed=3)
    for epoch in range(3):
        seen = np.concatenate([batch.indices for _, batch in batcher.iterate(epoch)])
        assert sorted(seen.tolist()) == list(range(len(examples)))


def test_shuffle_is_deterministic_from_the_seed_and_differs_between_epochs():
    examples = random_examples(200)

    def order(seed, epoch):
        return [indices.tolist() for indices in Batcher(examples, 100, seed=seed).epoch_batches(epoch)]

    assert order(seed=7, epoch=0) == order(seed=7, epoch=0)
    assert order(seed=7, epoch=2) == order(seed=7, epoch=2)
    assert order(seed=7, epoch=0) != order(seed=7, epoch=1)
    assert order(seed=7, epoch=0) != order(seed=8, epoch=0)
    # an epoch does not depend on having built the ones before it (what makes resuming cheap)
    fresh = Batcher(examples, 100, seed=7)
    assert [i.tolist() for i in fresh.epoch_batches(2)] == order(seed=7, epoch=2)


def test_batches_are_not_in_length_order():
    batcher = Batcher(random_examples(1000), 100, seed=0)
    widths = [batch.tgt_in.shape[1] for _, batch in batcher.iterate(0)]
    assert widths != sorted(widths) and widths != sorted(widths, reverse=True)


def test_padding_bos_eos_and_masks():
    examples = [([11, 12, 13], [21, 22]), ([14], [23, 24, 25, 26]), ([15, 16], [27])]
    batcher = Batcher(examples, max_tokens=10_000, seed=0, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    (_, batch), = list(batcher.iterate(0))
    assert batch.src.dtype == batch.tgt_in.dtype == batch.tgt_out.dtype == np.int64
    assert batch.src.shape == (3, 3) and batch.tgt_in.shape == batch.tgt_out.shape == (3, 5)
    for row, index in enumerate(batch.indices):
        src, tgt = examples[index]
        assert batch.src[row].tolist() == src + [PAD] * (3 - len(src))
        assert batch.tgt_in[row].tolist() == [BOS] + tgt + [PAD] * (4 - len(tgt))
        assert batch.tgt_out[row].tolist() == tgt + [EOS] + [PAD] * (4 - len(tgt))
        # the decoder reads token t and predicts token t+1: tgt_out is tgt_in shifted left
        assert batch.tgt_in[row, 1 : len(tgt) + 1].tolist() == batch.tgt_out[row, : len(tgt)].tolist()
    assert batch.n_src_tokens == 6 and batch.n_tgt_tokens == 7 + 3
    # the model's masks, derived from the padding: keys are real tokens, no future positions
    src_mask = padding_mask(batch.src, PAD)  # (B, 1, 1, S)
    for row, index in enumerate(batch.indices):
        assert src_mask[row, 0, 0].tolist() == [i < len(examples[index][0]) for i in range(3)]
    self_mask = causal_mask(5) & padding_mask(batch.tgt_in, PAD)  # (B, 1, T, T)
    row = int(np.flatnonzero(batch.indices == 0)[0])  # target of length 2: tgt_in is [bos, 21, 22, pad, pad]
    assert self_mask[row, 0, 2].tolist() == [True, True, True, False, False]
    assert self_mask[row, 0, 0].tolist() == [True, False, False, False, False]


def test_iterate_from_a_position_gives_the_rest_of_the_epoch():
    batcher = Batcher(random_examples(100), 90, seed=1)
    full = [(index, batch.src.tolist()) for index, batch in batcher.iterate(4)]
    resumed = [(index, batch.src.tolist()) for index, batch in Batcher(random_examples(100), 90, seed=1).iterate(4, start=3)]
    assert resumed == full[3:]


def test_pad_sequences():
    out = pad_sequences([[1, 2], [3], []], pad_id=0)
    assert out.tolist() == [[1, 2], [3, 0], [0, 0]]


class FakeTokenizer:
    """Whitespace 'tokenization': one id per word (its length), enough to test the filter."""

    def encode_src(self, text):
        return [len(word) + 4 for word in text.split()]

    encode_tgt = encode_src


def test_encode_pairs_skips_pairs_longer_than_the_positions():
    pairs = [("a b c", "x y"), ("a " * 9, "x"), ("a", "x " * 8), ("a", "x " * 7), ("", "x")]
    with pytest.warns(UserWarning, match=r"skipped 3 of 5 pair\(s\) longer than the model's 8 positions"):
        examples, kept = encode_pairs(pairs, FakeTokenizer(), max_len=8, name="train")
    # the source may use all 8 positions; the target needs one more for bos/eos, so 7 words fit
    assert kept == [("a b c", "x y"), ("a", "x " * 7)]
    assert examples[0] == ([5, 5, 5], [5, 5])
