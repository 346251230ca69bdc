"""Property-based tests (hypothesis) of the two doors that untrusted text comes in by: the TSV
loader and the translate input path. Over arbitrary bytes and arbitrary Unicode they raise
nothing but their documented errors (DataError, TranslateError), and what they accept they
keep exactly: pairs round-trip, and N input lines give N output lines, split on "\\n" only."""

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minitransformer import cli
from minitransformer.checkpoint import save_checkpoint
from minitransformer.config import ModelConfig
from minitransformer.data import DataError, MalformedLinesWarning, load_pairs
from minitransformer.model import make_model
from minitransformer.tokenizer import Tokenizer
from minitransformer.translate import TranslateError, encode_input_lines, read_input_lines

QUICK = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow])

# every character, surrogates excluded (they cannot be encoded as UTF-8, so no file holds them)
any_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=60)
# a side of a pair as a writer of a TSV file means it: no tab, no newline, not blank
side = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\t\n\ufeff"), min_size=1,
               max_size=20).filter(lambda text: text.strip())
# lines that a bytes file could hold, and control characters that splitlines() would split at
tricky = st.sampled_from(["\f", "\v", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r", "\x1b[2J", "\t"])
input_line = st.lists(st.one_of(st.text(max_size=6), tricky), max_size=6).map("".join).map(
    lambda text: text.replace("\n", " "))


def write(directory, name, data):
    path = Path(directory) / name
    path.write_bytes(data)
    return path


# --- the TSV loader -------------------------------------------------------------------------------


@QUICK
@given(data=st.binary(max_size=300))
def test_the_loader_takes_any_bytes_and_raises_only_data_errors(tmp_path_factory, data):
    path = write(tmp_path_factory.mktemp("tsv"), "pairs.tsv", data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pairs = load_pairs(path)
        except DataError as error:
            assert str(error).startswith(str(path)) and "\n" not in str(error)
            return
    assert all(issubclass(warning.category, MalformedLinesWarning) for warning in caught)
    for source, target in pairs:
        assert source and target and source == source.strip() and target == target.strip()
        assert "\t" not in source + target and "\n" not in source + target


@QUICK
@given(text=any_text)
def test_the_loader_takes_any_unicode(tmp_path_factory, text):
    path = write(tmp_path_factory.mktemp("tsv"), "pairs.tsv", text.encode("utf-8"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MalformedLinesWarning)
        try:
            load_pairs(path)
        except DataError:
            pass


@QUICK
@given(pairs=st.lists(st.tuples(side, side), min_size=1, max_size=8), crlf=st.booleans())
def test_pairs_round_trip_whatever_characters_they_hold(tmp_path_factory, pairs, crlf):
    """U+2028, form feeds, escapes inside a sentence stay inside it: only "\\n" ends a line."""
    ending = "\r\n" if crlf else "\n"
    text = "".join(f"{source}\t{target}{ending}" for source, target in pairs)
    path = write(tmp_path_factory.mktemp("tsv"), "pairs.tsv", text.encode("utf-8"))
    assert load_pairs(path) == [(source.strip(), target.strip()) for source, target in pairs]


# --- the translate input path ---------------------------------------------------------------------


@QUICK
@given(data=st.binary(max_size=300))
def test_the_input_reader_takes_any_bytes(tmp_path_factory, data):
    path = write(tmp_path_factory.mktemp("in"), "in.txt", data)
    try:
        lines = read_input_lines(path)
    except TranslateError as error:
        assert "not valid UTF-8" in str(error) and "\n" not in str(error)
        return
    assert all("\n" not in line for line in lines)
    assert len(lines) == data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)


@QUICK
@given(lines=st.lists(input_line, max_size=8))
def test_n_lines_in_are_n_lines_read(tmp_path_factory, lines):
    text = "".join(line + "\n" for line in lines)
    path = write(tmp_path_factory.mktemp("in"), "in.txt", text.encode("utf-8"))
    expected = [line.removesuffix("\r") for line in lines]
    if expected and expected[0].startswith("\ufeff"):
        expected[0] = expected[0][1:]
    assert read_input_lines(path) == expected


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory with a tiny random model (max_len 12) and its tokenizer."""
    directory = tmp_path_factory.mktemp("run")
    english = [f"the {w} cat sleeps ." for w in ("black", "white", "small", "old")] * 5
    french = [f"le chat {w} dort ." for w in ("noir", "blanc", "petit", "vieux")] * 5
    tokenizer = Tokenizer.train(english, french, directory / "tokenizer", vocab_size=40)
    config = ModelConfig(src_vocab_size=tokenizer.src_vocab_size, tgt_vocab_size=tokenizer.tgt_vocab_size, d_model=8,
                         n_heads=2, d_ff=16, n_encoder_layers=1, n_decoder_layers=1, max_len=12,
                         share_embeddings=True)
    model = make_model(config, seed=0, backend="numpy")
    save_checkpoint(directory, model, None, {"step": 1}, name="final")
    return directory, model, tokenizer


@QUICK
@given(lines=st.lists(st.one_of(input_line, any_text.map(lambda text: text.replace("\n", " "))), max_size=6),
       policy=st.sampled_from(["skip", "fail"]))
def test_encoding_any_lines_skips_or_fails_as_documented(run_dir, lines, policy):
    _, model, tokenizer = run_dir
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            encoded, empty, skipped = encode_input_lines(lines, model, tokenizer, "in.txt", policy)
        except TranslateError as error:
            assert policy == "fail" and str(error).startswith("in.txt line ")
            return
    numbers = sorted(list(encoded) + empty + [number for number, _ in skipped])
    assert numbers == list(range(1, len(lines) + 1))  # every line is accounted for, once
    assert policy == "skip" or not skipped
    for ids in encoded.values():
        assert 0 < len(ids) <= model.config.max_len


@SLOW
@given(data=st.one_of(st.binary(max_size=120),
                      st.lists(input_line, max_size=5).map(lambda lines: "\n".join(lines).encode("utf-8"))))
def test_translate_input_end_to_end_keeps_one_line_per_line(run_dir, tmp_path_factory, data):
    directory = tmp_path_factory.mktemp("translate")
    source = write(directory, "in.txt", data)
    output = directory / "out.txt"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["translate", "--checkpoint", str(run_dir[0]), "--input", str(source), "--output", str(output),
                         "--backend", "numpy", "--max-len", "4"])
    assert "Traceback" not in err.getvalue()
    for line in err.getvalue().splitlines():  # every echo is inert: no escape reaches the terminal
        assert "\x1b" not in line and line.isprintable()
    if code != 0:
        assert code == 1 and "not valid UTF-8" in err.getvalue() and not output.exists()
        return
    n_lines = len(read_input_lines(source))
    written = output.read_text(encoding="utf-8")
    assert written.count("\n") == n_lines and (not written or written.endswith("\n"))
