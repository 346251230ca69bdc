"""Helpers shared by the tests: small float64 models and padded batches."""

import numpy as np


def tiny_config(**overrides):
    """A float64 model small enough for finite differences over every tensor."""
    from minitransformer.config import ModelConfig

    values = dict(
        src_vocab_size=11,
        tgt_vocab_size=13,
        d_model=8,
        n_heads=2,
        d_ff=12,
        n_encoder_layers=2,
        n_decoder_layers=2,
        dropout=0.0,
        max_len=16,
        tie_output=False,
        dtype="float64",
    )
    values.update(overrides)
    return ModelConfig(**values)


def padded_batch(rng, vocab_size, lengths, width, pad_id=0, bos=None):
    """Random ids in [4, V) (clear of the special ids 0-3) padded to ``width``."""
    ids = np.full((len(lengths), width), pad_id, dtype=np.int64)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(4, vocab_size, size=length)
        if bos is not None:
            ids[row, 0] = bos
    return ids


# --- a tiny translation task and checkpoint surgery, shared by the CLI and fault tests -------

TINY_ADJECTIVES = [("black", "noir"), ("white", "blanc"), ("small", "petit"), ("old", "vieux")]
TINY_NOUNS = [("cat", "chat"), ("dog", "chien"), ("horse", "cheval")]
TINY_VERBS = [("sleeps", "dort"), ("eats", "mange"), ("runs", "court"), ("sings", "chante")]


def tiny_pair_lines():
    """The 48 pairs "the ADJ NOUN VERB .<TAB>le NOM ADJECTIF VERBE .", in a fixed order."""
    import itertools

    return [
        f"the {adj} {noun} {verb} .\tle {nom} {adjectif} {verbe} ."
        for (adj, adjectif), (noun, nom), (verb, verbe) in itertools.product(TINY_ADJECTIVES, TINY_NOUNS, TINY_VERBS)
    ]


def write_tiny_pairs(path):
    """The 48 tiny pairs as a TSV file at ``path``."""
    path.write_text("".join(line + "\n" for line in tiny_pair_lines()), encoding="utf-8")
    return path


def rewrite_record(path, change):
    """Apply ``change`` to the JSON record inside a checkpoint file (to make it wrong on purpose)."""
    import json

    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    record = json.loads(str(arrays["meta.record"]))
    change(record)
    arrays["meta.record"] = np.array(json.dumps(record))
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def data_parallel_case():
    """(tiny float64 model, a global Batch of 7 pairs of mixed lengths, smoothing 0.1): the
    step that tests/test_data_parallel.py shares out over ranks (also under mpiexec)."""
    from minitransformer.batching import Batcher
    from minitransformer.model import make_model

    rng = np.random.default_rng(12)
    lengths = [(3, 4), (5, 2), (2, 6), (7, 7), (4, 3), (6, 5), (1, 2)]
    examples = [(list(rng.integers(4, 11, size=s)), list(rng.integers(4, 13, size=t))) for s, t in lengths]
    batcher = Batcher(examples, max_tokens=10_000, seed=0)
    batch = batcher.make_batch(batcher.epoch_batches(0)[0])
    return make_model(tiny_config(), seed=5), batch, 0.1


SEQUENCE_PARALLEL_MODELS = {
    # the tiny model as data parallel tests it: post-norm, separate embeddings
    "post-norm": {},
    # one embedding matrix for source, target and output: its gradient has an encoder part
    # (summed over the ranks) and a decoder part (the same on every rank)
    "shared-embedding": dict(src_vocab_size=13, share_embeddings=True, tie_output=True),
    # pre-norm with the final norms, and the blocked core in the decoder (the ring in its slot)
    "pre-norm-blocked": dict(pre_norm=True, attention_core="blocked", attention_block_size=2),
    # dropout on: every rank draws the single-process masks of its positions
    "dropout": dict(dropout=0.3),
}


def sequence_parallel_case(name, backend="numpy"):
    """(a float64 model of SEQUENCE_PARALLEL_MODELS[name] on ``backend``, the batch of
    data_parallel_case, smoothing 0.1): the step tests/test_sequence_parallel.py splits by positions."""
    from minitransformer.model import make_model

    _, batch, smoothing = data_parallel_case()
    return make_model(tiny_config(**SEQUENCE_PARALLEL_MODELS[name]), seed=5, backend=backend), batch, smoothing
