"""Sentence pairs from tab-separated files, split by source, grouped into references.

The layout is the Tatoeba/Anki "fra-eng" export, one pair a line:

    English<TAB>French[<TAB>attribution]

    pairs = load_pairs("data/toy-train.tsv")          # [("the black cat sleeps .", "le chat noir dort ."), …]
    train, valid, test = split_by_source(pairs, valid_sources=500, test_sources=500)
    sources, references = group_references(valid)     # one entry per distinct English sentence

What counts as what:
    - a line with two columns, or three (the third, an attribution, is ignored), is a pair;
      each side is stripped of surrounding whitespace, and "\\r\\n" line endings are accepted;
    - a blank line is nothing at all (files often end with one) and is skipped silently;
    - any other line (no tab, an empty side, four or more columns) is malformed: it is
      skipped, and all of them are reported together in ONE warning naming the file, the
      count and the first line numbers, so that a large file with a few bad lines still
      trains while the user hears about it once;
    - a file that is missing, not a regular file, unreadable, empty, not UTF-8 (the error
      names the line of the first bad byte) or has no valid pair at all is a DataError:
      there is nothing sensible to train on, so we stop instead of guessing.
A UTF-8 byte-order mark at the start of the file is dropped.
"""

import hashlib
import warnings
from pathlib import Path

# how many offending line numbers a warning or error quotes before "…"
_QUOTED_LINES = 5


class DataError(ValueError):
    """A pair file cannot be used; the message names the file (and line) and what is wrong."""


class MalformedLinesWarning(UserWarning):
    """Some lines of a pair file were skipped; one warning per file says how many and where."""


def _read_text(path):
    """The file's text, decoded as UTF-8, or a DataError naming the file (and line)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a pair file")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror or error})") from None
    if not raw.strip():
        raise DataError(f"{path}: the file is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        # the decoder knows the byte offset; the user wants the line (and column) of it
        line = raw.count(b"\n", 0, error.start) + 1
        line_start = raw.rfind(b"\n", 0, error.start) + 1
        raise DataError(
            f"{path}: line {line} is not valid UTF-8 "
            f"(byte 0x{raw[error.start]:02x} at column {error.start - line_start + 1})"
        ) from None
    return text.removeprefix("\ufeff")


def parse_line(line):
    """One line (without its newline) -> (source, target), None for a blank line, or the
    reason it is malformed as a string."""
    line = line.rstrip("\r")
    if not line.strip():
        return None
    columns = line.split("\t")
    if len(columns) == 1:
        return "no tab"
    if len(columns) > 3:
        return f"{len(columns)} columns"
    source, target = columns[0].strip(), columns[1].strip()
    if not source or not target:
        return "empty side"
    return (source, target)


def load_pairs(path):
    """Read ``path`` -> list of (source, target) string pairs, in file order.

    Malformed lines are skipped with one MalformedLinesWarning; see the module docstring.
    """
    text = _read_text(path)
    pairs = []
    malformed = []  # (line number, reason)
    for number, line in enumerate(text.split("\n"), start=1):
        parsed = parse_line(line)
        if parsed is None:
            continue
        if isinstance(parsed, str):
            malformed.append((number, parsed))
        else:
            pairs.append(parsed)
    if not pairs:
        where = ", ".join(f"{n} ({why})" for n, why in malformed[:_QUOTED_LINES])
        raise DataError(f"{path}: no valid English<TAB>French pair in the file (bad lines: {where})")
    if malformed:
        where = ", ".join(f"{n} ({why})" for n, why in malformed[:_QUOTED_LINES])
        more = " …" if len(malformed) > _QUOTED_LINES else ""
        warnings.warn(
            f"{path}: skipped {len(malformed)} malformed line(s) of {len(malformed) + len(pairs)}; "
            f"expected English<TAB>French[<TAB>attribution]; first at line {where}{more}",
            MalformedLinesWarning,
            stacklevel=2,
        )
    return pairs


def _source_rank(source, seed):
    """A stable pseudo-random number for a source sentence: the same on every machine and
    Python version (unlike hash()), and independent of the file's order."""
    digest = hashlib.sha256(f"{seed}\t{source}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def split_by_source(pairs, valid_sources, test_sources, seed=0):
    """Hold out ``valid_sources`` and ``test_sources`` distinct English sentences, with
    every translation of each, so that no held-out source is ever seen in training.

    Which sources are held out depends only on the sentences and the seed (a hash rank),
    not on the order of the file. Returns (train, valid, test) lists of pairs, each in
    file order. At most half of the distinct sources are held out in all.
    """
    sources = list(dict.fromkeys(source for source, _ in pairs))
    held_out = min(valid_sources + test_sources, len(sources) // 2)
    n_valid = min(valid_sources, held_out)
    ranked = sorted(sources, key=lambda source: _source_rank(source, seed))
    valid_set = set(ranked[:n_valid])
    test_set = set(ranked[n_valid:held_out])
    train, valid, test = [], [], []
    for pair in pairs:
        if pair[0] in valid_set:
            valid.append(pair)
        elif pair[0] in test_set:
            test.append(pair)
        else:
            train.append(pair)
    return train, valid, test


def group_references(pairs):
    """Multi-reference evaluation: pairs -> (sources, references), one entry per distinct
    source in order of first appearance; references[i] lists every translation of
    sources[i] (a source with three French versions is scored against all three)."""
    grouped = {}
    for source, target in pairs:
        targets = grouped.setdefault(source, [])
        if target not in targets:
            targets.append(target)
    return list(grouped), list(grouped.values())

