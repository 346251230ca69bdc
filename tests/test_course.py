"""The book as a course: references that resolve, one notation, exercises with solutions,
and notebooks that match their chapters and run.

1. References. Chapters cite docs/references.md by key, as a link `references.md#key`.
   Every cited key must be an entry there, and every entry must be cited by some page of
   docs/ (all of docs/*.md, so that the chapters written later are covered too).
2. Notation. Every numbered chapter links docs/notation.md and docs/references.md, and the
   notation's tables give each symbol one row.
3. Exercises. Chapters 1–10 each end with 3 to 6 exercises, every one followed by its
   solution folded in <details>; a later chapter with an Exercises section follows the
   same rules. The solutions' code blocks are ```python blocks, so tests/test_docs.py runs
   them with the chapter's other blocks.
4. Notebooks. docs/notebooks/ holds exactly one notebook per numbered chapter, each what
   `python docs/make_notebooks.py` (`make notebooks`) generates from the Markdown now; and
   the notebooks run headless in a Jupyter kernel (nbclient). Executing them all takes about a
   minute on 2 shared cores, of which chapters 9 (three tiny training runs, 14 s) and 10 (a
   tiny translator trained twice, 8 s) take a third; their code blocks are run by
   tests/test_docs.py in every `make test` anyway, so by default the notebooks of every
   other chapter are executed, and MINITRANSFORMER_NOTEBOOKS=all executes them all.
"""

import importlib.util
import os
import re
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
REFERENCES = DOCS / "references.md"
NOTATION = DOCS / "notation.md"
CHAPTER = re.compile(r"^(\d\d)-.*\.md$")
CITATION = re.compile(r"\]\((?:\./)?references\.md#([A-Za-z0-9_-]+)\)|\]\(#([A-Za-z0-9_-]+)\)")
ENTRY = re.compile(r'^- <a id="([a-z0-9]+)"></a>\*\*([a-z0-9]+)\*\*: (.+)$')
SLOW_NOTEBOOKS = {"09-training.ipynb", "10-decoding-and-attention-maps.ipynb"}


def chapters():
    return sorted(path for path in DOCS.glob("*.md") if CHAPTER.match(path.name))


def pages():
    """Every Markdown page of docs/ except the bibliography itself."""
    return sorted(path for path in DOCS.glob("*.md") if path != REFERENCES)


def reference_entries(text):
    """{key: the entry's text} of a references page; an entry may continue on indented lines."""
    entries, current = {}, None
    for line in text.split("\n"):
        match = ENTRY.match(line)
        if match:
            anchor, key, rest = match.groups()
            assert anchor == key, f"docs/references.md: the anchor {anchor!r} differs from the key {key!r}"
            assert key not in entries, f"docs/references.md lists {key} twice"
            entries[key], current = rest, key
        elif current and line.startswith("  "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


def cited_keys(text, own_anchors=False):
    """The keys a page cites as references.md#key (and, on references.md itself, as #key)."""
    keys = set()
    for match in CITATION.finditer(text):
        if match.group(1):
            keys.add(match.group(1))
        elif own_anchors:
            keys.add(match.group(2))
    return keys


# --- 1. references ------------------------------------------------------------------------


def test_every_entry_names_authors_year_and_title():
    entries = reference_entries(REFERENCES.read_text(encoding="utf-8"))
    assert len(entries) >= 20, f"docs/references.md has only {len(entries)} entries"
    for key, entry in entries.items():
        assert re.search(r"\((\d{4})(–\d{0,4})?\)", entry), f"{key}: no year in parentheses: {entry[:80]}"
        assert re.search(r"\*[^*]+\*", entry), f"{key}: no title in italics: {entry[:80]}"
        authors = entry.split(" (")[0]
        assert authors.strip(), f"{key}: no authors"


def test_every_cited_key_exists_and_every_entry_is_cited():
    entries = reference_entries(REFERENCES.read_text(encoding="utf-8"))
    cited = {}
    for page in pages():
        for key in cited_keys(page.read_text(encoding="utf-8")):
            cited.setdefault(key, []).append(page.name)
    unknown = {key: where for key, where in cited.items() if key not in entries}
    assert not unknown, f"cited but not in docs/references.md: {unknown}"
    uncited = sorted(set(entries) - set(cited))
    assert not uncited, f"entries of docs/references.md that no page of docs/ cites: {uncited}"
    # the page's own links to its entries resolve too
    own = cited_keys(REFERENCES.read_text(encoding="utf-8"), own_anchors=True)
    assert own <= set(entries), f"docs/references.md links to anchors it lacks: {sorted(own - set(entries))}"


def test_the_reference_check_catches_what_it_should():
    page = "[Vaswani et al. 2017](references.md#vaswani2017) and [a typo](references.md#vaswani2071)."
    assert cited_keys(page) == {"vaswani2017", "vaswani2071"}
    entries = reference_entries('- <a id="vaswani2017"></a>**vaswani2017**: A. Vaswani (2017).\n  *Attention Is All You Need*.')
    assert set(entries) == {"vaswani2017"} and "*Attention Is All You Need*" in entries["vaswani2017"]
    assert cited_keys(page) - set(entries) == {"vaswani2071"}
    with pytest.raises(AssertionError, match="twice"):
        reference_entries('- <a id="a2000"></a>**a2000**: A (2000). *T*.\n- <a id="a2000"></a>**a2000**: A (2000). *T*.')


# --- 2. notation ----------------------------------------------------------------------------


@pytest.mark.parametrize("chapter", chapters(), ids=lambda path: path.name)
def test_each_chapter_links_the_notation_and_the_references(chapter):
    text = chapter.read_text(encoding="utf-8")
    assert "](notation.md)" in text, f"{chapter.name} does not link notation.md"
    assert "](references.md)" in text or "](references.md#" in text, f"{chapter.name} does not link references.md"


# the one letter the notation gives two uses, and says so ("double duty"): the vocabulary
# size in shapes and the value matrix in formulas, as in the paper
DOUBLE_DUTY = {"V"}


def test_each_symbol_of_the_notation_has_one_row():
    text = NOTATION.read_text(encoding="utf-8")
    rows = {}
    for number, line in enumerate(text.split("\n"), start=1):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) < 2 or set(cells[0]) <= set("- ") or cells[0] in ("letter", "index", "symbol"):
            continue
        for symbol in (part.strip() for part in re.split(r",(?![^\[(]*[\])])", cells[0])):  # not inside [t, s]
            if symbol in rows and symbol in DOUBLE_DUTY:
                assert f"**{symbol}** is" in text.split("double duty", 1)[-1], f"{symbol}'s two uses are not explained"
                continue
            assert symbol not in rows, f"docs/notation.md gives {symbol!r} two rows (lines {rows[symbol]} and {number})"
            rows[symbol] = number
    for letter in ("B", "T", "S", "D", "H", "Dh", "F", "N", "V", "E", "P", "O", "h", "lse", "r", "Δ"):
        assert letter in rows, f"docs/notation.md does not define {letter}"


# --- 3. exercises ---------------------------------------------------------------------------

EXERCISE = re.compile(r"^\*\*(\d+)\.(\d+) \((recall|derivation|code|derivation and code)\)\.\*\*", re.M)


def exercises_problems(text, number):
    """[message] for an Exercises section that breaks the rules (None: there is no section)."""
    if "\n## Exercises\n" not in text:
        return None
    section = text.split("\n## Exercises\n", 1)[1].split("\n## ", 1)[0]
    found = list(EXERCISE.finditer(section))
    problems = []
    if not 3 <= len(found) <= 6:
        problems.append(f"{len(found)} exercises (3 to 6 wanted)")
    for index, match in enumerate(found):
        chapter, exercise = int(match.group(1)), int(match.group(2))
        if chapter != number or exercise != index + 1:
            problems.append(f"exercise {chapter}.{exercise} is numbered out of order")
        end = found[index + 1].start() if index + 1 < len(found) else len(section)
        body = section[match.end() : end]
        if "<details><summary>Solution</summary>" not in body or "</details>" not in body:
            problems.append(f"exercise {chapter}.{exercise} has no folded solution")
        elif "code" in match.group(3) and "```python\n" not in body.split("<details>", 1)[1]:
            problems.append(f"exercise {chapter}.{exercise} asks for code but its solution has no python block")
    return problems


@pytest.mark.parametrize("chapter", chapters(), ids=lambda path: path.name)
def test_each_chapter_has_exercises_with_folded_solutions(chapter):
    number = int(CHAPTER.match(chapter.name).group(1))
    problems = exercises_problems(chapter.read_text(encoding="utf-8"), number)
    if problems is None:
        assert number > 10, f"{chapter.name} has no '## Exercises' section"
        return
    assert not problems, f"{chapter.name}: " + "; ".join(problems)


def test_the_exercise_check_catches_what_it_should():
    solution = "<details><summary>Solution</summary>\n\n```python\nx = 1\n```\n\n</details>\n\n"
    good = "\n## Exercises\n\n" + "".join(f"**3.{i} (code).** Q.\n\n{solution}" for i in (1, 2, 3)) + "## Where\n"
    assert exercises_problems(good, 3) == []
    assert exercises_problems("# no section\n", 3) is None
    assert exercises_problems(good.replace("**3.2", "**3.5"), 3)  # out of order
    assert exercises_problems(good.replace("```python\nx = 1\n```", "words", 1), 3)  # code without a block
    assert exercises_problems(good.replace(solution, "", 1), 3)  # a solution missing
    assert exercises_problems(good.replace("**3.3 (code).** Q.", "", 1).replace(solution + "## Where", "## Where"), 3)


# --- 4. notebooks ---------------------------------------------------------------------------


@lru_cache(maxsize=None)
def make_notebooks():
    spec = importlib.util.spec_from_file_location("make_notebooks", DOCS / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_is_one_notebook_per_chapter():
    wanted = {chapter.with_suffix(".ipynb").name for chapter in chapters()}
    present = {path.name for path in (DOCS / "notebooks").glob("*.ipynb")}
    assert present == wanted, f"docs/notebooks/ differs from the chapters (run `make notebooks`): {sorted(present ^ wanted)}"


@pytest.mark.parametrize("chapter", chapters(), ids=lambda path: path.name)
def test_each_notebook_is_what_its_chapter_generates(chapter):
    module = make_notebooks()
    path = module.notebook_path(chapter)
    assert path.is_file(), f"{path.name} is missing: run `make notebooks` and commit docs/notebooks/"
    assert path.read_text(encoding="utf-8") == module.notebook_text(chapter), (
        f"{path.name} is out of date with docs/{chapter.name}: run `make notebooks` and commit docs/notebooks/"
    )


def test_a_no_run_block_becomes_a_skipped_cell_and_links_move_one_folder_up(tmp_path):
    import json

    page = tmp_path / "99-page.md"
    page.write_text("# 99. A page\n\nSee ![a figure](figures/x.png) and [the web](https://example.org).\n\n"
                    "```python\nx = 1\n```\n\n```python no-run\n# needs a trained run\nraise SystemExit\n```\n")  # fmt: skip
    notebook = json.loads(make_notebooks().notebook_text(page))
    kinds = [(cell["cell_type"], cell["metadata"].get("tags", [])) for cell in notebook["cells"]]
    assert kinds == [("code", ["setup"]), ("markdown", []), ("code", []), ("code", ["skip-execution"])]
    assert "](../figures/x.png)" in "".join(notebook["cells"][1]["source"])
    assert "](https://example.org)" in "".join(notebook["cells"][1]["source"])
    assert make_notebooks().notebook_text(page) == make_notebooks().notebook_text(page)  # the same bytes


def executed_notebooks():
    every = [make_notebooks().notebook_path(chapter) for chapter in chapters()]
    if os.environ.get("MINITRANSFORMER_NOTEBOOKS") == "all":
        return every
    return [path for path in every if path.name not in SLOW_NOTEBOOKS]


@pytest.mark.parametrize("path", executed_notebooks(), ids=lambda path: path.name)
def test_each_notebook_runs_headless(path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    # generous limits: on a machine shared with other jobs a kernel has taken over 60 s to start
    client = NotebookClient(notebook, timeout=300, startup_timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})  # fmt: skip
    client.execute()  # raises CellExecutionError, with the cell and the traceback, on any failure
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    ran = [cell for cell in code_cells if "skip-execution" not in cell.metadata.get("tags", [])]
    assert ran and all(cell.get("execution_count") for cell in ran), f"{path.name}: a cell did not run"
