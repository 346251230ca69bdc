"""The HTML attention page in a real browser: headless Chromium opens it with "#selftest",
the page drives every control (attention type, layer, head, the step slider, ◀ and ▶) and
checks what it drew, and the test reads the verdict and any console error from the DOM
Chromium dumps. Nothing is installed here: without Chromium the tests skip, saying so.
"""

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from minitransformer.trace import AttentionTrace
from minitransformer.viz.html import save_html
from test_viz import OUTPUT, SOURCE, known_trace

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium); the browser test needs it"
)


def dump_dom(page, tmp_path):
    """Open ``page#selftest`` headless, let its script run, return the DOM it leaves."""
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=15000",
        "--dump-dom",
        page.resolve().as_uri() + "#selftest",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def self_test_result(dom):
    match = re.search(r'<pre id="selftest-result">(.*?)</pre>', dom, re.S)
    assert match and match.group(1).strip(), "the page wrote no self-test result"
    return json.loads(html.unescape(match.group(1)))


class TableReader(HTMLParser):
    """The matrix table as the browser left it: header texts, row labels, cell values."""

    def __init__(self):
        super().__init__()
        self.columns, self.rows, self.values, self.current_rows = [], [], [], []
        self.inside, self.section, self.cell, self.text = False, None, None, ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id") == "matrix":
            self.inside = True
        if not self.inside:
            return
        if tag in ("thead", "tbody"):
            self.section = tag
        elif tag == "tr" and self.section == "tbody":
            self.values.append([])
            if "current" in (attrs.get("class") or "").split():
                self.current_rows.append(int(attrs["data-row"]))
        elif tag == "th":
            self.cell, self.text = ("column" if attrs.get("class") == "column" else "row"), ""
        elif tag == "td":
            self.values[-1].append(float(attrs["data-value"]))

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False
        if self.inside and tag == "th":
            if self.cell == "column":
                self.columns.append(self.text)
            elif self.section == "tbody":
                self.rows.append(self.text)
            self.cell = None

    def handle_data(self, data):
        if self.cell:
            self.text += data


def test_every_control_works_without_a_console_error(tmp_path):
    trace = known_trace()
    page = save_html(trace, tmp_path / "attention.html")
    result = self_test_result(dump_dom(page, tmp_path))
    assert result["status"] == "pass", result
    assert result["console_errors"] == [] and result["problems"] == []
    # every (type, layer, head) went through the slider, ▶ to the end and past it, and ◀ back
    steps = len(OUTPUT)
    per_view = steps + (steps - 1) + 1 + (steps - 1)
    views = 3 * (1 + 3) * 2 + 1  # three attention types × (mean + 3 heads) × 2 layers, and the saliency
    assert result["checked"] == views * per_view


def test_a_one_step_trace_without_saliency_works_too(tmp_path):
    """An empty translation (only </s>) recorded without saliency: the smallest page."""
    full = known_trace()
    trace = AttentionTrace(
        source_pieces=SOURCE,
        decoder_input_pieces=["<s>"],
        output_pieces=["</s>"],
        encoder=full.encoder,
        decoder_self=np.ones((2, 3, 1, 1)),
        cross=full.cross[:, :, -1:],
        saliency=None,
    )
    result = self_test_result(dump_dom(save_html(trace, tmp_path / "one.html"), tmp_path))
    assert result["status"] == "pass", result
    assert result["checked"] == 3 * (1 + 3) * 2 * 2  # each view: the slider's one step, and ▶ at the end


def test_the_page_the_browser_drew_has_steps_as_rows_and_source_pieces_as_columns(tmp_path):
    trace = known_trace()
    dom = dump_dom(save_html(trace, tmp_path / "attention.html"), tmp_path)
    table = TableReader()
    table.feed(dom)
    # the self-test leaves the last layer's mean cross-attention at step 1
    assert table.columns == SOURCE
    assert table.rows == OUTPUT
    assert table.current_rows == [0]
    np.testing.assert_allclose(np.array(table.values), trace.cross[-1].mean(axis=0), atol=1e-6)


def test_console_errors_and_exceptions_are_caught_and_fail_the_self_test(tmp_path):
    """The guard is real: a page that logs an error and throws later is reported as failing."""
    page = save_html(known_trace(), tmp_path / "attention.html")
    broken = tmp_path / "broken.html"
    injected = (
        '<script>console.error("injected failure");'
        ' setTimeout(() => { throw new Error("late boom"); }, 50);</script>'
    )
    broken.write_text(page.read_text(encoding="utf-8").replace("</body>", injected + "</body>"), encoding="utf-8")
    result = self_test_result(dump_dom(broken, tmp_path))
    assert result["status"] == "fail"
    assert "injected failure" in result["console_errors"]
    assert any("late boom" in error for error in result["console_errors"])


# Chapter 10 shows the page as a screenshot, docs/images/10-html-explorer.png, beside the page
# itself, docs/images/10-html-explorer.html: the chapter's tiny translator (docs/make_figures.py
# trains it for the figure 10-attention-vs-saliency) on the sentence it never saw. This test
# takes that screenshot. It checks what another machine's rounding cannot change: the page
# renders to a picture of the committed size that is not blank, with the chapter's words on
# it; the maps themselves may differ between machines (see TRAINED_BY_CHAOTIC_STEPS in
# tests/test_docs.py). MINITRANSFORMER_WRITE_SCREENSHOT=1 writes both files into docs/images/.
DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
SCREENSHOT_SIZE = (1000, 580)  # the browser window, in CSS pixels


def screenshot(page, png, tmp_path):
    """Open ``page`` headless in a window of SCREENSHOT_SIZE and save what it shows to ``png``."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
               f"--window-size={SCREENSHOT_SIZE[0]},{SCREENSHOT_SIZE[1]}", f"--screenshot={png}",
               page.resolve().as_uri()]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0 and png.is_file(), result.stderr[-2000:]
    return png


def test_the_book_shows_a_screenshot_of_the_explorer_taken_here(tmp_path):
    import importlib.util
    import os

    from PIL import Image

    from minitransformer.trace import record_trace

    spec = importlib.util.spec_from_file_location("make_figures", DOCS_IMAGES.parent / "make_figures.py")
    make_figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_figures)
    model, vocabulary, _ = make_figures.train_tiny_translator()
    trace = record_trace(model, vocabulary, vocabulary.encode_src(make_figures.TINY_HELD_OUT))
    page = save_html(trace, tmp_path / "10-html-explorer.html")
    text = page.read_text(encoding="utf-8")
    assert all(f'"{word}"' in text for word in make_figures.TINY_HELD_OUT.split())  # the sentence's pieces
    png = screenshot(page, tmp_path / "10-html-explorer.png", tmp_path)
    if os.environ.get("MINITRANSFORMER_WRITE_SCREENSHOT"):
        shutil.copyfile(page, DOCS_IMAGES / page.name)
        shutil.copyfile(png, DOCS_IMAGES / png.name)
    committed = DOCS_IMAGES / "10-html-explorer.png"
    assert committed.is_file() and (DOCS_IMAGES / "10-html-explorer.html").is_file(), (
        "run MINITRANSFORMER_WRITE_SCREENSHOT=1 pytest tests/test_browser.py and commit docs/images/"
    )
    with Image.open(png) as new, Image.open(committed) as old:
        assert new.size == old.size == SCREENSHOT_SIZE, (new.size, old.size)
        pixels = np.asarray(new.convert("L"), dtype=float)  # (height, width)
    assert pixels.std() > 10, "the screenshot is blank"


def test_rollout_integrated_gradients_and_head_importance_are_views_too(tmp_path):
    """A trace with interpret/'s views: each is a (step, source) kind like the saliency, and
    the head-importance tables show the trace's numbers."""
    base = known_trace()
    rng = np.random.default_rng(0)
    steps, sources = base.cross.shape[2:]
    base.explanations = {name: rng.dirichlet(np.ones(sources), size=steps) for name in ("rollout", "integrated gradients")}
    base.head_importance = {stack: rng.random((2, 3)) for stack in ("encoder", "decoder_self", "cross")}
    result = self_test_result(dump_dom(save_html(base, tmp_path / "views.html"), tmp_path))
    assert result["status"] == "pass", result
    per_view = steps + (steps - 1) + 1 + (steps - 1)
    views = 3 * (1 + 3) * 2 + 1 + 2  # the attention types, the saliency, and the two new kinds
    assert result["checked"] == views * per_view + 3  # and one check per importance table


def test_a_data_sets_head_importance_is_drawn_as_its_own_tables(tmp_path):
    """Given a data set's importance, the page draws one more heat map per stack and its
    self-test checks each cell against the embedded numbers."""
    base = known_trace()
    rng = np.random.default_rng(1)
    base.head_importance = {stack: rng.random((2, 3)) for stack in ("encoder", "decoder_self", "cross")}
    dataset = {"label": "over 7 sentences of t.tsv", "importance": {s: rng.random((2, 3)) for s in base.head_importance}}
    dom = dump_dom(save_html(base, tmp_path / "dataset.html", dataset), tmp_path)
    result = self_test_result(dom)
    assert result["status"] == "pass", result
    steps = base.cross.shape[2]
    per_view = steps + (steps - 1) + 1 + (steps - 1)
    assert result["checked"] == (3 * (1 + 3) * 2 + 1) * per_view + 3 + 3  # the sentence's tables and the data set's
    assert "head importance over 7 sentences of t.tsv" in html.unescape(dom)
