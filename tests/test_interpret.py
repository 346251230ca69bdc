"""minitransformer/interpret/: every gradient against a float64 finite difference, the
identities the methods rely on, and each score against an answer known by construction.

    head gates       ∂L/∂g by finite differences; g = 1 changes nothing; g_h = 0 is the same
                     model as head h's rows of W_o zeroed; Σ A ⊙ ∂L/∂A = ∂L/∂g
    ∂A/∂e            one attention weight against the input embeddings, by finite differences
    IG               completeness: Σ_s IG = f(x) − f(baseline) within 1 %
    AER, clustering  hand-made alignments with known AER; planted heads found
"""

import numpy as np
import pytest

from minitransformer.gradcheck import numerical_gradient, rel_error
from minitransformer.interpret import aer, clustering, gates, importance, rollout, words
from minitransformer.interpret.integrated_gradients import completeness_gap, integrated_gradients
from minitransformer.interpret.steps import explain_steps
from minitransformer.interpret.weight_gradient import attention_weight_gradient, decoder_weight_gradient
from minitransformer.model import make_model
from minitransformer.saliency import gradient_x_input

from helpers import padded_batch, tiny_config

VARIANTS = {"post-norm": dict(pre_norm=False), "pre-norm, final norm": dict(pre_norm=True, final_norm=True)}


def tiny_model(seed=3, **overrides):
    model = make_model(tiny_config(**overrides), seed=seed)
    rng = np.random.default_rng(seed)
    for key, value in model.params.items():  # no gradient checked only at a special point
        if not key.endswith("weight") and ".w_" not in key:
            value += 0.1 * rng.standard_normal(value.shape)
    return model


def batch(model, seed=0):
    rng = np.random.default_rng(seed)
    src = padded_batch(rng, model.config.src_vocab_size, [5, 3, 4], width=5)
    tgt = padded_batch(rng, model.config.tgt_vocab_size, [6, 4, 2], width=6, bos=2)
    return src, tgt[:, :-1], tgt[:, 1:]


# --- head gates -----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_head_gate_gradients_match_finite_differences(variant):
    model = tiny_model(**VARIANTS[variant])
    src, tgt_in, tgt_out = batch(model)
    values = {stack: 1.0 + 0.3 * np.random.default_rng(1).standard_normal((len(p), model.config.n_heads))
              for stack, p in gates.attention_layers(model.config).items()}
    with gates.head_gates(model, values):
        model.loss_and_grads(src, tgt_in, tgt_out)
        analytic = gates.gate_gradients(model)
        errors = {}
        for stack, prefixes in gates.attention_layers(model.config).items():
            for layer, prefix in enumerate(prefixes):
                gate = model.params[prefix + ".gate"]
                numeric = numerical_gradient(lambda: model.loss(src, tgt_in, tgt_out), gate)
                errors[f"{prefix}.gate"] = rel_error(analytic[stack][layer], numeric)
    bad = {key: error for key, error in errors.items() if error > 1e-6}
    assert not bad, f"gate gradients off: {bad}"


def test_gates_of_one_change_nothing_and_leave_no_trace():
    model = tiny_model()
    src, tgt_in, _ = batch(model)
    plain, _ = model.forward(src, tgt_in)
    keys = set(model.params)
    with gates.head_gates(model):
        gated, _ = model.forward(src, tgt_in)
    np.testing.assert_array_equal(gated, plain)  # ×1.0 is exact in floating point
    assert set(model.params) == keys and not any(key.endswith(".gate") for key in model.grads)


@pytest.mark.parametrize("stack, layer, head", [("encoder", 1, 0), ("decoder_self", 0, 1), ("cross", 1, 1)])
def test_masking_a_head_is_zeroing_its_block_of_w_o(stack, layer, head):
    model = tiny_model()
    src, tgt_in, _ = batch(model)
    values = {s: np.ones((len(p), model.config.n_heads)) for s, p in gates.attention_layers(model.config).items()}
    values[stack][layer, head] = 0.0
    with gates.head_gates(model, values):
        masked, _ = model.forward(src, tgt_in)
    with gates.heads_removed(model, [(stack, layer, head)]):
        zeroed, _ = model.forward(src, tgt_in)
    restored, _ = model.forward(src, tgt_in)
    np.testing.assert_allclose(masked, zeroed, rtol=0, atol=1e-12)
    assert np.abs(restored - masked).max() > 1e-6, "the head mattered nothing: the test proves nothing"


def test_attention_gradient_sums_to_the_gate_gradient():
    """head_h = A_h·V_h scaled by g_h, so at g = 1: ∂L/∂g_h = Σ_{b,t,s} A ⊙ ∂L/∂A."""
    model = tiny_model()
    src, tgt_in, tgt_out = batch(model)
    with gates.head_gates(model):
        logits, cache = model.forward(src, tgt_in)
        model.loss_and_grads(src, tgt_in, tgt_out)
        maps, dmaps, dgate = model.attention_maps(cache), gates.attention_gradients(model), gates.gate_gradients(model)
    for stack in gates.STACKS:
        for layer in range(len(maps[stack])):
            np.testing.assert_allclose((maps[stack][layer] * dmaps[stack][layer]).sum(axis=(0, 2, 3)),
                                       dgate[stack][layer], rtol=1e-10, atol=1e-12)


def test_head_importance_is_normalized_per_layer_and_ranks_every_head():
    model = tiny_model()
    examples = [([5, 7, 4], [6, 8]), ([9, 5], [7, 10, 6]), ([4, 4, 6, 8], [9])]  # <s>, </s> added by the Batcher
    scores = importance.head_importance(model, examples, pad_id=0)
    for table in scores.values():
        np.testing.assert_allclose(np.linalg.norm(table, axis=1), 1.0, rtol=1e-12)
    assert len(importance.ranked_heads(scores)) == 3 * 2 * model.config.n_heads


EXAMPLES = [([5, 7, 4], [6, 8]), ([9, 5], [7, 10, 6]), ([4, 4, 6, 8], [9]), ([6, 5, 7, 9, 4], [8, 6, 11, 7])]


def one_sentence_gate_gradient(model, source, target):
    """|∂L(x)/∂g| of one sentence alone, by the plain route: its own batch, its own backward."""
    from minitransformer.batching import Batcher

    (_, single), = Batcher([(source, target)], 4096, seed=0, pad_id=0).iterate(epoch=0)
    with gates.head_gates(model):
        model.loss_and_grads(single.src, single.tgt_in, single.tgt_out)
        return {stack: np.abs(g) for stack, g in gates.gate_gradients(model).items()}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_head_importance_is_the_mean_over_sentences_of_each_ones_importance(variant):
    """E_x |∂L(x)/∂g|, from batches with padding, equals the mean of the sentences taken one at a time."""
    model = tiny_model(**VARIANTS[variant])
    singles = [one_sentence_gate_gradient(model, source, target) for source, target in EXAMPLES]
    expected = {stack: np.mean([single[stack] for single in singles], axis=0) for stack in singles[0]}
    batched = importance.head_importance(model, EXAMPLES, pad_id=0, normalize=False)
    for stack in expected:
        np.testing.assert_allclose(batched[stack], expected[stack], rtol=1e-10, atol=1e-14, err_msg=stack)
    # the four sentences fall in one batch, whose own |∂L/∂g| is another number: the test can tell
    from minitransformer.batching import Batcher

    (_, whole), = Batcher(EXAMPLES, 4096, seed=0, pad_id=0).iterate(epoch=0)
    with gates.head_gates(model):
        model.loss_and_grads(whole.src, whole.tgt_in, whole.tgt_out)
        of_the_batch = {stack: np.abs(g) for stack, g in gates.gate_gradients(model).items()}
    assert max(np.abs(of_the_batch[s] - expected[s]).max() for s in expected) > 1e-3
    normalized = importance.head_importance(model, EXAMPLES, pad_id=0)
    for stack in expected:
        np.testing.assert_allclose(normalized[stack], importance.normalize_per_layer(expected[stack]), rtol=1e-10)


def test_read_importance_checks_the_heads_against_the_model(tmp_path):
    import json

    model = tiny_model()
    scores = importance.head_importance(model, EXAMPLES, pad_id=0)
    path = tmp_path / "heads.json"
    path.write_text(json.dumps({"importance": {s: v.tolist() for s, v in scores.items()}, "data": "d.tsv",
                                "sentences": 4}))
    read = importance.read_importance(path, model.config)
    assert read["label"].startswith("over 4 sentences of d.tsv")
    for stack in scores:
        np.testing.assert_array_equal(read["importance"][stack], scores[stack])
    path.write_text(json.dumps({"importance": {s: v[:, :1].tolist() for s, v in scores.items()}}))
    with pytest.raises(ValueError, match=r"encoder importance has shape \(2, 1\); the model's encoder heads are \(2, 2\)"):
        importance.read_importance(path, model.config)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="is not the heads.json"):
        importance.read_importance(path, model.config)
    with pytest.raises(ValueError, match="cannot read"):
        importance.read_importance(tmp_path / "none.json", model.config)


# --- the gradient of one attention weight -------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("layer, head, query, key", [(0, 1, 2, 0), (1, 0, 3, 3)])
def test_attention_weight_gradient_matches_finite_differences(variant, layer, head, query, key):
    model = tiny_model(**VARIANTS[variant])
    src_ids = [5, 7, 4, 9, 6]
    embedded = np.random.default_rng(2).standard_normal((len(src_ids), model.config.d_model))
    weight, analytic = attention_weight_gradient(model, src_ids, layer, head, query, key, embedded=embedded)
    numeric = numerical_gradient(
        lambda: attention_weight_gradient(model, src_ids, layer, head, query, key, embedded=embedded)[0], embedded
    )
    assert 0 < weight < 1
    assert rel_error(analytic, numeric) < 1e-6, f"∂A/∂e: relative error {rel_error(analytic, numeric):.2e}"


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("stack, layer, head, query, key", [
    ("decoder_self", 0, 1, 3, 1), ("decoder_self", 1, 0, 4, 4), ("cross", 0, 0, 2, 3), ("cross", 1, 1, 0, 4)])
def test_decoder_weight_gradient_matches_finite_differences(variant, stack, layer, head, query, key):
    """∂A/∂e (source) and ∂A/∂u (decoder input) of a decoder self- or cross-attention weight."""
    model = tiny_model(**VARIANTS[variant])
    src_ids, tgt_in = [5, 7, 4, 9, 6], [2, 8, 5, 11, 7]
    rng = np.random.default_rng(4)
    embedded = rng.standard_normal((len(src_ids), model.config.d_model))
    embedded_target = rng.standard_normal((len(tgt_in), model.config.d_model))

    def weight():
        return decoder_weight_gradient(model, src_ids, tgt_in, stack, layer, head, query, key,
                                       embedded=embedded, embedded_target=embedded_target).weight

    result = decoder_weight_gradient(model, src_ids, tgt_in, stack, layer, head, query, key,
                                     embedded=embedded, embedded_target=embedded_target)
    assert 0 < result.weight < 1
    for name, analytic, point in (("source", result.source, embedded), ("target", result.target, embedded_target)):
        numeric = numerical_gradient(weight, point)
        if stack == "decoder_self" and layer == 0 and name == "source":
            # layer 0's self-attention reads no memory: exactly zero, both ways
            assert np.abs(numeric).max() < 1e-9 and not analytic.any()
            continue
        assert np.abs(numeric).max() > 1e-4, f"{name}: the weight does not move; the check proves nothing"
        error = rel_error(analytic, numeric)
        assert error < 1e-6, f"∂A/∂{name} of {stack} layer {layer}: relative error {error:.2e}"
    if stack == "decoder_self":  # causal: decoder positions after the query cannot move its weights
        np.testing.assert_array_equal(result.target[query + 1:], 0.0)


def test_decoder_weight_gradient_differentiates_the_models_own_weight():
    """The forward that decoder_weight_gradient runs is the model's: the weight it returns is
    the one model.forward computes (so the finite differences above check the right function)."""
    model = tiny_model(pre_norm=True, final_norm=True)
    src_ids, tgt_in = [5, 7, 4, 9], [2, 8, 5]
    logits, cache = model.forward(np.array([src_ids]), np.array([tgt_in]))
    maps = model.attention_maps(cache)
    for stack in ("decoder_self", "cross"):
        result = decoder_weight_gradient(model, src_ids, tgt_in, stack, 1, 1, 2, 1)
        assert result.weight == pytest.approx(float(maps[stack][1][0, 1, 2, 1]), rel=1e-12)


@pytest.mark.parametrize("stack", ["encoder", "decoder_self", "cross"])
def test_weight_gradients_are_the_same_with_the_blocked_core(stack):
    """The blocked core keeps no weights; they are rebuilt from its log-sum-exp, and the
    gradient of one of them is the fused core's."""
    fused, blocked = (tiny_model(pre_norm=True, final_norm=True, attention_core=core, attention_block_size=2)
                      for core in ("fused", "blocked"))
    if stack == "encoder":
        results = [attention_weight_gradient(model, [5, 7, 4, 9], 1, 0, 2, 1) for model in (fused, blocked)]
    else:
        results = [decoder_weight_gradient(model, [5, 7, 4, 9], [2, 6, 8], stack, 1, 1, 2, 1)[:2]
                   for model in (fused, blocked)]
    (weight_fused, grad_fused), (weight_blocked, grad_blocked) = results
    assert weight_blocked == pytest.approx(weight_fused, rel=1e-12)
    np.testing.assert_allclose(grad_blocked, grad_fused, rtol=1e-10, atol=1e-14)
    assert np.abs(grad_fused).max() > 1e-4


def test_attention_weight_gradient_refuses_what_is_not_there():
    model = tiny_model()
    with pytest.raises(ValueError, match="layer 2 is out of range"):
        attention_weight_gradient(model, [5, 6], layer=2, head=0, query=0, key=0)
    with pytest.raises(ValueError, match="head 5 is out of range"):
        attention_weight_gradient(model, [5, 6], layer=0, head=5, query=0, key=0)
    with pytest.raises(ValueError, match="source positions"):
        attention_weight_gradient(model, [5, 6], layer=0, head=0, query=2, key=0)
    with pytest.raises(ValueError, match="key 3 must lie in 0–2, the decoder positions"):
        decoder_weight_gradient(model, [5, 6], [2, 7, 8], "decoder_self", layer=0, head=0, query=1, key=3)
    with pytest.raises(ValueError, match="key 2 must lie in 0–1, the source positions"):
        decoder_weight_gradient(model, [5, 6], [2, 7, 8], "cross", layer=0, head=0, query=1, key=2)
    with pytest.raises(ValueError, match="layer 2 is out of range: the cross stack"):
        decoder_weight_gradient(model, [5, 6], [2, 7, 8], "cross", layer=2, head=0, query=0, key=0)
    with pytest.raises(ValueError, match="choose decoder_self or cross"):
        decoder_weight_gradient(model, [5, 6], [2, 7, 8], "encoder", layer=0, head=0, query=0, key=0)


# --- gradient × input and integrated gradients -----------------------------------------------


def test_explain_steps_gives_the_saliency_of_saliency_py():
    model = tiny_model()
    src_ids, output_ids = [5, 7, 4, 9], [6, 8, 3]
    steps = explain_steps(model, src_ids, output_ids, bos_id=2)
    np.testing.assert_allclose((steps.dembedded * steps.embedded[None]).sum(axis=2),
                               gradient_x_input(model, src_ids, output_ids, bos_id=2), rtol=1e-10, atol=1e-12)
    for probs in steps.cross:
        np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_integrated_gradients_are_complete(variant):
    """Σ_s IG_t[s] = f_t(x) − f_t(0) over the sentence's steps: the midpoint rule with 512
    steps is within 1 % (on six seeds of both variants it was within 0.7 %)."""
    model = tiny_model(**VARIANTS[variant])
    ig, f_input, f_baseline = integrated_gradients(model, [5, 7, 4, 9, 6], [6, 8, 10, 3], bos_id=2, steps=512)
    assert np.linalg.norm(f_input - f_baseline) > 0.1, "f barely moves: the check would be empty"
    gap = completeness_gap(ig, f_input, f_baseline)
    assert gap < 0.01, f"completeness off by {gap:.2%}"


# --- rollout, words -------------------------------------------------------------------------


def test_rollout_rows_are_distributions_and_identity_layers_change_nothing():
    rng = np.random.default_rng(0)
    maps = [rng.dirichlet(np.ones(4), size=(2, 4)) for _ in range(3)]  # 3 layers of (H, S, S)
    rolled = rollout.encoder_rollout(maps)
    np.testing.assert_allclose(rolled.sum(axis=1), 1.0, rtol=1e-12)
    identity = [np.broadcast_to(np.eye(4), (2, 4, 4)) for _ in range(3)]
    np.testing.assert_allclose(rollout.encoder_rollout(identity), np.eye(4), atol=1e-15)
    # one layer: ½Ā + ½I by hand
    np.testing.assert_allclose(rollout.encoder_rollout(maps[:1]), 0.5 * maps[0].mean(axis=0) + 0.5 * np.eye(4))


def test_pieces_become_words_by_summing_sources_and_averaging_targets():
    source = words.word_index(["▁the", "▁bl", "ack", "▁cat", "▁."], n_words=4)
    target = words.word_index(["▁le", "▁ch", "at", "▁.", "</s>"], n_words=3)
    np.testing.assert_array_equal(source, [0, 1, 1, 2, 3])
    np.testing.assert_array_equal(target, [0, 1, 1, 2, -1])
    matrix = np.arange(25, dtype=float).reshape(5, 5)
    reduced = words.reduce_to_words(matrix, target, source)
    assert reduced.shape == (3, 4)
    assert reduced[0, 1] == 1 + 2  # source pieces add
    assert reduced[1, 1] == ((6 + 7) + (11 + 12)) / 2  # target pieces average
    with pytest.raises(words.WordMismatch):
        words.word_index(["▁a", "▁b"], n_words=3)


# --- AER ----------------------------------------------------------------------------------


def test_aer_on_hand_made_alignments():
    sure = [{(0, 0), (1, 2), (2, 1)}, {(0, 0), (1, 1)}]
    assert aer.alignment_error_rate(sure, sure) == 0.0
    assert aer.alignment_error_rate([set(), set()], sure) == 1.0
    # sentence 1 gets 2 of 3 right plus one wrong link, sentence 2 both: |A∩S| = 4, |A| = 5, |S| = 5
    predicted = [{(0, 0), (1, 2), (1, 1)}, {(0, 0), (1, 1)}]
    assert aer.alignment_error_rate(predicted, sure) == pytest.approx(1 - 2 * 4 / 10)
    # with possible links: a link in P but not S counts once
    possible = [{(1, 1)}, set()]
    assert aer.alignment_error_rate(predicted, sure, possible) == pytest.approx(1 - (4 + 5) / 10)
    # argmax: each French word (row) to its best English word (column)
    assert aer.argmax_alignment(np.array([[0.9, 0.1, 0.0], [0.2, 0.1, 0.7], [0.1, 0.8, 0.1]])) == sure[0]


def test_alignment_files_that_do_not_fit_are_named(tmp_path):
    pairs = [("the cat .", "le chat ."), ("a dog .", "un chien .")]
    path = tmp_path / "gold.align"
    path.write_text("0-0 1-1 2-2\n0-0 1-1 2-2\n")
    assert aer.read_alignments(path, pairs)[0] == {(0, 0), (1, 1), (2, 2)}
    path.write_text("0-0\n")
    with pytest.raises(aer.AlignmentFileError, match="1 lines but there are 2 sentence pairs"):
        aer.read_alignments(path, pairs)
    path.write_text("0-0\n0-7\n")
    with pytest.raises(aer.AlignmentFileError, match=":2: link 0-7 is outside"):
        aer.read_alignments(path, pairs)
    path.write_text("0-0\n0:1\n")
    with pytest.raises(aer.AlignmentFileError, match="is not an i-j pair"):
        aer.read_alignments(path, pairs)


# --- clustering ------------------------------------------------------------------------------


def planted_maps(rng, pattern, lengths):
    """Attention maps of a head that mostly does `pattern`, with noise."""
    maps = []
    for n in lengths:
        target = np.zeros((n, n))
        for q in range(n):
            k = {"previous": max(q - 1, 0), "self": q, "next": min(q + 1, n - 1), "eos/punct": n - 1}.get(pattern)
            if k is None:
                target[q] = 1.0 / n
            else:
                target[q, k] = 1.0
        noise = rng.dirichlet(np.ones(n), size=n)
        maps.append(0.8 * target + 0.2 * noise)
    return maps


def test_clustering_finds_planted_heads():
    rng = np.random.default_rng(0)
    lengths = [5, 7, 6, 8]
    plan = ["previous", "self", "broad", "previous", "eos/punct", "self", "broad", "previous", "eos/punct"]
    maps = {f"head {i} ({p})": planted_maps(rng, p, lengths) for i, p in enumerate(plan)}
    punctuation = [np.zeros(n, dtype=bool) for n in lengths]
    result = clustering.cluster_heads(maps, punctuation, n_clusters=4)
    groups = {}
    for pattern, label in zip(plan, result.labels):
        groups.setdefault(pattern, set()).add(int(label))
    assert all(len(labels) == 1 for labels in groups.values()), f"a planted pattern split: {groups}"
    assert len({next(iter(labels)) for labels in groups.values()}) == 4, f"two patterns merged: {groups}"
    for pattern, labels in groups.items():
        assert result.cluster_patterns[next(iter(labels))] == pattern
    assert result.head_patterns == plan
    # the map keeps planted twins closer than strangers
    xy = result.coordinates
    assert np.linalg.norm(xy[0] - xy[3]) < np.linalg.norm(xy[0] - xy[1])


def test_js_distance_and_linkage_by_hand():
    p, q = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert clustering.js_distance(p, q) == pytest.approx(1.0)
    assert clustering.js_distance(p, p) == 0.0
    distance = np.array([[0, 1, 4, 5], [1, 0, 4, 5], [4, 4, 0, 2], [5, 5, 2, 0]], dtype=float)
    merges = clustering.average_linkage(distance)
    np.testing.assert_allclose(merges, [[0, 1, 1, 2], [2, 3, 2, 2], [4, 5, 4.5, 4]])
    np.testing.assert_array_equal(clustering.cut(merges, 2), [0, 0, 1, 1])
    assert clustering.leaf_order(merges) == [0, 1, 2, 3]
