"""Attention as a PNG: for each attention type a grid of heatmaps, layers × heads, and the
saliency beside the heads' mean cross-attention.

    from minitransformer.viz.png import save_png
    save_png(trace, "cat.png")

Every heatmap puts the queries on the y-axis, top to bottom (the output piece each step
produced; source pieces for the encoder), and the keys on the x-axis (source pieces, or
the decoder's input pieces for its self-attention), each tick labelled with its piece.
The colour scale is fixed to [0, 1] in every panel, since every row is a distribution
summing to 1: panels can be compared by colour. matplotlib draws with its Agg renderer,
through the object interface: no pyplot, no display, no global state.
"""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import KINDS, SALIENCY, axis_labels, select

INCHES_PER_PIECE = 0.2
TICK_FONT = 7


def _draw(ax, matrix, rows, columns, title, rows_name=None, columns_name=None):
    """One heatmap (R, C) on ``ax``: ticks labelled with the pieces, row 0 at the top."""
    image = ax.imshow(
        np.asarray(matrix), cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto"
    )
    ax.set_xticks(np.arange(len(columns)), labels=list(columns), rotation=90, fontsize=TICK_FONT)
    ax.set_yticks(np.arange(len(rows)), labels=list(rows), fontsize=TICK_FONT)
    ax.set_title(title, fontsize=8)
    if columns_name:
        ax.set_xlabel(columns_name, fontsize=7)
    if rows_name:
        ax.set_ylabel(rows_name, fontsize=7)
    return image


def _panel_size(n_rows, n_columns):
    """(width, height) in inches of one heatmap with its tick labels."""
    return 1.4 + INCHES_PER_PIECE * n_columns, 1.3 + INCHES_PER_PIECE * n_rows


def attention_figure(trace):
    """The whole trace as one matplotlib Figure (Agg canvas): a section per attention type
    (layers as rows, heads as columns), then the saliency section."""
    # a recurrent model (rnn/) has cross-attention only: types with no layer get no section
    sections = [kind for kind in ("encoder", "decoder_self", "cross") if getattr(trace, kind).shape[0]]
    sizes = {}
    for kind in sections:
        rows, columns = axis_labels(trace, kind)
        n_layers, n_heads = getattr(trace, kind).shape[:2]
        width, height = _panel_size(len(rows), len(columns))
        sizes[kind] = (n_heads * width, n_layers * height + 0.6)
    rows, columns = axis_labels(trace, "cross")
    width, height = _panel_size(len(rows), len(columns))
    sizes["saliency"] = (2 * width, height + 0.6)
    fig_width = max(8.0, max(width for width, _ in sizes.values()) + 1.2)
    figure = Figure(figsize=(fig_width, sum(height for _, height in sizes.values()) + 0.8), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(f"{trace.source_text}  →  {trace.output_text}", fontsize=10)
    subfigures = figure.subfigures(len(sizes), 1, height_ratios=[height for _, height in sizes.values()])
    for subfigure, kind in zip(subfigures, sections):
        rows, columns = axis_labels(trace, kind)
        n_layers, n_heads = getattr(trace, kind).shape[:2]
        names = KINDS[kind]
        subfigure.suptitle(
            f"{names['title']}: y = {names['rows']}, x = {names['columns']}", fontsize=9, fontweight="bold"
        )
        axes = subfigure.subplots(n_layers, n_heads, squeeze=False)
        for layer in range(n_layers):
            for head in range(n_heads):
                image = _draw(
                    axes[layer, head],
                    select(trace, kind, layer, head),
                    rows,
                    columns,
                    f"{names['title']} · layer {layer + 1} · head {head + 1}",
                    names["rows"] if head == 0 else None,
                    names["columns"] if layer == n_layers - 1 else None,
                )
        subfigure.colorbar(image, ax=axes, shrink=0.8, label="attention weight")
    # the saliency, beside what the heads of the last layer attended to on average
    draw_summary(subfigures[-1], trace)
    return figure


def draw_summary(figure, trace):
    """On ``figure`` (a Figure or SubFigure): the last layer's cross-attention, mean of its
    heads, beside the gradient × input saliency, with the same axes."""
    figure.suptitle("what each output piece attended to, and what it depended on", fontsize=9, fontweight="bold")
    axes = figure.subplots(1, 2, squeeze=False)
    rows, columns = axis_labels(trace, "cross")
    n_layers, n_heads = trace.cross.shape[:2]
    image = _draw(
        axes[0, 0],
        select(trace, "cross", -1, None),
        rows,
        columns,
        f"cross-attention · layer {n_layers} · mean of {n_heads} heads",
        KINDS["cross"]["rows"],
        KINDS["cross"]["columns"],
    )
    if trace.saliency is not None:
        image = _draw(
            axes[0, 1], trace.saliency, rows, columns, SALIENCY["title"], SALIENCY["rows"], SALIENCY["columns"]
        )
    else:
        axes[0, 1].set_axis_off()
        axes[0, 1].set_title("saliency: not recorded", fontsize=8)
    figure.colorbar(image, ax=axes, shrink=0.8, label="weight (rows sum to 1)")


def summary_figure(trace):
    """Only the summary row of attention_figure: a compact picture of one translation."""
    rows, columns = axis_labels(trace, "cross")
    width, height = _panel_size(len(rows), len(columns))
    figure = Figure(figsize=(2 * width + 1.2, height + 0.9), layout="constrained")
    FigureCanvasAgg(figure)
    draw_summary(figure, trace)
    return figure


def save_png(trace, path, dpi=110, summary=False):
    """Draw the trace (or only its summary row) and write it to ``path``; returns the Figure."""
    figure = summary_figure(trace) if summary else attention_figure(trace)
    figure.savefig(path, dpi=dpi)
    return figure
