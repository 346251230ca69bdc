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
   docs show, each shown with the command that redraws it beneath it, and redrawing them
   gives the committed pictures.
"""

import ast
import builtins
import importlib.util
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


def test_redrawn_figures_match_the_committed_ones(tmp_path):
    """Redraw every figure and compare: a figure that no longer matches its script (stale
    data, a changed function) fails. Drawn by the same matplotlib version as the committed
    PNG (its "Software" field), the pixels must be identical; another version may lay out
    text a little differently, so there only a small mean difference is allowed."""
    import matplotlib.image
    from PIL import Image

    make_figures().main(["--out", str(tmp_path)])
    for committed in sorted(FIGURES.glob("*.png")):
        redrawn = tmp_path / committed.name
        same_version = Image.open(committed).text.get("Software") == Image.open(redrawn).text.get("Software")
        old, new = matplotlib.image.imread(committed), matplotlib.image.imread(redrawn)
        assert old.shape == new.shape, f"{committed.name}: size {new.shape} redrawn, {old.shape} committed"
        difference = float(np.abs(old - new).mean())
        allowed = 0.0 if same_version else 0.01
        assert difference <= allowed, (
            f"{committed.name} differs from a fresh `{FIGURE_COMMAND}` (mean |Δ| = {difference:.4f}, "
            f"allowed {allowed}): redraw and commit it"
        )
