"""Views of an attention trace (minitransformer/trace.py), one per medium.

    terminal.py   labelled heatmaps in Unicode shading blocks, and a step-by-step view
    png.py        matplotlib grids, layers × heads, for each attention type and the saliency
    html.py       one self-contained page: pick the type, layer and head, step through decoding

Every view uses the same orientation: rows are queries (the piece a step produced, or a
source piece for the encoder), columns are keys (source pieces, or the decoder's input).
"""

# the three attention types of a trace, with the labels of their axes
KINDS = {
    "encoder": {
        "title": "encoder self-attention",
        "rows": "source piece (query)",
        "columns": "source piece (key)",
    },
    "decoder_self": {
        "title": "decoder self-attention",
        "rows": "output piece produced at the step (query)",
        "columns": "decoder input piece (key)",
    },
    "cross": {
        "title": "cross-attention",
        "rows": "output piece produced at the step (query)",
        "columns": "source piece (key)",
    },
}
SALIENCY = {
    "title": "gradient × input saliency",
    "rows": "output piece produced at the step",
    "columns": "source piece",
}


def axis_labels(trace, kind):
    """(row labels, column labels) of a trace's attention type, or of "saliency"."""
    if kind == "encoder":
        return trace.source_pieces, trace.source_pieces
    if kind == "decoder_self":
        return trace.output_pieces, trace.decoder_input_pieces
    if kind in ("cross", "saliency"):
        return trace.output_pieces, trace.source_pieces
    raise ValueError(f"unknown attention type {kind!r}; choose encoder, decoder_self, cross or saliency")


def select(trace, kind, layer=-1, head=None):
    """The (rows, columns) matrix to show: one layer's head, or its heads' mean (head=None)."""
    if kind == "saliency":
        if trace.saliency is None:
            raise ValueError("this trace was recorded without saliency")
        return trace.saliency
    weights = getattr(trace, kind)[layer]  # (H, rows, columns)
    return weights.mean(axis=0) if head is None else weights[head]
