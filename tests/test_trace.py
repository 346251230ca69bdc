"""The attention trace and the saliency: what the viewers draw must be what the model computed."""

import json

import numpy as np
import pytest

from minitransformer.config import ModelConfig
from minitransformer.decode import greedy_decode
from minitransformer.gradcheck import rel_error
from minitransformer.model import make_model
from minitransformer.saliency import gradient_x_input, source_saliency
from minitransformer.trace import AttentionTrace, TraceError, record_trace

PAD, BOS, EOS = 0, 2, 3


class PieceTokenizer:
    """Stands in for the SentencePiece tokenizer: every id has its own readable piece."""

    pad_id, unk_id, bos_id, eos_id = PAD, 1, BOS, EOS
    special = {PAD: "<pad>", 1: "<unk>", BOS: "<s>", EOS: "</s>"}

    def src_pieces(self, ids):
        return [self.special.get(i, f"▁en{i}") for i in ids]

    def tgt_pieces(self, ids):
        return [self.special.get(i, f"▁fr{i}") for i in ids]

    def decode_src(self, ids):
        return " ".join(f"en{i}" for i in ids)

    def decode_tgt(self, ids):
        return " ".join(f"fr{i}" for i in ids if i > EOS)


def model_for(pre_norm=False, eos_bias=-1.0, seed=3, **overrides):
    values = dict(
        src_vocab_size=24,
        tgt_vocab_size=26,
        d_model=16,
        n_heads=4,
        d_ff=24,
        n_encoder_layers=2,
        n_decoder_layers=3,
        max_len=40,
        pre_norm=pre_norm,
        dtype="float64",
    )
    values.update(overrides)
    model = make_model(ModelConfig(**values), seed=seed)
    model.params["generator.bias"][EOS] = eos_bias
    return model


SOURCE = [5, 9, 12, 7, 20, 14]


def forward_maps(model, trace):
    """The attention weights of ONE full forward pass over (source, <s> + the output)."""
    src = np.array([trace.source_ids])
    tgt_in = np.array([[BOS] + trace.output_ids[:-1]])
    _, cache = model.forward(src, tgt_in)
    return {name: np.stack([layer[0] for layer in maps]) for name, maps in model.attention_maps(cache).items()}


@pytest.mark.parametrize("pre_norm", [False, True], ids=["post-norm", "pre-norm"])
@pytest.mark.parametrize("beam_size", [1, 3], ids=["greedy", "beam"])
def test_the_trace_holds_the_weights_of_a_direct_forward_pass(pre_norm, beam_size):
    model = model_for(pre_norm)
    trace = record_trace(model, PieceTokenizer(), SOURCE, max_len=12, beam_size=beam_size)
    assert trace.n_steps >= 2
    direct = forward_maps(model, trace)
    np.testing.assert_allclose(trace.encoder, direct["encoder"], atol=1e-12)
    np.testing.assert_allclose(trace.decoder_self, direct["decoder_self"], atol=1e-12)
    np.testing.assert_allclose(trace.cross, direct["cross"], atol=1e-12)


def test_the_trace_is_recorded_from_the_greedy_decoder_and_matches_its_output():
    model = model_for(eos_bias=2.0, seed=4, tie_output=False)  # ends after 11 pieces
    trace = record_trace(model, PieceTokenizer(), SOURCE, max_len=12)
    decoded = greedy_decode(model, np.array([SOURCE]), BOS, EOS, 12)[0]
    assert trace.output_ids == decoded + [EOS]  # this model ends its sentence before 12
    assert trace.meta["ended_with_eos"] and trace.meta["decoder"] == "greedy"
    # without the cache the same trace comes out of the full recomputation
    uncached = record_trace(model, PieceTokenizer(), SOURCE, max_len=12, use_cache=False)
    for name in ("encoder", "decoder_self", "cross", "saliency"):
        np.testing.assert_allclose(getattr(uncached, name), getattr(trace, name), atol=1e-12)


def test_rows_sum_to_one_and_the_future_is_exactly_zero():
    trace = record_trace(model_for(), PieceTokenizer(), SOURCE, max_len=9)
    for name in ("encoder", "decoder_self", "cross"):
        np.testing.assert_allclose(getattr(trace, name).sum(axis=-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(trace.saliency.sum(axis=-1), 1.0, atol=1e-12)
    steps = trace.n_steps
    future = np.triu(np.ones((steps, steps), dtype=bool), k=1)  # key after the query
    assert np.all(trace.decoder_self[:, :, future] == 0.0)
    assert np.all(trace.decoder_self[:, :, ~future] > 0.0)


def test_padded_source_positions_get_exactly_zero_cross_attention_at_every_step():
    model = model_for()
    src = np.array([[5, 9, 12, 7, 20, 14], [6, 8, PAD, PAD, PAD, PAD], [4, 4, 4, PAD, PAD, PAD]])
    seen = []

    def on_step(step, sentences, next_ids, attention):
        for row, sentence in enumerate(sentences):
            padding = src[sentence] == PAD
            for layer in range(3):
                assert np.all(attention["cross"][layer][row][:, padding] == 0.0)
                np.testing.assert_allclose(attention["cross"][layer][row].sum(axis=-1), 1.0, atol=1e-12)
                assert attention["self"][layer][row].shape == (4, step + 1)
        seen.append(step)

    greedy_decode(model, src, BOS, EOS, 8, on_step=on_step)
    assert seen == list(range(8))


def test_each_axis_carries_the_right_pieces():
    tokenizer = PieceTokenizer()
    trace = record_trace(model_for(), tokenizer, SOURCE, max_len=7)
    produced = trace.output_ids
    assert trace.source_pieces == ["▁en5", "▁en9", "▁en12", "▁en7", "▁en20", "▁en14"]
    assert trace.output_pieces == tokenizer.tgt_pieces(produced)
    assert trace.decoder_input_pieces == ["<s>"] + trace.output_pieces[:-1]
    assert trace.cross.shape == (3, 4, len(produced), len(SOURCE))
    assert trace.decoder_self.shape == (3, 4, len(produced), len(produced))
    assert trace.encoder.shape == (2, 4, len(SOURCE), len(SOURCE))
    assert trace.saliency.shape == (len(produced), len(SOURCE))
    assert trace.output_text == tokenizer.decode_tgt(produced)


def test_save_and_load_round_trip_with_a_readable_json(tmp_path):
    trace = record_trace(model_for(), PieceTokenizer(), SOURCE, max_len=6, beam_size=2)
    npz_path, json_path = trace.save(tmp_path / "cat")
    assert (npz_path.name, json_path.name) == ("cat.npz", "cat.json")
    record = json.loads(json_path.read_text(encoding="utf-8"))
    assert record["source_pieces"] == trace.source_pieces and record["output_pieces"] == trace.output_pieces
    assert record["shapes"]["cross"] == list(trace.cross.shape)
    assert record["axes"]["cross"][2].startswith("query: decoding step")
    assert record["axes"]["cross"][3] == "key: source piece"
    for path in (tmp_path / "cat", npz_path, json_path):
        loaded = AttentionTrace.load(path)
        for name in ("encoder", "decoder_self", "cross", "saliency"):
            np.testing.assert_array_equal(getattr(loaded, name), getattr(trace, name))
        assert loaded.output_ids == trace.output_ids and loaded.meta == trace.meta


def test_loading_a_broken_trace_says_what_is_wrong(tmp_path):
    trace = record_trace(model_for(), PieceTokenizer(), SOURCE, max_len=5)
    npz_path, json_path = trace.save(tmp_path / "t")
    with pytest.raises(TraceError, match="not found"):
        AttentionTrace.load(tmp_path / "missing")
    record = json.loads(json_path.read_text())
    record["output_pieces"] = record["output_pieces"][:-1]  # one label short
    record["decoder_input_pieces"] = record["decoder_input_pieces"][:-1]
    json_path.write_text(json.dumps(record))
    with pytest.raises(TraceError, match=r"decoder_self has shape \(3, 4, 5, 5\); the pieces need"):
        AttentionTrace.load(tmp_path / "t")
    json_path.write_text("{not json")
    with pytest.raises(TraceError, match="unreadable"):
        AttentionTrace.load(tmp_path / "t")


# --- saliency --------------------------------------------------------------------------------


def log_prob_of_step(model, src_ids, output_ids, step):
    logits, _ = model.forward(np.array([src_ids]), np.array([[BOS] + output_ids[:-1]]))
    z = logits[0, step]
    return float(z[output_ids[step]] - z.max() - np.log(np.exp(z - z.max()).sum()))


@pytest.mark.parametrize("pre_norm", [False, True], ids=["post-norm", "pre-norm"])
def test_gradient_times_input_equals_a_finite_difference(pre_norm):
    """G[t, s] is d/dε log p(y_t) when e_s becomes (1 + ε)·e_s: scale source token s's
    embedding row (the source ids are distinct, so only position s moves)."""
    model = model_for(pre_norm, tie_output=False)
    src_ids, output_ids = [5, 9, 12, 7], [6, 11, 4, EOS]
    analytic = gradient_x_input(model, src_ids, output_ids, BOS)  # (T, S)
    table = model.params[model.src_embed_key]
    numeric = np.zeros_like(analytic)
    h = 1e-6
    for s, token in enumerate(src_ids):
        row = table[token].copy()
        for t in range(len(output_ids)):
            table[token] = row * (1 + h)
            plus = log_prob_of_step(model, src_ids, output_ids, t)
            table[token] = row * (1 - h)
            minus = log_prob_of_step(model, src_ids, output_ids, t)
            table[token] = row
            numeric[t, s] = (plus - minus) / (2 * h)
    assert rel_error(analytic, numeric) < 1e-7, rel_error(analytic, numeric)
    assert np.abs(analytic).min() > 1e-6  # every entry was really checked, none trivially zero
    saliency = source_saliency(model, src_ids, output_ids, BOS)
    np.testing.assert_allclose(saliency, np.abs(numeric) / np.abs(numeric).sum(axis=1, keepdims=True), atol=1e-6)


def test_a_trace_shows_itself_inline_in_jupyter():
    """_repr_html_ is the self-contained page, escaped into one iframe's srcdoc."""
    import html

    from minitransformer.viz.html import render_html

    trace = record_trace(model_for(), PieceTokenizer(), SOURCE, max_len=6)
    shown = trace._repr_html_()
    assert shown.startswith("<iframe srcdoc=\"") and shown.endswith("</iframe>")
    assert shown.count("<") == 2, "the page must be escaped, not nested raw"
    srcdoc = shown.split('srcdoc="', 1)[1].split('" sandbox=', 1)[0]
    assert html.unescape(srcdoc) == render_html(trace)


def test_a_trace_can_keep_rollout_integrated_gradients_and_head_importance(tmp_path):
    model = model_for()
    trace = record_trace(model, PieceTokenizer(), SOURCE, max_len=6, with_explanations=True)
    steps, sources = trace.cross.shape[2:]
    assert set(trace.explanations) == {"rollout", "integrated gradients"}
    for name, array in trace.explanations.items():
        assert array.shape == (steps, sources)
        np.testing.assert_allclose(array.sum(axis=1), 1.0, rtol=1e-9, err_msg=name)
    assert {stack: table.shape for stack, table in trace.head_importance.items()} == {
        "encoder": (2, 4), "decoder_self": (3, 4), "cross": (3, 4)}
    trace.save(tmp_path / "views")
    loaded = AttentionTrace.load(tmp_path / "views")
    for name, array in trace.explanations.items():
        np.testing.assert_array_equal(loaded.explanations[name], array)
    for stack, table in trace.head_importance.items():
        np.testing.assert_array_equal(loaded.head_importance[stack], table)
