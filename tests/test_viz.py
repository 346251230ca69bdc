"""The three viewers draw a trace with rows = queries and columns = keys, labelled with the
right pieces. The trace here is built by hand with a known alignment, so that a transposed
or mislabelled drawing puts a full block, a bright pixel or a number in the wrong place."""

import json
import re

import numpy as np
import pytest

from minitransformer.trace import AttentionTrace
from minitransformer.viz.html import render_html, save_html
from minitransformer.viz.png import attention_figure, save_png, summary_figure
from minitransformer.viz.terminal import heatmap, render_attention, render_steps, render_trace, text_width

SOURCE = ["▁the", "▁black", "▁cat", "▁sleeps", "▁."]
OUTPUT = ["▁le", "▁chat", "▁noir", "▁dort", "▁.", "</s>"]
# which source piece each output piece looks at (cross-attention) and depends on (saliency)
ALIGNED = {"▁le": "▁the", "▁chat": "▁cat", "▁noir": "▁black", "▁dort": "▁sleeps", "▁.": "▁.", "</s>": "▁."}
DEPENDS = {"▁le": "▁cat", "▁chat": "▁cat", "▁noir": "▁black", "▁dort": "▁cat", "▁.": "▁sleeps", "</s>": "▁the"}
N_LAYERS, N_HEADS = 2, 3


def peaked_rows(targets, n_keys, allowed=None):
    """(R, n_keys) rows summing to 1 with 0.85 on targets[r], the rest spread evenly."""
    rows = np.zeros((len(targets), n_keys))
    for r, target in enumerate(targets):
        keys = np.arange(n_keys) if allowed is None else np.arange(allowed[r])
        rows[r, keys] = 0.15 / max(1, len(keys) - 1)
        rows[r, target] = 0.85 if len(keys) > 1 else 1.0
    return rows


def known_trace():
    """Every head of every layer carries the same known pattern, except layer 1 head 2,
    whose cross-attention looks one source piece to the right: a viewer showing the wrong
    layer or head is caught too."""
    steps, src_len = len(OUTPUT), len(SOURCE)
    aligned = [SOURCE.index(ALIGNED[piece]) for piece in OUTPUT]
    cross = np.tile(peaked_rows(aligned, src_len), (N_LAYERS, N_HEADS, 1, 1))  # (L, H, T, S)
    cross[0, 1] = peaked_rows([(s + 1) % src_len for s in aligned], src_len)
    # decoder self-attention: each step looks mostly at the previous piece, never ahead
    self_rows = peaked_rows([max(0, t - 1) for t in range(steps)], steps, allowed=[t + 1 for t in range(steps)])
    decoder_self = np.tile(self_rows, (N_LAYERS, N_HEADS, 1, 1))  # (L, H, T, T)
    encoder = np.tile(peaked_rows([(s + 1) % src_len for s in range(src_len)], src_len), (N_LAYERS, N_HEADS, 1, 1))
    saliency = peaked_rows([SOURCE.index(DEPENDS[piece]) for piece in OUTPUT], src_len)  # (T, S)
    return AttentionTrace(
        source_pieces=SOURCE,
        decoder_input_pieces=["<s>"] + OUTPUT[:-1],
        output_pieces=OUTPUT,
        encoder=encoder,
        decoder_self=decoder_self,
        cross=cross,
        saliency=saliency,
        source_ids=list(range(10, 15)),
        output_ids=list(range(20, 25)) + [3],
        source_text="the black cat sleeps .",
        output_text="le chat noir dort .",
        meta={"decoder": "greedy"},
    )


# --- terminal --------------------------------------------------------------------------------


def read_heatmap(text):
    """Parse a rendered heatmap back: {row label: column label of its full-block cell}."""
    lines = text.splitlines()
    body = [i for i, line in enumerate(lines) if "│" in line]
    header = lines[lines.index(next(line for line in lines if line.startswith("columns →"))) + 1 : body[0]]
    indent = lines[body[0]].index("│") + 1
    found = {}
    for i in body:
        label, cells = lines[i].split("│", 1)
        full = [j for j in range(0, len(cells), 3) if cells[j : j + 2] == "██"]
        assert len(full) == 1, lines[i]
        column = "".join(line[indent + full[0]] if len(line) > indent + full[0] else "" for line in header)
        found[label.strip()] = column.strip()
    return found


def test_the_cross_attention_heatmap_puts_each_output_piece_on_its_aligned_source_piece():
    trace = known_trace()
    text = render_attention(trace, "cross", layer=-1, head=None)
    assert read_heatmap(text) == ALIGNED  # rows: output pieces; the █ sits under the aligned source piece
    assert "rows ↓ output piece" in text and "columns → source piece" in text
    # layer 1 head 2 is the shifted one
    shifted = read_heatmap(render_attention(trace, "cross", layer=0, head=1))
    assert shifted == {out: SOURCE[(SOURCE.index(src) + 1) % 5] for out, src in ALIGNED.items()}


def test_the_self_attention_heatmaps_are_labelled_with_their_own_pieces():
    trace = known_trace()
    decoder = read_heatmap(render_attention(trace, "decoder_self"))
    assert decoder == {out: (["<s>"] + OUTPUT)[max(0, t - 1)] for t, out in enumerate(OUTPUT)}
    encoder = read_heatmap(render_attention(trace, "encoder"))
    assert encoder == {SOURCE[s]: SOURCE[(s + 1) % 5] for s in range(5)}


def test_the_step_view_names_the_piece_produced_and_its_top_source_pieces():
    text = render_steps(known_trace())
    step_lines = [line for line in text.splitlines() if re.match(r"\s+\d+ ", line)]
    assert len(step_lines) == len(OUTPUT)
    for line, piece in zip(step_lines, OUTPUT):
        produced, attended, salient = (part.strip() for part in line.split("│"))
        assert produced.split()[1] == piece
        assert attended.split()[0:2] == [ALIGNED[piece], ".85"]
        assert salient.split()[0:2] == [DEPENDS[piece], ".85"]


def test_everything_fits_80_columns_even_with_long_labels_and_many_columns():
    trace = render_trace(known_trace())
    assert max(text_width(line) for line in trace.splitlines()) <= 80
    # 30 keys with long and wide labels: the map wraps into blocks of columns
    rng = np.random.default_rng(0)
    matrix = rng.random((4, 30))
    columns = [f"▁anticonstitutionnellement{j}" if j % 3 else f"猫{j}" for j in range(30)]
    rows = ["▁extraordinairement", "猫猫猫猫猫猫猫猫", "x", "▁é"]
    text = heatmap(matrix, rows, columns, "a very long title " * 8, "queries " * 12, "keys " * 20)
    assert max(text_width(line) for line in text.splitlines()) <= 80
    blocks = re.findall(r"columns (\d+)–(\d+) of 30", text)
    assert blocks == [("1", "15"), ("16", "30")]  # balanced blocks
    assert "▁extraordi…│" in text  # long labels are cut with an ellipsis


def test_a_heatmap_refuses_labels_that_do_not_fit_its_matrix():
    with pytest.raises(ValueError, match="labels"):
        heatmap(np.zeros((2, 3)), ["a", "b", "c"], ["x", "y"], "t", "r", "c")


# --- PNG ------------------------------------------------------------------------------------


def axes_titled(figure, title):
    matches = [ax for ax in figure.get_axes() if ax.get_title() == title]
    assert len(matches) == 1, title
    return matches[0]


def test_the_png_grid_has_queries_on_y_and_keys_on_x_with_piece_tick_labels():
    trace = known_trace()
    figure = attention_figure(trace)
    expectations = {
        "cross-attention": (trace.cross, OUTPUT, SOURCE),
        "decoder self-attention": (trace.decoder_self, OUTPUT, ["<s>"] + OUTPUT[:-1]),
        "encoder self-attention": (trace.encoder, SOURCE, SOURCE),
    }
    for name, (weights, rows, columns) in expectations.items():
        for layer in range(N_LAYERS):
            for head in range(N_HEADS):
                ax = axes_titled(figure, f"{name} · layer {layer + 1} · head {head + 1}")
                assert [label.get_text() for label in ax.get_yticklabels()] == rows
                assert [label.get_text() for label in ax.get_xticklabels()] == columns
                np.testing.assert_array_equal(ax.images[0].get_array(), weights[layer, head])
                assert ax.yaxis_inverted()  # row 0 (the first step) at the top
                if head == 0:
                    assert "query" in ax.get_ylabel()
                if layer == N_LAYERS - 1:
                    assert "(key)" in ax.get_xlabel()
    cross = axes_titled(figure, f"cross-attention · layer {N_LAYERS} · head 1")
    assert cross.get_xlabel() == "source piece (key)" and cross.get_ylabel().startswith("output piece")
    saliency = axes_titled(figure, "gradient × input saliency")
    np.testing.assert_array_equal(saliency.images[0].get_array(), trace.saliency)
    assert [label.get_text() for label in saliency.get_xticklabels()] == SOURCE
    assert [label.get_text() for label in saliency.get_yticklabels()] == OUTPUT


def test_the_png_summary_has_the_mean_cross_attention_and_the_saliency_on_the_same_axes():
    trace = known_trace()
    figure = summary_figure(trace)
    cross = axes_titled(figure, f"cross-attention · layer {N_LAYERS} · mean of {N_HEADS} heads")
    np.testing.assert_allclose(cross.images[0].get_array(), trace.cross[-1].mean(axis=0))
    saliency = axes_titled(figure, "gradient × input saliency")
    np.testing.assert_array_equal(saliency.images[0].get_array(), trace.saliency)
    for ax in (cross, saliency):
        assert [label.get_text() for label in ax.get_yticklabels()] == OUTPUT
        assert [label.get_text() for label in ax.get_xticklabels()] == SOURCE
    assert cross.get_xlabel() == "source piece (key)"


def test_save_png_writes_a_png(tmp_path):
    path = tmp_path / "attention.png"
    save_png(known_trace(), path, dpi=40)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- HTML -----------------------------------------------------------------------------------


def embedded_data(page):
    match = re.search(r'<script type="application/json" id="trace-data">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


def test_the_html_page_embeds_the_trace_in_its_own_orientation():
    trace = known_trace()
    data = embedded_data(render_html(trace))
    assert data["source_pieces"] == SOURCE and data["output_pieces"] == OUTPUT
    assert data["decoder_input_pieces"] == ["<s>"] + OUTPUT[:-1]
    for name in ("encoder", "decoder_self", "cross"):
        np.testing.assert_allclose(np.array(data[name]), getattr(trace, name), atol=1e-6)
    np.testing.assert_allclose(np.array(data["saliency"]), trace.saliency, atol=1e-6)
    # data.cross[layer][head][step][source]: the step of "▁chat" peaks on "▁cat"
    assert int(np.argmax(data["cross"][1][2][OUTPUT.index("▁chat")])) == SOURCE.index("▁cat")


def test_the_html_page_is_self_contained(tmp_path):
    page = render_html(known_trace())
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    for reference in ("http://", "https://", "src=", "href=", "@import", "url(", "<link", "<iframe"):
        assert reference not in page, reference
    for control in ('id="kind"', 'id="layer"', 'id="head"', 'id="step"', 'id="prev"', 'id="next"'):
        assert control in page
    assert save_html(known_trace(), tmp_path / "a.html").read_text(encoding="utf-8") == page


def test_pieces_cannot_break_out_of_the_embedded_json():
    trace = known_trace()
    trace.source_pieces = ["</script><script>alert(1)</script>", "<!--", "&amp;", "\"'", "▁."]
    page = render_html(trace)
    assert page.count("</script>") == 3  # the console guard, the data and the viewer, nothing more
    assert embedded_data(page)["source_pieces"] == trace.source_pieces


def test_the_html_page_carries_a_data_sets_head_importance_when_given_one():
    trace = known_trace()
    assert "dataset_importance" not in embedded_data(render_html(trace))
    tables = {stack: np.random.default_rng(1).random((2, 3)) for stack in ("encoder", "decoder_self", "cross")}
    page = render_html(trace, {"label": "over 3 sentences of t.tsv", "importance": tables})
    shown = embedded_data(page)["dataset_importance"]
    assert shown["label"] == "over 3 sentences of t.tsv"
    for stack, table in tables.items():
        np.testing.assert_allclose(np.array(shown["importance"][stack]), table, atol=1e-6, err_msg=stack)
    assert 'id="dataset-importance"' in page
