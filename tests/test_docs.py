"""The docs are executable: every code block runs, every citation resolves.

The chapters in docs/ teach with the project's real code, so a renamed function or a
changed signature would silently turn them into fiction. This file keeps them honest.

1. Code. Every ```python block of docs/*.md and of README.md runs. A file's blocks run in
   order in one namespace, so a later block may use what an earlier one defined, and with
   the repository root as working directory. A block fenced ```python no-run is skipped,
   and only if it needs a trained run and says so ("needs a trained run"). A failure names
   the file and the line of the block, and the traceback's line numbers are the Markdown
   file's own.
2. Citations. `minitransformer/path.py` must exist; `minitransformer/path.py:name` (or
   `:Class.method`) and a dotted `minitransformer.module.name` must name a function or
   class that ast finds in that file; a backticked call `name(...)` must be defined in the
   package or in the file's own code; a backticked compound name (`attention_window`,
   `ModelConfig`) must occur in the package or in the file's code, which catches typos.
3. Links. Relative links and images resolve. The chapters still to be written are listed
   in FUTURE_CHAPTERS and may be linked before they exist.
4. Figures. The PNGs in docs/figures/ are exactly those docs/make_figures.py draws and the
   docs show, each shown with the command that redraws it beneath it. Redrawing them gives
   the numbers of the committed docs/figures/data.json, within tolerances that the section
   says how they were set, and PNGs that open at the committed size (pixels are never
   compared: they change with the CPU's rounding and the font renderer).
"""

import ast
import builtins
import importlib.util
import json
import re
import time
import traceback
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PACKAGE = REPO / "minitransformer"
FIGURES = DOCS / "figures"
FIGURE_COMMAND = "python docs/make_figures.py"

# chapters the docs may link to before they are written
FUTURE_CHAPTERS = set()  # chapters planned but not yet written, which may be linked already
# a guard against an accidentally slow block (they take well under 2 s each); generous,
# because the test machine may be shared
BLOCK_SECONDS = 10.0


def markdown_files():
    """docs/*.md (those that exist) and the top-level README.md."""
    files = sorted(DOCS.glob("*.md"))
    if (REPO / "README.md").exists():
        files.append(REPO / "README.md")
    return files


def label(path):
    """The path as the messages show it: relative to the repository when inside it."""
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")


def fenced_blocks(text):
    """[(info string, first code line number (1-based), code, closing fence line number)]
    for every fenced block; an unclosed fence runs to the end of the text."""
    blocks, lines = [], text.split("\n")
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence, info = opening.groups()
        body_start = index + 1
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(fence):
            index += 1
        body = [line[len(indent):] if line.startswith(indent) else line for line in lines[body_start:index]]
        blocks.append((info.strip(), body_start + 1, "\n".join(body), index + 1))
        index += 1
    return blocks


def python_blocks(text):
    """[(line, code, run)] for the ```python blocks; run is False for ```python no-run."""
    found = []
    for info, line, code, _ in fenced_blocks(text):
        words = info.split()
        if words and words[0] == "python":
            found.append((line, code, "no-run" not in words[1:]))
    return found


def prose(text):
    """The text with every fenced block blanked out (line numbers kept)."""
    lines = text.split("\n")
    for _, first_code_line, _, closing_line in fenced_blocks(text):
        # 0-based: the opening fence is at first_code_line - 2, the closing one at closing_line - 1
        for index in range(first_code_line - 2, min(closing_line, len(lines))):
            lines[index] = ""
    return "\n".join(lines)


def inline_code(text):
    """[(line, span)] for every `code span` outside fenced blocks."""
    spans = []
    for number, line in enumerate(prose(text).split("\n"), start=1):
        spans.extend((number, match.group(2)) for match in re.finditer(r"(`+)([^`]+?)\1", line))
    return spans


# --- 1. every python block runs ----------------------------------------------------------


def run_blocks(path, name=None):
    """Run the python blocks of ``path`` in order in one namespace; fail naming the block.

    Returns the number of blocks run. ``name`` is how the file is called in messages.
    """
    name = name or label(path)
    namespace = {"__name__": "__docs__"}
    count = 0
    for line, code, run in python_blocks(path.read_text(encoding="utf-8")):
        where = f"{name}, python block at line {line}"
        if not run:
            assert re.search(r"needs a trained (run|model)", code), (
                f"{where} is fenced `no-run` but does not say that it needs a trained run; "
                "every other block must run"
            )
            continue
        # pad with blank lines so that the traceback's line numbers are the file's own
        compiled = compile("\n" * (line - 1) + code, str(path), "exec")
        started = time.perf_counter()
        try:
            exec(compiled, namespace)
        except Exception as error:  # noqa: BLE001  (any failure of a block is reported)
            pytest.fail(f"{where} raised {type(error).__name__}: {error}\n\n{traceback.format_exc()}")
        seconds = time.perf_counter() - started
        assert seconds < BLOCK_SECONDS, f"{where} took {seconds:.1f} s; keep doc examples small (< 2 s)"
        count += 1
    return count


@pytest.mark.parametrize("path", markdown_files(), ids=label)
def test_code_blocks_run(path, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    run_blocks(path)


def test_a_failing_block_is_reported_with_its_file_and_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A page\n\n```python\nvalue = 2\n```\n\nText.\n\n```python\nassert value == 3\n```\n")
    with pytest.raises(pytest.fail.Exception) as failure:
        run_blocks(page, name="page.md")
    message = str(failure.value)
    assert "page.md, python block at line 10 raised AssertionError" in message
    assert f'File "{page}", line 10' in message  # the traceback points into the Markdown file


def test_no_run_blocks_must_say_why(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python no-run\n# needs a trained run: make train\nraise SystemExit\n```\n"
                    "```python\nx = 1\n```\n")  # fmt: skip
    assert run_blocks(page) == 1  # the no-run block is skipped, the other one runs
    page.write_text("```python no-run\nprint('too slow')\n```\n")
    with pytest.raises(AssertionError, match="does not say that it needs a trained run"):
        run_blocks(page)


NUMBERED_CHAPTER = re.compile(r"^\d\d-.*\.md$")


@pytest.mark.parametrize("path", [p for p in markdown_files() if NUMBERED_CHAPTER.match(p.name)], ids=label)
def test_each_chapter_runs_code_and_says_where_it_lives(path):
    text = path.read_text(encoding="utf-8")
    assert any(run for _, _, run in python_blocks(text)), f"{label(path)} has no runnable python block"
    assert "## Where this lives in the code" in text, f"{label(path)} lacks 'Where this lives in the code'"
    pointers = text.split("## Where this lives in the code", 1)[1]
    assert FILE_REFERENCE.search(pointers), f"{label(path)} points to no minitransformer/…py file"


# --- 2. every cited file, function and name exists ----------------------------------------


@lru_cache(maxsize=None)
def parse_module(path):
    return ast.parse(Path(path).read_text(encoding="utf-8"))


def defined_in(path, dotted_name):
    """Whether ``dotted_name`` ("f", "Class" or "Class.method") is defined at top level of
    the module at ``path`` (a def, a class, an assignment or an import)."""
    first, _, rest = dotted_name.partition(".")
    for node in parse_module(path).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == first:
            if not rest:
                return True
            if isinstance(node, ast.ClassDef):
                return any(
                    isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == rest
                    for item in node.body
                )
            return False
        if rest:
            continue
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(target, ast.Name) and target.id == first for target in targets):
                return True
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((alias.asname or alias.name.split(".")[0]) == first for alias in node.names):
                return True
    return False


def module_path(parts):
    """minitransformer.a.b -> the file of that module, or None."""
    base = REPO.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def names_in(tree):
    """Every identifier a syntax tree defines or uses."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.keyword) and node.arg:
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.update((node.asname or node.name).split("."))
    return names


def functions_in(tree):
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }


@lru_cache(maxsize=None)
def package_names():
    """(every identifier, every def/class name) in minitransformer/**/*.py."""
    names, functions = set(), set()
    for path in PACKAGE.rglob("*.py"):
        tree = parse_module(str(path))
        names |= names_in(tree)
        functions |= functions_in(tree)
    return frozenset(names), frozenset(functions)


def code_of(text):
    """(identifiers, def/class names) of a Markdown file's python blocks."""
    names, functions = set(), set()
    for _, code, _ in python_blocks(text):
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue  # a broken block is reported by test_code_blocks_run
        names |= names_in(tree)
        functions |= functions_in(tree)
    return names, functions


FILE_REFERENCE = re.compile(r"(?<![\w/.])(minitransformer/(?:\w+/)*\w+\.py)(?::([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?))?")
FOLDER_REFERENCE = re.compile(r"(?<![\w/.])(minitransformer/(?:\w+/)+)(?![\w.])")
DOTTED_REFERENCE = re.compile(r"(?<![\w/.])minitransformer(?:\.[A-Za-z_]\w*)+")
REPO_FILE_REFERENCE = re.compile(r"(?<![\w/.])((?:docs|tests|csrc|bench)/[\w/.-]*\w\.(?:py|md|png|pyx|pxd|cu|h))\b")
COMPOUND_NAME = re.compile(r"^[A-Za-z_]\w*$")


def is_compound(name):
    """snake_case with an underscore, or CamelCase: names a typo would not hit by chance."""
    return ("_" in name.strip("_") and not name.isupper()) or bool(re.search(r"[a-z][A-Z]", name))


def citation_problems(text):
    """[(line, message)] for every citation in ``text`` that does not resolve."""
    problems = []
    package_all, package_functions = package_names()
    doc_names, doc_functions = code_of(text)
    known_names = package_all | doc_names | set(dir(builtins)) | set(dir(np))
    known_functions = package_functions | doc_functions | set(dir(builtins))
    for number, line in enumerate(text.split("\n"), start=1):
        for match in FILE_REFERENCE.finditer(line):
            file, name = match.group(1), match.group(2)
            if not (REPO / file).is_file():
                problems.append((number, f"cites {file}, which does not exist"))
            elif name and not defined_in(str(REPO / file), name):
                problems.append((number, f"cites {file}:{name}, but {file} defines no {name}"))
        for match in FOLDER_REFERENCE.finditer(line):
            if not (REPO / match.group(1)).is_dir():
                problems.append((number, f"cites the folder {match.group(1)}, which does not exist"))
        for match in DOTTED_REFERENCE.finditer(line):
            parts = match.group(0).split(".")
            for split in range(len(parts), 0, -1):
                path = module_path(parts[:split])
                if path is not None:
                    break
            rest = ".".join(parts[split:])
            if path is None:
                problems.append((number, f"cites {match.group(0)}, which is no module"))
            elif rest and not defined_in(str(path), rest):
                problems.append((number, f"cites {match.group(0)}, but {label(path)} defines no {rest}"))
        for match in REPO_FILE_REFERENCE.finditer(line):
            file = match.group(1)
            if not (REPO / file).exists() and Path(file).name not in FUTURE_CHAPTERS:
                problems.append((number, f"cites {file}, which does not exist"))
    for number, span in inline_code(text):
        if re.fullmatch(r"[\w./:-]*/[\w./:-]*", span.strip()):
            continue  # a path, checked above (it would parse as a division)
        try:
            tree = ast.parse(span.strip(), mode="eval")
        except SyntaxError:
            continue  # prose in backticks (a shell command, a formula): only the paths above
        called = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                called.add(node.func)
                if node.func.id not in known_functions:
                    problems.append((number, f"`{span}` calls {node.func.id}, defined nowhere in the package"))
            words = []
            if isinstance(node, ast.Name) and node not in called:
                words.append(node.id)
            elif isinstance(node, ast.Attribute):
                words.append(node.attr)
            elif isinstance(node, ast.keyword) and node.arg:
                words.append(node.arg)
            for word in words:
                if COMPOUND_NAME.match(word) and is_compound(word) and word not in known_names:
                    problems.append((number, f"`{span}` names {word}, which occurs nowhere in the package"))
    return problems


@pytest.mark.parametrize("path", markdown_files(), ids=label)
def test_citations_resolve(path):
    problems = citation_problems(path.read_text(encoding="utf-8"))
    assert not problems, f"{label(path)}:\n" + "\n".join(f"  line {line}: {message}" for line, message in problems)


def test_the_citation_check_catches_what_it_should():
    text = "\n".join([
        "`minitransformer/layers/attention.py:attention_forward` is real,",
        "`minitransformer/layers/attention.py:attention_foward` is a typo,",
        "`minitransformer/layers/nothing.py` does not exist,",
        "`minitransformer.layers.attention.masked_softmax` is real, `minitransformer.zoo.nope` is not,",
        "`minitransformer/model.py:Transformer.encode` is a method, `minitransformer/model.py:Transformer.fly` is not,",
        "`layernorm_backward(dy, cache)` is a call, `layernorm_backwards()` is not,",
        "`attention_window` is a field, `attention_windw` a typo, and `q` is too short to check.",
    ])  # fmt: skip
    problems = [message for _, message in citation_problems(text)]
    assert len(problems) == 6, problems
    for wrong in ("attention_foward", "nothing.py", "zoo.nope", "Transformer.fly", "layernorm_backwards",
                  "attention_windw"):  # fmt: skip
        assert any(wrong in message for message in problems), (wrong, problems)


# --- 3. links and images resolve ----------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


@pytest.mark.parametrize("path", markdown_files(), ids=label)
def test_relative_links_resolve(path):
    missing = []
    for number, line in enumerate(prose(path.read_text(encoding="utf-8")).split("\n"), start=1):
        for match in LINK.finditer(line):
            target = match.group(1).split("#")[0]
            if not target or re.match(r"^[a-z]+:", target):
                continue  # an anchor in the same file, or a web address
            if not (path.parent / target).exists() and Path(target).name not in FUTURE_CHAPTERS:
                missing.append(f"  line {number}: {match.group(1)}")
    assert not missing, f"{label(path)} links to files that do not exist:\n" + "\n".join(missing)


# --- 4. the figures -----------------------------------------------------------------------


@lru_cache(maxsize=None)
def make_figures():
    spec = importlib.util.spec_from_file_location("make_figures", DOCS / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shown_figures():
    """{figure file name: [(doc, line)]} for every image of docs/figures/ the docs show."""
    shown = {}
    for path in markdown_files():
        for number, line in enumerate(prose(path.read_text(encoding="utf-8")).split("\n"), start=1):
            for match in re.finditer(r"!\[[^\]]*\]\(([^)\s]+)\)", line):
                target = (path.parent / match.group(1)).resolve()
                if target.parent == FIGURES.resolve():
                    shown.setdefault(target.name, []).append((path, number))
    return shown


def test_figures_on_disk_are_drawn_by_the_script_and_shown():
    drawn = {f"{name}.png" for name in make_figures().FIGURES}
    on_disk = {path.name for path in FIGURES.glob("*.png")}
    shown = set(shown_figures())
    assert on_disk == drawn, f"docs/figures/ differs from make_figures.FIGURES: {sorted(on_disk ^ drawn)}"
    assert shown <= drawn, f"the docs show figures the script does not draw: {sorted(shown - drawn)}"
    chapter_figures = {name for name in drawn if re.match(r"(0[1-9]|10)-", name)}
    assert chapter_figures <= shown, f"figures no chapter shows: {sorted(chapter_figures - shown)}"


def test_each_figure_names_the_command_beneath_it():
    missing = []
    for name, places in shown_figures().items():
        for path, number in places:
            following = path.read_text(encoding="utf-8").split("\n")[number : number + 3]
            if not any(FIGURE_COMMAND in line for line in following):
                missing.append(f"  {label(path)} line {number}: {name}")
    assert not missing, f"put `{FIGURE_COMMAND}` beneath each figure:\n" + "\n".join(missing)


# The numbers behind the figures. docs/make_figures.py returns what each figure plots and
# writes it to docs/figures/data.json; the test redraws and compares those numbers, never
# the pixels, which differ with the CPU's rounding, the matplotlib and the FreeType.
#
# Nine figures are closed-form float64 computations or well-conditioned fits (the learned
# bandwidth, 100 steps of gradient descent on one number; the vector-attention demo, 150
# Adam steps); four more are diagrams whose data are what the code reports about itself
# (shapes, parameter names, cache lengths, and booleans such as "the core matches the
# formula", each decided with a tolerance far above rounding). Another BLAS rounds each product differently, by about 1e-16 relative, and
# perturbing their inputs by 1e-15 relative moves every plotted number by at most 1e-13
# (measured). FIGURE_RTOL = 1e-9 leaves a margin of 10⁴ over that, while a real change (a
# formula, a seed, a size) moves them by far more.
FIGURE_RTOL = 1e-9
FIGURE_ATOL = 1e-12  # for numbers that should be 0 (weights of masked or far keys)
#
# Chapter 10's tiny translator is not well-conditioned: its heads saturate, each putting its
# whole weight on one key, and 200 Adam steps at the warmup's peak rate amplify rounding.
# Perturbing its initial weights by 1e-15 relative (one BLAS's rounding against another's)
# leaves the batch losses within 3e-14 for the first 25 steps, parts them by 1e-4 by step
# 60, and ends within 3e-5 of the same final loss, with the same translation, but with map
# entries moved by up to 0.5 (a head that picks another key). So on a machine whose
# arithmetic reproduces the committed loss curve, every number must match; on any other,
# the test checks what rounding cannot change: the first TINY_STEADY_STEPS losses (a change
# to the data, the model or the optimizer moves them far more than FIGURE_RTOL), the final
# loss within FINAL_LOSS_RTOL (30x the measured spread), the words on the axes, and that
# every row of every map is a distribution.
TRAINED_BY_CHAOTIC_STEPS = {"10-attention-vs-saliency"}
TINY_STEADY_STEPS = 20
FINAL_LOSS_RTOL = 1e-3


def number_problems(committed, redrawn, where="", rtol=FIGURE_RTOL, atol=FIGURE_ATOL):
    """[message] for every place where two JSON values differ: numbers beyond
    atol + rtol·|committed|, anything else (text, booleans, blanks, shapes) at all."""

    def is_number(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if isinstance(committed, dict) and isinstance(redrawn, dict):
        if committed.keys() != redrawn.keys():
            return [f"{where}: keys {sorted(redrawn)} redrawn, {sorted(committed)} committed"]
        return [problem for key in committed
                for problem in number_problems(committed[key], redrawn[key], f"{where}.{key}", rtol, atol)]  # fmt: skip
    if isinstance(committed, list) and isinstance(redrawn, list):
        if len(committed) != len(redrawn):
            return [f"{where}: {len(redrawn)} entries redrawn, {len(committed)} committed"]
        return [problem for index, (old, new) in enumerate(zip(committed, redrawn))
                for problem in number_problems(old, new, f"{where}[{index}]", rtol, atol)]  # fmt: skip
    if is_number(committed) and is_number(redrawn):
        if abs(redrawn - committed) <= atol + rtol * abs(committed):
            return []
        return [f"{where}: {redrawn!r} redrawn, {committed!r} committed (allowed {atol:g} + {rtol:g}·|committed|)"]
    if committed == redrawn and type(committed) is type(redrawn):
        return []
    return [f"{where}: {redrawn!r} redrawn, {committed!r} committed"]


def tiny_translator_problems(committed, redrawn, name):
    """The comparison for chapter 10's figure (see TRAINED_BY_CHAOTIC_STEPS above)."""
    old_losses, new_losses = committed["losses"], redrawn["losses"]
    if not number_problems(old_losses, new_losses):  # the same arithmetic: the same numbers
        return number_problems(committed, redrawn, name)
    problems = number_problems(old_losses[:TINY_STEADY_STEPS], new_losses[:TINY_STEADY_STEPS], f"{name}.losses")
    problems += number_problems(old_losses[-1], new_losses[-1], f"{name}.losses[-1]", rtol=FINAL_LOSS_RTOL)
    problems += number_problems(len(old_losses), len(new_losses), f"{name}: the number of steps")
    for kind, panel in redrawn["panels"].items():
        where = f"{name}.panels.{kind}"
        old_panel = committed["panels"].get(kind, {})
        for axis in ("rows", "columns"):
            problems += number_problems(old_panel.get(axis), panel[axis], f"{where}.{axis}")
        weights = np.array(panel["weights"], dtype=float)  # (rows, columns)
        if weights.shape != (len(panel["rows"]), len(panel["columns"])):
            problems.append(f"{where}.weights: shape {weights.shape} for {len(panel['rows'])} rows and "
                            f"{len(panel['columns'])} columns")  # fmt: skip
        elif not (np.all(weights >= 0) and np.allclose(weights.sum(axis=1), 1.0, rtol=0, atol=FIGURE_RTOL)):
            problems.append(f"{where}.weights: a row is no distribution (row sums {weights.sum(axis=1)})")
    return problems


def figure_problems(name, committed, redrawn):
    if name in TRAINED_BY_CHAOTIC_STEPS:
        return tiny_translator_problems(committed, redrawn, name)
    return number_problems(committed, redrawn, name)


@pytest.fixture(scope="module")
def redrawn_figures(tmp_path_factory):
    """Every figure drawn afresh into a temporary folder, once for the tests below."""
    folder = tmp_path_factory.mktemp("figures")
    make_figures().main(["--out", str(folder)])
    return folder


def committed_data():
    return json.loads((FIGURES / make_figures().DATA_FILE).read_text(encoding="utf-8"))


def test_the_committed_data_file_is_the_scripts_output():
    """docs/figures/data.json holds one entry per figure and is byte for byte what the
    script's writer makes of its own contents (so it was written by the script, not by hand)."""
    module = make_figures()
    path = FIGURES / module.DATA_FILE
    assert path.is_file(), f"{path.name} is missing: run `{FIGURE_COMMAND}` and commit docs/figures/"
    data = committed_data()
    drawn = list(module.FIGURES)
    assert list(data) == drawn, f"{path.name} covers {list(data)}, the script draws {drawn}"
    assert path.read_text(encoding="utf-8") == module.to_json(module.plain(data)) + "\n", (
        f"{path.name} is not in the script's format: run `{FIGURE_COMMAND}`"
    )


@pytest.mark.parametrize("name", list(make_figures().FIGURES))
def test_the_numbers_behind_each_figure_match_the_committed_ones(name, redrawn_figures):
    """A figure whose script changed (stale data, a changed function) fails; a machine that
    merely rounds differently does not (the tolerances above say why)."""
    redrawn = json.loads((redrawn_figures / make_figures().DATA_FILE).read_text(encoding="utf-8"))
    committed = committed_data()
    assert name in committed, f"docs/figures/data.json has no {name}: run `{FIGURE_COMMAND}` and commit it"
    problems = figure_problems(name, committed[name], redrawn[name])
    assert not problems, (
        f"{name}: {len(problems)} numbers differ from the committed data.json; if the change is "
        f"meant, run `{FIGURE_COMMAND}` and commit docs/figures/:\n  " + "\n  ".join(problems[:8])
    )


@pytest.mark.parametrize("name", list(make_figures().FIGURES))
def test_each_redrawn_png_opens_at_its_committed_size(name, redrawn_figures):
    from PIL import Image

    committed, redrawn = FIGURES / f"{name}.png", redrawn_figures / f"{name}.png"
    assert redrawn.is_file(), f"`{FIGURE_COMMAND}` wrote no {redrawn.name}"
    with Image.open(committed) as old, Image.open(redrawn) as new:
        assert new.format == "PNG", f"{redrawn.name} is a {new.format}, not a PNG"
        assert new.size == old.size, f"{name}.png: {new.size} pixels redrawn, {old.size} committed"
        pixels = np.asarray(new.convert("L"), dtype=float)  # (height, width)
    assert pixels.std() > 1.0, f"{redrawn.name} is blank"


def test_the_figure_comparison_catches_what_it_should():
    committed = {"weights": [[0.25, 0.75], [1.0, 0.0]], "labels": ["le", "chat"], "mask": [True, False],
                 "blank": [None, 0.5]}  # fmt: skip
    rounding = {"weights": [[0.25 * (1 + 1e-12), 0.75], [1.0, 1e-14]], "labels": ["le", "chat"],
                "mask": [True, False], "blank": [None, 0.5]}  # fmt: skip
    assert number_problems(committed, rounding) == []
    changes = [
        ("weights", [[0.25 * (1 + 1e-6), 0.75], [1.0, 0.0]]),  # a real change, tiny as it is
        ("labels", ["le", "chien"]),
        ("mask", [True, True]),
        ("blank", [0.0, 0.5]),  # a blank cell is not a 0
        ("weights", [[0.25, 0.75]]),  # a row lost
    ]
    for key, value in changes:
        problems = number_problems(committed, {**committed, key: value}, "figure")
        assert len(problems) == 1 and problems[0].startswith(f"figure.{key}"), (key, problems)

    # the tiny translator: another machine's rounding (same start, same end, maps moved) passes
    def translator(losses, weights, rows=("le", "chat")):
        cross = {"rows": list(rows), "columns": ["the", "cat"], "weights": weights}
        return {"losses": losses, "panels": {"cross": cross}}

    steps = TINY_STEADY_STEPS + 10
    losses = [3.0 / step for step in range(1, steps + 1)]
    committed = translator(losses, [[0.5, 0.5], [1.0, 0.0]])
    elsewhere = translator(losses[:TINY_STEADY_STEPS] + [loss * (1 + 1e-3) for loss in losses[TINY_STEADY_STEPS:-1]]
                           + [losses[-1] * (1 + 1e-5)], [[1.0, 0.0], [0.5, 0.5]])  # fmt: skip
    assert tiny_translator_problems(committed, elsewhere, "10") == []
    assert tiny_translator_problems(committed, committed, "10") == []
    failing = {
        "an early loss": translator([losses[0] * (1 + 1e-6)] + losses[1:], committed["panels"]["cross"]["weights"]),
        "the final loss": translator(losses[:-1] + [losses[-1] * 1.01], [[0.5, 0.5], [1.0, 0.0]]),
        "a word": translator(losses[:-1] + [losses[-1] * (1 + 1e-5)], [[0.5, 0.5], [1.0, 0.0]], rows=("le", "chien")),
        "a row that is no distribution": translator(losses[:-1] + [losses[-1] * (1 + 1e-5)], [[0.5, 0.4], [1.0, 0.0]]),
        "a map, on the same arithmetic": translator(losses, [[0.5, 0.5], [0.9, 0.1]]),
    }
    for what, redrawn in failing.items():
        assert tiny_translator_problems(committed, redrawn, "10"), f"{what} changed, and the comparison let it pass"
