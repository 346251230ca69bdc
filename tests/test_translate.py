"""``minitransformer translate`` end to end, on a run directory made here: a SentencePiece
tokenizer trained on a few sentences and a small untrained model, saved as a checkpoint.
The translations are nonsense; what is tested is that the command prints exactly what
the decoding functions compute, that every view is written, and that bad input ends with
one clear line and a non-zero exit, never a traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minitransformer import cli, translate
from minitransformer.checkpoint import save_checkpoint
from minitransformer.config import ModelConfig
from minitransformer.decode import beam_search, greedy_decode
from minitransformer.model import make_model
from minitransformer.tokenizer import Tokenizer
from minitransformer.trace import AttentionTrace
from minitransformer.viz.terminal import text_width

ENGLISH = [
    "the black cat sleeps .",
    "the white dog runs .",
    "a small bird sings .",
    "my brother reads a book .",
    "the cat eats fish .",
    "we like the green house .",
]
FRENCH = [
    "le chat noir dort .",
    "le chien blanc court .",
    "un petit oiseau chante .",
    "mon frère lit un livre .",
    "le chat mange du poisson .",
    "nous aimons la maison verte .",
]
MAX_POSITIONS = 24


def make_run(run_dir, tokenizer, tgt_vocab_size=None, seed=0):
    config = ModelConfig(
        src_vocab_size=tokenizer.src_vocab_size,
        tgt_vocab_size=tgt_vocab_size or tokenizer.tgt_vocab_size,
        d_model=16,
        n_heads=2,
        d_ff=32,
        n_encoder_layers=2,
        n_decoder_layers=2,
        max_len=MAX_POSITIONS,
    )
    model = make_model(config, seed=seed)
    model.params["generator.bias"][tokenizer.eos_id] = 2.0  # end some sentences early
    save_checkpoint(run_dir, model, None, {"step": 0}, name="final")
    return model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(run directory, model, tokenizer)."""
    run_dir = tmp_path_factory.mktemp("run")
    tokenizer = Tokenizer.train(ENGLISH * 3, FRENCH * 3, run_dir / "tokenizer", vocab_size=80)
    model = make_run(run_dir, tokenizer)
    return run_dir, model, tokenizer


def translate_command(capsys, *arguments):
    """Run ``minitransformer translate …`` in this process -> (exit code, stdout, stderr)."""
    code = cli.main(["translate", "--backend", "numpy", *map(str, arguments)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def expected_translation(model, tokenizer, text, beam=1):
    ids = tokenizer.encode_src(text)
    src = np.array([ids])
    max_len = 2 * len(ids) + 10
    if beam == 1:
        output = greedy_decode(model, src, tokenizer.bos_id, tokenizer.eos_id, max_len)[0]
    else:
        output = beam_search(model, src, tokenizer.bos_id, tokenizer.eos_id, max_len, beam)[0]
    return tokenizer.decode_tgt(output)


# --- translating -----------------------------------------------------------------------------


@pytest.mark.parametrize("options", [[], ["--beam", "3"], ["--no-cache"], ["--beam", "3", "--no-cache"]])
def test_prints_what_the_decoder_computes(run, capsys, options):
    run_dir, model, tokenizer = run
    code, out, err = translate_command(capsys, "the black cat sleeps .", "--checkpoint", run_dir, *options)
    assert code == 0, err
    beam = int(options[1]) if "--beam" in options else 1
    assert out == expected_translation(model, tokenizer, "the black cat sleeps .", beam) + "\n"
    assert err == ""


def test_without_checkpoint_it_uses_runs_toy(run, capsys, tmp_path, monkeypatch):
    run_dir, model, tokenizer = run
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "toy").symlink_to(run_dir, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    code, out, err = translate_command(capsys, "the white dog runs .")
    assert code == 0, err
    assert out == expected_translation(model, tokenizer, "the white dog runs .") + "\n"
    # and says what to do when there is none
    monkeypatch.setattr(translate, "DEFAULT_RUN", Path("runs") / "no-such-run")
    code, out, err = translate_command(capsys, "the white dog runs .")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "make train" in err and "--checkpoint" in err


def test_attention_prints_labelled_heatmaps_within_80_columns(run, capsys):
    run_dir, model, tokenizer = run
    code, out, err = translate_command(capsys, "the black cat sleeps .", "--checkpoint", run_dir, "--attention")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == expected_translation(model, tokenizer, "the black cat sleeps .")
    assert max(text_width(line) for line in lines) <= 80
    for title in ("encoder self-attention", "decoder self-attention", "cross-attention", "saliency", "step by step"):
        assert title in out
    assert "▁cat" in out and "layer 2 of 2 · mean of 2 heads" in out
    # one head of the first layer, on request
    code, out, _ = translate_command(
        capsys, "the black cat sleeps .", "--checkpoint", run_dir, "--attention", "--layer", "1", "--head", "2"
    )
    assert code == 0 and "cross-attention · layer 1 of 2 · head 2 of 2" in out


def test_png_html_and_trace_files_are_written(run, capsys, tmp_path):
    run_dir, model, tokenizer = run
    code, out, err = translate_command(
        capsys,
        "a small bird sings .",
        "--checkpoint",
        run_dir,
        "--beam",
        "2",
        "--png",
        tmp_path / "a.png",
        "--html",
        tmp_path / "a.html",
        "--trace",
        tmp_path / "a",
    )
    assert code == 0, err
    assert out == expected_translation(model, tokenizer, "a small bird sings .", beam=2) + "\n"
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert '<script type="application/json" id="trace-data">' in (tmp_path / "a.html").read_text(encoding="utf-8")
    trace = AttentionTrace.load(tmp_path / "a")
    assert trace.source_pieces == tokenizer.src_pieces(tokenizer.encode_src("a small bird sings ."))
    assert trace.meta["decoder"].startswith("beam search, K=2")
    assert trace.output_text == out.strip()


@pytest.mark.parametrize("beam", [1, 2])
def test_a_file_is_translated_line_by_line_keeping_empty_lines(run, capsys, tmp_path, beam):
    run_dir, model, tokenizer = run
    lines = ["the black cat sleeps .", "", "my brother reads a book .", "   ", "the cat eats fish .", "we like it ."]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    options = ["--output", tmp_path / "out.txt", "--checkpoint", run_dir, "--beam", beam, "--batch-size", 2]
    code, out, err = translate_command(capsys, "--input", source, *options)
    assert code == 0, err
    written = (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n")
    assert written[-1] == "" and len(written) - 1 == len(lines)
    for line, translation in zip(lines, written):
        # batched with padding, the same as alone
        assert translation == (expected_translation(model, tokenizer, line, beam) if line.strip() else "")
    warnings = [line for line in err.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and "2 empty line(s)" in warnings[0] and "line 2, 4" in warnings[0]
    # without --output, to stdout
    code, out, _ = translate_command(capsys, "--input", source, "--checkpoint", run_dir, "--beam", beam)
    assert code == 0 and out.split("\n") == written


# --- bad input -------------------------------------------------------------------------------


def assert_one_line_error(code, out, err, expected_code, *phrases):
    assert code == expected_code, (code, err)
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("minitransformer translate: error: "), err
    assert "Traceback" not in err
    for phrase in phrases:
        assert phrase in err, (phrase, err)


@pytest.mark.parametrize(
    "text, phrase",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("☃☃☃", "every piece is unknown"),
        ("你好世界", "every piece is unknown"),
        ("zzz qqq", "every piece is unknown"),
        (" ".join(["the black cat"] * 10), f"reads at most {MAX_POSITIONS}"),
    ],
    ids=["empty", "blank", "snowmen", "chinese", "unknown-letters", "too-long"],
)
def test_bad_sentences_end_with_one_clear_line(run, capsys, text, phrase):
    code, out, err = translate_command(capsys, text, "--checkpoint", run[0])
    assert_one_line_error(code, out, err, 1, phrase)


def test_a_partly_unknown_sentence_is_translated_with_a_warning(run, capsys):
    run_dir, model, tokenizer = run
    code, out, err = translate_command(capsys, "the cat ☃", "--checkpoint", run_dir)
    assert code == 0 and out == expected_translation(model, tokenizer, "the cat ☃") + "\n"
    assert err.startswith("warning: 1 of 3 pieces") and err.count("\n") == 1


def test_a_bad_line_in_a_file_is_named(run, capsys, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("the black cat sleeps .\n☃☃☃\n", encoding="utf-8")
    code, out, err = translate_command(capsys, "--input", source, "--checkpoint", run[0], "--bad-lines", "fail")
    assert_one_line_error(code, out, err, 1, f"{source} line 2", "unknown")


def test_a_bad_line_is_skipped_by_default_and_the_others_kept(run, capsys, tmp_path):
    run_dir, model, tokenizer = run
    source = tmp_path / "in.txt"
    # \f and U+2028 are not line breaks: three lines in, three lines out
    source.write_text("the black cat sleeps .\n☃☃☃\nthe cat\fsleeps\u2028.\n", encoding="utf-8")
    output = tmp_path / "out.txt"
    output.write_text("the previous translations\n", encoding="utf-8")
    code, out, err = translate_command(capsys, "--input", source, "--checkpoint", run_dir, "--output", output)
    assert code == 0 and out == ""
    assert "1 line(s) of" in err and "stay empty" in err and "line 2" in err
    lines = output.read_text(encoding="utf-8").split("\n")
    assert len(lines) == 4 and lines[3] == ""  # three lines, each ended by "\n"
    assert lines[0] == expected_translation(model, tokenizer, "the black cat sleeps .") and lines[1] == ""
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_output_is_atomic_when_the_write_fails(run, capsys, tmp_path, monkeypatch):
    from minitransformer import checkpoint as checkpoint_module

    source = tmp_path / "in.txt"
    source.write_text("the black cat sleeps .\n", encoding="utf-8")
    output = tmp_path / "out.txt"
    output.write_text("the previous translations\n", encoding="utf-8")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module.os, "fsync", disk_full)
    code, out, err = translate_command(capsys, "--input", source, "--checkpoint", run[0], "--output", output)
    assert_one_line_error(code, out, err, 1, str(output), "No space left", "untouched")
    assert output.read_text(encoding="utf-8") == "the previous translations\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]


def test_missing_and_incompatible_checkpoints_end_with_one_clear_line(run, capsys, tmp_path):
    run_dir, _, tokenizer = run
    code, out, err = translate_command(capsys, "the cat", "--checkpoint", tmp_path / "nowhere")
    assert_one_line_error(code, out, err, 1, "cannot use the checkpoint", "nowhere")
    # a model whose vocabulary is not the tokenizer's
    other = tmp_path / "other"
    (other / "tokenizer").mkdir(parents=True)
    for file in (run_dir / "tokenizer").iterdir():
        (other / "tokenizer" / file.name).write_bytes(file.read_bytes())
    make_run(other, tokenizer, tgt_vocab_size=tokenizer.tgt_vocab_size + 7)
    code, out, err = translate_command(capsys, "the cat", "--checkpoint", other)
    assert_one_line_error(code, out, err, 1, "cannot use the checkpoint", "do not match")
    # a damaged record
    record = other / "checkpoints" / "final.npz"
    record.write_bytes(record.read_bytes()[:100])  # cut short
    code, out, err = translate_command(capsys, "the cat", "--checkpoint", other)
    assert_one_line_error(code, out, err, 1, "unreadable")


@pytest.mark.parametrize(
    "arguments, phrase",
    [
        (["the cat", "--input", "x.txt"], "not both"),
        ([], "give a sentence"),
        (["the cat", "--output", "y.txt"], "--output goes with --input"),
        (["--input", "x.txt", "--png", "a.png"], "--png shows one sentence"),
        (["the cat", "--beam", "0"], "--beam must be at least 1"),
        (["the cat", "--attention", "--head", "9"], "--head must lie in 1..2"),
        (["the cat", "--attention", "--layer", "0"], "--layer must lie in 1..2"),
        (["the cat", "--beam", "2", "--length-penalty=-inf"], "--length-penalty must be a number from 0 to 10"),
        (["the cat", "--beam", "2", "--length-penalty", "1000"], "--length-penalty must be a number from 0 to 10"),
        (["the cat", "--beam", "2", "--length-penalty", "nan"], "--length-penalty must be a number from 0 to 10"),
        (["the cat", "--png", "x.xyz"], "its name must end in .png, got x.xyz"),
        (["the cat", "--png-summary", "x\x1b[2J.jpg"], "got x\\x1b[2J.jpg"),
    ],
)
def test_options_that_do_not_go_together_exit_2(run, capsys, arguments, phrase):
    code, out, err = translate_command(capsys, *arguments, "--checkpoint", run[0])
    assert_one_line_error(code, out, err, 2, phrase)


def test_the_installed_command_prints_no_traceback(run):
    """The same through a fresh interpreter, as a user runs it."""
    environment = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [sys.executable, "-m", "minitransformer", "translate", "☃☃☃"]
        + ["--checkpoint", str(run[0]), "--backend", "numpy"],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )
    assert result.returncode == 1
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "every piece is unknown" in result.stderr


def test_the_trace_json_is_valid_after_a_cli_run(run, capsys, tmp_path):
    code, _, err = translate_command(
        capsys, "the cat eats fish .", "--checkpoint", run[0], "--trace", tmp_path / "t.json"
    )
    assert code == 0, err
    record = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    assert record["format"] == "minitransformer-attention-trace"
    assert record["source_pieces"][:2] == ["▁the", "▁cat"]
