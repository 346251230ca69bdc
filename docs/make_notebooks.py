"""Write every chapter of docs/ as a Jupyter notebook into docs/notebooks/, with jupytext.

    python docs/make_notebooks.py            # all chapters (what `make notebooks` runs)
    python docs/make_notebooks.py --check    # exit 1 naming the notebooks that are out of date

The Markdown chapters are the source; a notebook is generated from one and never edited by
hand, so the two cannot drift (tests/test_course.py regenerates each notebook and compares it
with the committed file, and executes them headless with nbclient).

What the conversion adds to jupytext's Markdown reader:
  * a first code cell that moves to the repository root, because the chapters' paths
    (data/, runs/) are relative to it, as when tests/test_docs.py runs their blocks;
  * relative links and images point one folder up (the notebooks live in docs/notebooks/);
  * a block fenced ```python no-run (it needs a trained run) gets the tag "skip-execution",
    which nbclient honours;
  * fixed cell ids and metadata, so that the same chapter always gives the same bytes.
"""

import argparse
import re
import sys
from pathlib import Path

import jupytext
import nbformat

DOCS = Path(__file__).resolve().parent
NOTEBOOKS = DOCS / "notebooks"
CHAPTER = re.compile(r"^\d\d-.*\.md$")
LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")
SKIP_TAG = "skip-execution"

SETUP = """\
# Setup: run this notebook from a checkout of minitransformer, with the package installed
# (`make setup`, or `pip install -e .` in the checkout; on Colab, clone the repository and
# `pip install -e .` first). The chapter's paths are relative to the repository root.
import os
from pathlib import Path

root = next((folder for folder in (Path.cwd(), *Path.cwd().parents) if (folder / "minitransformer").is_dir()), None)
if root is not None:
    os.chdir(root)
os.environ.setdefault("MPLBACKEND", "Agg")"""


def chapters():
    """The numbered chapters of docs/, in order."""
    return sorted(path for path in DOCS.glob("*.md") if CHAPTER.match(path.name))


def notebook_path(chapter):
    return NOTEBOOKS / chapter.with_suffix(".ipynb").name


def one_folder_up(markdown):
    """Relative link targets, as seen from docs/notebooks/."""

    def rewrite(match):
        opening, target, closing = match.groups()
        if re.match(r"^[a-z]+:", target) or target.startswith(("#", "/")):
            return match.group(0)
        return f"{opening}../{target}{closing}"

    return LINK.sub(rewrite, markdown)


def notebook_text(chapter):
    """The .ipynb text that ``chapter`` (a Markdown path) becomes."""
    notebook = jupytext.reads(chapter.read_text(encoding="utf-8"), fmt="md")
    cells = [nbformat.v4.new_code_cell(SETUP, metadata={"tags": ["setup"]})]
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cells.append(nbformat.v4.new_markdown_cell(one_folder_up(cell.source)))
        elif cell.cell_type == "code":
            # jupytext keeps what follows ```python as metadata it could not parse
            skip = "no-run" in str(cell.metadata.get("incorrectly_encoded_metadata", ""))
            cells.append(nbformat.v4.new_code_cell(cell.source, metadata={"tags": [SKIP_TAG]} if skip else {}))
        else:
            cells.append(nbformat.v4.new_raw_cell(cell.source))
    for index, cell in enumerate(cells):
        cell.id = f"cell-{index:03d}"
    result = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "source": f"generated from docs/{chapter.name} by docs/make_notebooks.py; edit the Markdown, not this file",
    })  # fmt: skip
    nbformat.validate(result)
    return nbformat.writes(result) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; fail if a notebook is out of date")
    args = parser.parse_args(argv)
    stale = []
    NOTEBOOKS.mkdir(exist_ok=True)
    for chapter in chapters():
        path, text = notebook_path(chapter), notebook_text(chapter)
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(DOCS.parent)}")
    if args.check and stale:
        print("out of date (run `make notebooks`): " + ", ".join(str(p.relative_to(DOCS.parent)) for p in stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
