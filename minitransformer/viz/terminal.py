"""Attention in the terminal: labelled heatmaps in shading blocks, 80 columns wide.

    from minitransformer.viz.terminal import render_trace
    print(render_trace(trace))               # the last layer, heads averaged
    print(render_trace(trace, layer=0, head=2))

A heatmap has one text row per query and one 3-character cell per key:

    cross-attention · layer 2 of 2 · mean of 4 heads
    rows ↓ output piece produced at the step (query)
    columns → source piece (key)
                 ▁  ▁  ▁  ▁
                 t  b  c  s
                 h  l  a  l
                 e  a  t  e
    ▁le         │██ ░░
    ▁chat       │      ██ ░░

Column labels are written downwards, one character per line, so that a sentence of 20
pieces still fits: a key needs 3 columns, not the length of its piece. Labels longer than
the room end in "…"; when the keys do not fit beside the row labels, the map continues in
a second block of columns. Shades are relative to the largest weight shown, in fifths,
and the legend under the map says what the largest weight was.
"""

import textwrap
import unicodedata

import numpy as np

from . import KINDS, SALIENCY, axis_labels, select

SHADES = " ░▒▓█"
CELL = 3  # columns per key: two shading characters and a gap
ROW_LABEL_WIDTH = 11  # at most, for the row labels
COLUMN_LABEL_HEIGHT = 8  # at most, for the downward column labels


def char_width(char):
    """Terminal columns of one character: 0 for combining marks, 2 for wide CJK."""
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in "WF" else 1


def text_width(text):
    return sum(char_width(char) for char in text)


def fit(text, width):
    """``text`` cut to ``width`` terminal columns (ending in "…" when cut), padded with spaces."""
    text = "".join(char if char.isprintable() else "?" for char in str(text))
    if text_width(text) > width:
        kept, used = [], 0
        for char in text:
            if used + char_width(char) > width - 1:
                break
            kept.append(char)
            used += char_width(char)
        text = "".join(kept) + "…"
    return text + " " * (width - text_width(text))


def shade(value, largest):
    """One of " ░▒▓█" for value / largest in fifths: [0, .2) is blank, [.8, 1] is full."""
    if largest <= 0:
        return SHADES[0]
    return SHADES[min(len(SHADES) - 1, int(len(SHADES) * value / largest))]


def heatmap(matrix, row_labels, column_labels, title, rows_name, columns_name, width=80):
    """matrix (R, C) -> the labelled map as a string, no line wider than ``width``."""
    matrix = np.asarray(matrix, dtype=np.float64)  # (R, C)
    n_rows, n_columns = matrix.shape
    if (len(row_labels), len(column_labels)) != (n_rows, n_columns):
        raise ValueError(
            f"{len(row_labels)} row labels and {len(column_labels)} column labels for a {matrix.shape} map"
        )
    largest = float(matrix.max()) if matrix.size else 0.0
    label_width = min(ROW_LABEL_WIDTH, max([text_width(label) for label in row_labels] + [1]))
    indent = label_width + 1  # the row label, then "│"
    per_block = max(1, (width - indent) // CELL)
    # blocks of equal size: 30 keys that fit 22 at a time go as 15 + 15, not 22 + 8
    n_blocks = -(-n_columns // per_block)
    per_block = -(-n_columns // n_blocks) if n_columns else per_block
    lines = [fit(title, width), fit(f"rows ↓ {rows_name}", width), fit(f"columns → {columns_name}", width)]
    for start in range(0, n_columns, per_block):
        block = range(start, min(n_columns, start + per_block))
        if n_columns > per_block:
            lines.append(fit(f"columns {block.start + 1}–{block.stop} of {n_columns}:", width))
        # the column labels, downwards: line i holds the i-th character of every label
        labels = [fit(column_labels[j], COLUMN_LABEL_HEIGHT).rstrip() or "·" for j in block]
        for i in range(max(len(label) for label in labels)):
            cells = [fit(label[i] if i < len(label) else "", CELL) for label in labels]
            lines.append(" " * indent + "".join(cells))
        for i in range(n_rows):
            cells = "".join(fit(shade(matrix[i, j], largest) * (CELL - 1), CELL) for j in block)
            lines.append(fit(row_labels[i], label_width) + "│" + cells)
    lines.append(fit(f"shades ' ░▒▓█' = fifths of the largest weight shown, {largest:.2f}", width))
    return "\n".join(line.rstrip() for line in lines)


def describe(trace, kind, layer, head):
    """'cross-attention · layer 2 of 2 · mean of 4 heads'."""
    weights = getattr(trace, kind)
    n_layers, n_heads = weights.shape[:2]
    which = f"mean of {n_heads} heads" if head is None else f"head {head % n_heads + 1} of {n_heads}"
    return f"{KINDS[kind]['title']} · layer {layer % n_layers + 1} of {n_layers} · {which}"


def render_attention(trace, kind, layer=-1, head=None, width=80):
    """One attention type of a trace as a heatmap; layer and head are 0-based, head=None averages."""
    rows, columns = axis_labels(trace, kind)
    return heatmap(
        select(trace, kind, layer, head),
        rows,
        columns,
        describe(trace, kind, layer, head),
        KINDS[kind]["rows"],
        KINDS[kind]["columns"],
        width,
    )


def render_saliency(trace, width=80):
    rows, columns = axis_labels(trace, "saliency")
    title = f"{SALIENCY['title']} · |Σ_D ∂log p(y_t)/∂e_s ⊙ e_s|, rows sum to 1"
    return heatmap(trace.saliency, rows, columns, title, SALIENCY["rows"], SALIENCY["columns"], width)


def top_pieces(weights, pieces, count, label_width):
    """'▁cat .71  ▁the .12': the ``count`` largest weights of one row, largest first."""
    order = np.argsort(-np.asarray(weights), kind="stable")[:count]
    return "  ".join(fit(pieces[j], label_width) + f" {weights[j]:.2f}".replace(" 0.", " .") for j in order)


def render_steps(trace, layer=-1, head=None, width=80, count=2):
    """Step by step: the piece each step produced, the source pieces its cross-attention
    weighed most and, beside them, the source pieces its saliency ranked highest."""
    cross = select(trace, "cross", layer, head)  # (T, S)
    step_width, piece_width = 4, 10
    panel = (width - step_width - 1 - piece_width - 2 * 3) // 2  # two panels after " │ "
    label_width = max(3, (panel - count * 4 - 2 * (count - 1)) // count)
    columns = [fit("step", step_width) + " " + fit("produced", piece_width)]
    columns.append(fit("cross-attention looked at", panel))
    if trace.saliency is not None:
        columns.append(fit("saliency: depended on", panel))
    lines = [fit("step by step: the source pieces each output piece", width)]
    lines.append(fit(f"looked at most ({describe(trace, 'cross', layer, head)})", width))
    if trace.saliency is not None:
        lines.append(fit("and depended on most (gradient × input saliency)", width))
    lines.append(" │ ".join(columns))
    for step, piece in enumerate(trace.output_pieces):
        parts = [f"{step + 1:>{step_width}} " + fit(piece, piece_width)]
        parts.append(fit(top_pieces(cross[step], trace.source_pieces, count, label_width), panel))
        if trace.saliency is not None:
            parts.append(fit(top_pieces(trace.saliency[step], trace.source_pieces, count, label_width), panel))
        lines.append(" │ ".join(parts))
    return "\n".join(line.rstrip() for line in lines)


def render_trace(trace, layer=-1, head=None, width=80):
    """Everything: the sentences, the three attention types, the saliency, the steps."""
    sentences = []
    for name, text in (("source", trace.source_text), ("output", trace.output_text)):
        wrapped = textwrap.wrap(f"{name}: {text}", width=width, subsequent_indent="  ") or [f"{name}:"]
        sentences.extend(fit(line, width).rstrip() for line in wrapped)
    parts = ["\n".join(sentences)]
    for kind in ("encoder", "decoder_self", "cross"):
        if getattr(trace, kind).shape[0]:  # a recurrent model (rnn/) has cross-attention only
            parts.append(render_attention(trace, kind, layer, head, width))
    if trace.saliency is not None:
        parts.append(render_saliency(trace, width))
    parts.append(render_steps(trace, layer, head, width))
    return "\n\n".join(parts)
