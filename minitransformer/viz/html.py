"""Attention as one self-contained HTML page: pick the attention type, the layer and the
head, and step through the decoding with a slider (or ◀ ▶, or the arrow keys); the row of
the current step is highlighted, the source pieces are coloured by that step's
cross-attention, and its top source pieces by attention and by saliency are listed.

    from minitransformer.viz.html import save_html
    save_html(trace, "cat.html")           # open it in any browser, offline

The page is the template attention.html beside this file with the trace embedded as JSON
in a <script type="application/json"> element. Its style and script are inline and its
Content-Security-Policy forbids every fetch, so it makes no network request. The arrays
keep their orientation: data.cross[layer][head][step][source position], and so on.
Opening it with "#selftest" runs the page's own test of every control (tests/test_browser.py).

    save_html(trace, "cat.html", dataset_importance=read_importance("inspect/heads.json", model.config))

adds, below this sentence's head importance, the importance of every head averaged over the
data set that `minitransformer inspect heads` read (interpret/importance.py), as the same
layer × head heat maps: data.dataset_importance = {label, importance: {stack: [layer][head]}}.
"""

import html
import json
from pathlib import Path

import numpy as np

TEMPLATE = Path(__file__).with_name("attention.html")
DECIMALS = 6  # enough for a view; keeps a long sentence's page small


def trace_data(trace):
    """The trace as plain JSON-ready values, every array in the trace's own orientation."""

    def rounded(array):
        return np.round(np.asarray(array, dtype=np.float64), DECIMALS).tolist()

    return {
        "source_text": trace.source_text,
        "output_text": trace.output_text,
        "source_pieces": list(trace.source_pieces),
        "decoder_input_pieces": list(trace.decoder_input_pieces),
        "output_pieces": list(trace.output_pieces),
        "encoder": rounded(trace.encoder),  # [layer][head][source query][source key]
        "decoder_self": rounded(trace.decoder_self),  # [layer][head][step][decoder input key]
        "cross": rounded(trace.cross),  # [layer][head][step][source key]
        "saliency": None if trace.saliency is None else rounded(trace.saliency),  # [step][source]
        "explanations": {name: rounded(array) for name, array in trace.explanations.items()},  # [step][source]
        "head_importance": {stack: rounded(array) for stack, array in trace.head_importance.items()},  # [layer][head]
        "meta": trace.meta,
    }


def render_html(trace, dataset_importance=None):
    """The page as a string. dataset_importance: None, or {"label": str, "importance":
    {stack: (L, H)}} (interpret/importance.py's read_importance)."""
    if trace.n_steps == 0:
        raise ValueError("the trace has no decoding steps to show")
    data = trace_data(trace)
    if dataset_importance is not None:
        data["dataset_importance"] = {
            "label": str(dataset_importance["label"]),
            "importance": {stack: np.round(np.asarray(table, dtype=np.float64), DECIMALS).tolist()
                           for stack, table in dataset_importance["importance"].items()},  # [layer][head]
        }
    # "<" as \u003c keeps "</script>" or "<!--" inside a piece from ending the script element
    data = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    title = html.escape(f"attention: {trace.source_text} → {trace.output_text}")
    # split at the placeholders first, so that text inside the trace is never taken for one
    head, rest = TEMPLATE.read_text(encoding="utf-8").split("__TITLE__")
    middle, tail = rest.split("__TRACE_JSON__")
    return head + title + middle + data + tail


def save_html(trace, path, dataset_importance=None):
    """Write the page to ``path``; returns the path."""
    path = Path(path)
    path.write_text(render_html(trace, dataset_importance), encoding="utf-8")
    return path
