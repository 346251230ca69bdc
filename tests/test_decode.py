"""Decoding: the KV cache changes nothing, beam search is at least as good as greedy.

Models are tiny and float64, so that two computations of the same logits in a different
order (a step with the cache, the whole prefix without) agree to ~1e-15 and a tie between
two tokens cannot flip an argmax.
"""

from dataclasses import replace

import numpy as np
import pytest

from minitransformer import backends
from minitransformer.config import ModelConfig
from minitransformer.decode import (
    CachedStepper,
    DecoderCache,
    beam_search,
    decode_step,
    greedy_decode,
    length_penalty_factor,
    score_sequence,
)
from minitransformer.model import make_model
from minitransformer.optim import Adam

PAD, BOS, EOS = 0, 2, 3
VOCAB = 20


def random_model(pre_norm=False, eos_bias=0.0, seed=1, **overrides):
    """An untrained model; ``eos_bias`` sets how soon </s> comes, so lengths differ."""
    values = dict(
        src_vocab_size=VOCAB,
        tgt_vocab_size=VOCAB,
        d_model=16,
        n_heads=4,
        d_ff=24,
        n_encoder_layers=2,
        n_decoder_layers=2,
        dropout=0.1,  # decoding must switch it off by itself
        max_len=48,
        pre_norm=pre_norm,
        dtype="float64",
    )
    values.update(overrides)
    model = make_model(ModelConfig(**values), seed=seed)
    model.params["generator.bias"][EOS] = eos_bias
    return model


def padded_sources(lengths, seed=0):
    """(B, S) random ids in [4, V), row b of length lengths[b], padded with 0."""
    rng = np.random.default_rng(seed)
    src = np.full((len(lengths), max(lengths)), PAD, dtype=np.int64)
    for row, length in enumerate(lengths):
        src[row, :length] = rng.integers(4, VOCAB, size=length)
    return src


def toy_task(rng, n_sentences):
    """A made-up translation: each word w becomes (7·(w − 4) mod 16) + 4, in reverse order."""
    lengths = rng.integers(2, 8, size=n_sentences)
    width = int(lengths.max())
    src = np.zeros((n_sentences, width), dtype=np.int64)
    tgt_in = np.zeros((n_sentences, width + 1), dtype=np.int64)
    tgt_out = np.zeros_like(tgt_in)
    for row, length in enumerate(lengths):
        words = rng.integers(4, VOCAB, size=length)
        translation = (7 * (words[::-1] - 4)) % (VOCAB - 4) + 4
        src[row, :length] = words
        tgt_in[row, 0], tgt_in[row, 1 : length + 1] = BOS, translation
        tgt_out[row, :length], tgt_out[row, length] = translation, EOS
    return src, tgt_in, tgt_out


@pytest.fixture(scope="module")
def trained_model():
    """A model trained a little on the toy task (~100 Adam steps, a few seconds): its
    distributions are peaked and its translations end with </s> at varied lengths."""
    config = ModelConfig(
        src_vocab_size=VOCAB,
        tgt_vocab_size=VOCAB,
        d_model=32,
        n_heads=4,
        d_ff=64,
        n_encoder_layers=2,
        n_decoder_layers=2,
        dropout=0.0,
        max_len=32,
        dtype="float64",
    )
    model = make_model(config, seed=0)
    optimizer = Adam(model.params)
    rng = np.random.default_rng(0)
    for _ in range(100):
        model.loss_and_grads(*toy_task(rng, 32))
        optimizer.step(model.params, model.grads, 3e-3)
    return model


@pytest.fixture(scope="module")
def held_out():
    return toy_task(np.random.default_rng(5), 48)[0]


def ended(outputs, max_len):
    """Which outputs ended with </s>: decoding stops early only there."""
    return [len(ids) < max_len for ids in outputs]


# --- the cache changes nothing ---------------------------------------------------------------


@pytest.mark.parametrize(
    "pre_norm, window, core",
    [(False, None, "fused"), (True, None, "fused"), (False, 2, "fused"), (True, None, "blocked")],
    ids=["post-norm", "pre-norm", "local-window-2", "blocked-core"],
)
def test_cached_step_logits_equal_the_full_decoder(pre_norm, window, core):
    """Step by step, the cached decoder's logits are model.decode's at the same position
    (with the blocked core, model.decode runs it in blocks of 3 while the cache attends
    one query at a time)."""
    model = random_model(pre_norm, tie_output=False, attention_window=window, attention_core=core,
                         attention_block_size=3)
    src = padded_sources([5, 3, 7])
    tgt_in = np.concatenate([np.full((3, 1), BOS), padded_sources([9, 9, 9], seed=3)], axis=1)  # (B, 10)
    memory, src_mask, _ = model.encode(src)
    full_logits, _ = model.decode(tgt_in, memory, src_mask)  # (B, T, V)
    stepper = CachedStepper(model, memory, src_mask)
    for position in range(tgt_in.shape[1]):  # 10 positions: the buffers grow past 16 too
        step_logits, _ = stepper.step(tgt_in[:, position])
        np.testing.assert_allclose(step_logits, full_logits[:, position], rtol=1e-10, atol=1e-12)


def test_cache_buffers_grow_beyond_their_first_capacity():
    model = random_model()
    memory, src_mask, _ = model.encode(padded_sources([4, 2]))
    cache = DecoderCache(model, memory, src_mask)
    first_capacity = cache.self_keys[0].shape[2]
    for _ in range(first_capacity + 3):
        decode_step(model, cache, np.array([5, 6]))
    assert cache.length == first_capacity + 3
    assert cache.self_keys[0].shape[2] >= cache.length
    assert np.all(cache.self_keys[0][:, :, : cache.length].any(axis=-1))  # every position written


@pytest.mark.parametrize("pre_norm", [False, True], ids=["post-norm", "pre-norm"])
@pytest.mark.parametrize("eos_bias", [-9.0, 1.5], ids=["runs-to-max-len", "stops-early"])
def test_greedy_identical_with_and_without_cache(pre_norm, eos_bias):
    model = random_model(pre_norm, eos_bias)
    src = padded_sources([6, 2, 9, 4, 1])
    max_len = 20  # beyond the cache's first capacity of 16
    cached = greedy_decode(model, src, BOS, EOS, max_len)
    uncached = greedy_decode(model, src, BOS, EOS, max_len, use_cache=False)
    assert cached == uncached
    assert all(isinstance(token, int) for ids in cached for token in ids)
    assert all(BOS not in ids and EOS not in ids and PAD not in ids for ids in cached)


@pytest.mark.parametrize("pre_norm", [False, True], ids=["post-norm", "pre-norm"])
def test_greedy_and_beam_identical_with_and_without_cache_on_a_trained_model(trained_model, held_out, pre_norm):
    model = trained_model
    if pre_norm:  # the same weights read as a pre-norm model with a final norm
        config = ModelConfig(**{**model.config.to_dict(), "pre_norm": True, "final_norm": None})
        params = dict(model.params)
        for side in ("encoder", "decoder"):
            params[f"{side}.norm.gamma"], params[f"{side}.norm.beta"] = np.ones(32), np.zeros(32)
        model = make_model(config, params=params)
    src = held_out[:12]
    greedy = greedy_decode(model, src, BOS, EOS, 16)
    assert greedy == greedy_decode(model, src, BOS, EOS, 16, use_cache=False)
    beam = beam_search(model, src, BOS, EOS, 16, beam_size=3)
    assert beam == beam_search(model, src, BOS, EOS, 16, beam_size=3, use_cache=False)
    if not pre_norm:  # the trained model ends its sentences, at different steps
        assert all(ended(greedy, 16)) and len({len(ids) for ids in greedy}) >= 3


@pytest.mark.parametrize("pre_norm, core", [(False, "fused"), (True, "fused"), (False, "blocked")],
                         ids=["post-norm", "pre-norm", "blocked-core"])
def test_beam_identical_with_and_without_cache(pre_norm, core):
    model = random_model(pre_norm, eos_bias=0.5, share_embeddings=True, attention_core=core, attention_block_size=4)
    src = padded_sources([3, 8, 5, 1])
    for alpha in (0.0, 0.6):
        cached = beam_search(model, src, BOS, EOS, 18, beam_size=4, length_penalty=alpha)
        assert cached == beam_search(model, src, BOS, EOS, 18, beam_size=4, length_penalty=alpha, use_cache=False)


def cython_available():
    try:
        backends.get("cython")
    except (backends.BackendUnavailable, ImportError):
        return False
    return True


@pytest.mark.skipif(not cython_available(), reason="the Cython backend is not built here")
def test_cache_on_the_cython_backend_matches_numpy():
    model = random_model(eos_bias=0.5)
    compiled = make_model(model.config, backend="cython", params=model.params)
    src = padded_sources([6, 2, 9])
    expected = greedy_decode(model, src, BOS, EOS, 12)
    assert greedy_decode(compiled, src, BOS, EOS, 12) == expected
    assert greedy_decode(compiled, src, BOS, EOS, 12, use_cache=False) == expected
    assert beam_search(compiled, src, BOS, EOS, 12, 3) == beam_search(model, src, BOS, EOS, 12, 3)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("cython", marks=pytest.mark.skipif(
    not cython_available(), reason="the Cython backend is not built here"))])
def test_the_blocked_core_is_the_fused_core_in_the_model(backend):
    """attention_core="blocked" changes memory, not results: logits, loss, every gradient
    and the attention maps equal the fused core's (float64, blocks of 3 over lengths 5-9)."""
    fused = random_model(True)
    blocked = make_model(replace(fused.config, attention_core="blocked", attention_block_size=3),
                         backend=backend, params=fused.params)
    fused = make_model(fused.config, backend=backend, params=fused.params)
    src = padded_sources([5, 3, 7])
    tgt = np.concatenate([np.full((3, 1), BOS), padded_sources([9, 6, 8], seed=4)], axis=1)
    losses = [model.loss_and_grads(src, tgt[:, :-1], tgt[:, 1:], smoothing=0.1) for model in (fused, blocked)]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-12)
    for key, grad in fused.grads.items():
        np.testing.assert_allclose(blocked.grads[key], grad, rtol=1e-9, atol=1e-12, err_msg=key)
    maps = [model.attention_maps(model.forward(src, tgt[:, :-1])[1]) for model in (fused, blocked)]
    for kind in maps[0]:
        for layer, (a, b) in enumerate(zip(maps[0][kind], maps[1][kind])):
            np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12, err_msg=f"{kind} layer {layer}")


# --- batching --------------------------------------------------------------------------------


def test_a_sentence_decodes_the_same_alone_and_in_a_padded_batch(trained_model, held_out):
    """Padding is masked and finished sentences leave the batch without disturbing others."""
    src = held_out[:6]
    batch_greedy = greedy_decode(trained_model, src, BOS, EOS, 16)
    batch_beam = beam_search(trained_model, src, BOS, EOS, 16, beam_size=3)
    for row in range(len(src)):
        alone = src[row : row + 1, : int((src[row] != PAD).sum())]  # without its padding
        assert greedy_decode(trained_model, alone, BOS, EOS, 16) == [batch_greedy[row]]
        assert beam_search(trained_model, alone, BOS, EOS, 16, beam_size=3) == [batch_beam[row]]


def test_greedy_learned_the_toy_task_well_enough_to_be_meaningful(trained_model):
    """The later tests lean on this model having peaked, sensible distributions."""
    src, _, tgt_out = toy_task(np.random.default_rng(5), 48)
    outputs = greedy_decode(trained_model, src, BOS, EOS, 16)
    references = [[token for token in row if token > EOS] for row in tgt_out]
    token_accuracy = np.mean([a == b for out, ref in zip(outputs, references) for a, b in zip(out, ref)])
    assert token_accuracy > 0.5


def test_max_len_bounds_the_output_and_pad_bos_are_never_generated():
    model = random_model(eos_bias=-9.0)
    model.params["generator.bias"][PAD] = 50.0  # the model would love to say <pad> …
    model.params["generator.bias"][BOS] = 49.0  # … or <s>
    src = padded_sources([4, 6])
    for outputs in (greedy_decode(model, src, BOS, EOS, 7), beam_search(model, src, BOS, EOS, 7, beam_size=3)):
        assert [len(ids) for ids in outputs] == [7, 7]
        assert all(PAD not in ids and BOS not in ids for ids in outputs)
    # at most the positional table's length, whatever is asked
    assert {len(ids) for ids in greedy_decode(model, src, BOS, EOS, 1000)} == {model.config.max_len}


# --- beam search ----------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_beam_size_one_is_greedy(trained_model, held_out, alpha):
    for model in (trained_model, random_model(eos_bias=1.0)):
        src = held_out[:16]
        assert beam_search(model, src, BOS, EOS, 16, beam_size=1, length_penalty=alpha) == greedy_decode(
            model, src, BOS, EOS, 16
        )


def test_beam_scores_are_the_models_log_probabilities(trained_model, held_out):
    """beam_search's own Σ log p equals a fresh full forward pass's (score_sequence)."""
    src = held_out[:16]
    outputs, scores = beam_search(trained_model, src, BOS, EOS, 16, beam_size=4, length_penalty=0.0, return_scores=True)
    recomputed = score_sequence(trained_model, src, outputs, BOS, EOS, ended(outputs, 16))
    np.testing.assert_allclose(scores, recomputed, rtol=1e-10)
    assert np.all(recomputed < 0)


def test_beam_search_never_scores_below_greedy_and_often_above(trained_model, held_out):
    """With α = 0 beam search ranks by Σ log p, the model score greedy also climbs.

    Beam search is a heuristic, not a proof: an untrained model can push greedy's prefix
    out of the beam with prefixes that later collapse. On this model, trained a little so
    that its distributions are peaked, it must never lose, and it must win somewhere, or
    the test would prove nothing."""
    max_len = 16
    greedy = greedy_decode(trained_model, held_out, BOS, EOS, max_len)
    beam = beam_search(trained_model, held_out, BOS, EOS, max_len, beam_size=4, length_penalty=0.0)
    greedy_scores = score_sequence(trained_model, held_out, greedy, BOS, EOS, ended(greedy, max_len))
    beam_scores = score_sequence(trained_model, held_out, beam, BOS, EOS, ended(beam, max_len))
    assert np.all(beam_scores >= greedy_scores - 1e-9), np.flatnonzero(beam_scores < greedy_scores - 1e-9)
    assert np.sum(beam_scores > greedy_scores + 1e-6) >= 3  # a strictly better translation, several times


def test_wider_beams_with_alpha_zero_find_the_exhaustive_best_on_a_tiny_vocabulary():
    """With 5 possible tokens and 3 steps, every output can be scored; a beam as wide as
    the number of prefixes (25) is exhaustive, so it must find the best one exactly."""
    model = random_model(eos_bias=0.0, src_vocab_size=6, tgt_vocab_size=6, seed=4)  # tokens 1, 3, 4, 5 usable
    src = np.array([[4, 5, 4]])
    max_len = 3
    usable = [1, 3, 4, 5]  # <pad> 0 and <s> 2 are never generated
    candidates = []
    for first in usable:
        if first == EOS:
            candidates.append(([], True))
            continue
        for second in usable:
            if second == EOS:
                candidates.append(([first], True))
                continue
            for third in usable:
                candidates.append(([first, second], True) if third == EOS else ([first, second, third], False))
    scores = [score_sequence(model, src, [ids], BOS, EOS, end)[0] for ids, end in candidates]
    best_ids = candidates[int(np.argmax(scores))][0]
    found, found_score = beam_search(
        model, src, BOS, EOS, max_len, beam_size=25, length_penalty=0.0, return_scores=True
    )
    assert found == [best_ids]
    np.testing.assert_allclose(found_score, max(scores), rtol=1e-12)


def test_the_length_penalty_is_gnmts():
    assert length_penalty_factor(1, 0.0) == 1.0
    assert length_penalty_factor(1, 0.6) == 1.0  # ((5 + 1) / 6)^α
    np.testing.assert_allclose(length_penalty_factor(7, 0.6), 2.0**0.6)
    # and a longer penalty lets beam search prefer longer outputs than with α = 0
    model = random_model(eos_bias=0.8, seed=2)
    src = padded_sources([5, 7, 3, 6, 4, 8], seed=1)
    short = beam_search(model, src, BOS, EOS, 20, beam_size=4, length_penalty=0.0)
    long = beam_search(model, src, BOS, EOS, 20, beam_size=4, length_penalty=2.0)
    assert sum(map(len, long)) > sum(map(len, short))


def test_bad_arguments_are_refused_clearly():
    model = random_model()
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, padded_sources([3]), BOS, EOS, 5, beam_size=0)
    with pytest.raises(ValueError, match=r"\(B, S\)"):
        greedy_decode(model, np.array([4, 5, 6]), BOS, EOS, 5)
    with pytest.raises(ValueError, match="max_len"):
        beam_search(model, padded_sources([3]), BOS, EOS, 0)
