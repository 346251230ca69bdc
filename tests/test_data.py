"""The pair loader: every kind of good and bad input, the split by source, multi-reference
grouping, and the real Tatoeba files."""

import os
import warnings
from pathlib import Path

import pytest

from minitransformer.data import (
    DataError,
    MalformedLinesWarning,
    group_references,
    load_pairs,
    split_by_source,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write(tmp_path, content, name="pairs.tsv"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def load_quietly(path):
    """load_pairs, failing the test if it warns."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load_pairs(path)


# --- good input --------------------------------------------------------------------------------


def test_two_and_three_columns_are_pairs(tmp_path):
    path = write(tmp_path, "the cat .\tle chat .\nI run.\tJe cours.\tCC-BY 2.0 (France) Attribution: tatoeba.org #1 (x)\n")
    assert load_quietly(path) == [("the cat .", "le chat ."), ("I run.", "Je cours.")]


def test_crlf_line_endings_bom_and_surrounding_spaces(tmp_path):
    path = write(tmp_path, "\ufeffthe cat .\t le chat . \r\nthe dog .\tle chien .\r\n")
    assert load_quietly(path) == [("the cat .", "le chat ."), ("the dog .", "le chien .")]


def test_blank_lines_are_skipped_without_a_warning(tmp_path):
    path = write(tmp_path, "\nthe cat .\tle chat .\n\n   \nthe dog .\tle chien .\n\n")
    assert load_quietly(path) == [("the cat .", "le chat ."), ("the dog .", "le chien .")]


def test_file_order_and_duplicates_are_kept(tmp_path):
    path = write(tmp_path, "b\tB\na\tA\nb\tB\n")
    assert load_quietly(path) == [("b", "B"), ("a", "A"), ("b", "B")]


# --- malformed lines: skipped, counted in one warning --------------------------------------------


def test_malformed_lines_are_skipped_and_reported_once(tmp_path):
    lines = [
        "the cat .\tle chat .",  # 1 good
        "no tab on this line",  # 2 no tab
        "\tle chien .",  # 3 empty English side
        "the dog .\t   ",  # 4 empty French side
        "a\tb\tc\td",  # 5 four columns
        "the bird .\tl'oiseau .",  # 6 good
    ]
    path = write(tmp_path, "\n".join(lines) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = load_pairs(path)
    assert pairs == [("the cat .", "le chat ."), ("the bird .", "l'oiseau .")]
    reports = [w for w in caught if issubclass(w.category, MalformedLinesWarning)]
    assert len(reports) == 1, [str(w.message) for w in caught]
    message = str(reports[0].message)
    assert str(path) in message
    assert "skipped 4 malformed line(s)" in message
    for number, reason in [(2, "no tab"), (3, "empty side"), (4, "empty side"), (5, "4 columns")]:
        assert f"{number} ({reason})" in message


def test_the_warning_quotes_only_the_first_line_numbers(tmp_path):
    content = "good\tbon\n" + "bad line\n" * 50
    path = write(tmp_path, content)
    with pytest.warns(MalformedLinesWarning) as record:
        load_pairs(path)
    message = str(record[0].message)
    assert "skipped 50 malformed" in message
    assert "2 (no tab)" in message and "6 (no tab)" in message
    assert "7 (no tab)" not in message and "…" in message


# --- files that cannot be used: errors naming the file (and line) ------------------------------


def test_empty_file(tmp_path):
    path = write(tmp_path, "")
    with pytest.raises(DataError, match="empty") as error:
        load_pairs(path)
    assert str(path) in str(error.value)


def test_whitespace_only_file_is_empty(tmp_path):
    with pytest.raises(DataError, match="empty"):
        load_pairs(write(tmp_path, "\n \r\n\t\n"))


def test_no_valid_pair_at_all(tmp_path):
    path = write(tmp_path, "just words\nmore words\n")
    with pytest.raises(DataError, match="no valid") as error:
        load_pairs(path)
    assert str(path) in str(error.value) and "1 (no tab)" in str(error.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.tsv"
    with pytest.raises(DataError, match="no such file") as error:
        load_pairs(path)
    assert str(path) in str(error.value)


def test_directory(tmp_path):
    with pytest.raises(DataError, match="is a directory") as error:
        load_pairs(tmp_path)
    assert str(tmp_path) in str(error.value)


def test_unreadable_file_reports_the_os_error(tmp_path, monkeypatch):
    path = write(tmp_path, "a\tb\n")

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(DataError, match="cannot be read.*Permission denied") as error:
        load_pairs(path)
    assert str(path) in str(error.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_by_its_mode(tmp_path):
    path = write(tmp_path, "a\tb\n")
    path.chmod(0)
    try:
        with pytest.raises(DataError, match="cannot be read"):
            load_pairs(path)
    finally:
        path.chmod(0o644)


def test_non_utf8_names_the_line_and_byte(tmp_path):
    content = "the cat .\tle chat .\nthe dog .\tle chien .\nthe tea .\tle th".encode() + b"\xe9" + b" .\n"
    path = write(tmp_path, content)  # line 3 is Latin-1, not UTF-8
    with pytest.raises(DataError) as error:
        load_pairs(path)
    message = str(error.value)
    assert str(path) in message
    assert "line 3 is not valid UTF-8" in message
    assert "0xe9" in message and "column 16" in message  # after the 15 characters "the tea .\tle th"


def test_non_utf8_on_the_first_line(tmp_path):
    with pytest.raises(DataError, match="line 1 is not valid UTF-8"):
        load_pairs(write(tmp_path, b"\xff\xfea\tb\n"))


# --- split and references --------------------------------------------------------------------------


def numbered_pairs(n_sources, translations=2):
    return [(f"source {i}", f"cible {i}.{j}") for i in range(n_sources) for j in range(translations)]


def test_split_by_source_is_disjoint_complete_and_keeps_translations_together():
    pairs = numbered_pairs(200, translations=2)
    train, valid, test = split_by_source(pairs, valid_sources=20, test_sources=30, seed=0)
    sources = [{s for s, _ in part} for part in (train, valid, test)]
    assert [len(s) for s in sources] == [150, 20, 30]
    assert not (sources[0] & sources[1]) and not (sources[0] & sources[2]) and not (sources[1] & sources[2])
    assert sorted(train + valid + test) == sorted(pairs)
    # both translations of each held-out source went with it
    assert len(valid) == 40 and len(test) == 60


def test_split_is_deterministic_and_independent_of_file_order():
    pairs = numbered_pairs(100)
    first = split_by_source(pairs, 10, 10, seed=0)
    again = split_by_source(list(reversed(pairs)), 10, 10, seed=0)
    for part, part_again in zip(first, again):
        assert sorted(part) == sorted(part_again)
    other_seed = split_by_source(pairs, 10, 10, seed=1)
    assert sorted(first[1]) != sorted(other_seed[1])


def test_split_holds_out_at_most_half_the_sources():
    train, valid, test = split_by_source(numbered_pairs(10, 1), valid_sources=50, test_sources=50)
    assert len(train) == 5 and len(valid) + len(test) == 5


def test_group_references_collects_every_translation_in_order():
    pairs = [("a", "A1"), ("b", "B1"), ("a", "A2"), ("a", "A1"), ("c", "C1")]
    sources, references = group_references(pairs)
    assert sources == ["a", "b", "c"]
    assert references == [["A1", "A2"], ["B1"], ["C1"]]


# --- the real data -----------------------------------------------------------------------------------


@pytest.mark.skipif(
    not (SHARED_DATA / "tatoeba-fra-eng-train.tsv").is_file(),
    reason=f"the Tatoeba files are not in {SHARED_DATA} (they live beside the checkout, in shared/data)",
)
def test_tatoeba_files_load_completely():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # these files are clean: no line may be skipped
        train = load_pairs(SHARED_DATA / "tatoeba-fra-eng-train.tsv")
        valid = load_pairs(SHARED_DATA / "tatoeba-fra-eng-valid.tsv")
    # the counts of shared/data/README.md
    assert len(train) == 71_477 and len({s for s, _ in train}) == 46_198
    assert len(valid) == 1_502 and len({s for s, _ in valid}) == 1_000
    assert not {s for s, _ in train} & {s for s, _ in valid}
    sources, references = group_references(valid)
    assert len(sources) == 1_000 and max(len(r) for r in references) > 1
    assert any("é" in target for _, target in valid[:200])  # decoded as UTF-8, accents intact
