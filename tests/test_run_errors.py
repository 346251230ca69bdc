"""Every case of issue 18's list ends with ONE line on stderr and its documented exit code,
before any expensive work, and touches nothing: tiny data, bad config fields, resumes that
cannot be, a replaced tokenizer, hostile text echoed to the terminal."""

import itertools
import json

import pytest

from minitransformer import cli
from minitransformer.tokenizer import Tokenizer

ADJECTIVES = [("black", "noir"), ("white", "blanc"), ("small", "petit"), ("old", "vieux")]
NOUNS = [("cat", "chat"), ("dog", "chien"), ("horse", "cheval")]
VERBS = [("sleeps", "dort"), ("eats", "mange"), ("runs", "court"), ("sings", "chante")]
MODEL = {"d_model": 16, "n_heads": 2, "d_ff": 32, "n_encoder_layers": 1, "n_decoder_layers": 1, "max_len": 24}
TINY = {"name": "tiny", "held_out_sources": 4, "vocab_size": 50, "model": MODEL, "max_tokens": 300,
        "warmup_steps": 4, "epochs": None, "minutes": None, "max_steps": 2, "eval_every": 100, "eval_sentences": 2,
        "samples": 1, "log_every": 1, "checkpoint_every": 2}


@pytest.fixture
def files(tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"the {a} {n} {v} .\tle {nn} {aa} {vv} .\n" for (a, aa), (n, nn), (v, vv)
                             in itertools.product(ADJECTIVES, NOUNS, VERBS)), encoding="utf-8")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    return {"pairs": pairs, "config": config, "run": tmp_path / "run", "dir": tmp_path}


def train(files, *more, config=None, data=None):
    return cli.main(["train", "--config", str(config or files["config"]), "--data", str(data or files["pairs"]),
                     "--out", str(files["run"]), "--backend", "numpy", "--no-progress", *more])


def one_error_line(capsys):
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    lines = [line for line in captured.err.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1, captured.err
    return lines[0]


def test_a_data_file_with_a_single_pair(files, capsys):
    single = files["dir"] / "one.tsv"
    single.write_text("the cat sleeps .\tle chat dort .\n", encoding="utf-8")
    assert train(files, data=single) == 1
    line = one_error_line(capsys)
    assert "too few distinct English sources (1)" in line and "valid_data" in line
    assert not files["run"].exists()


def test_no_pair_within_max_len(files, capsys):
    config = files["dir"] / "short.json"
    config.write_text(json.dumps(dict(TINY, model=dict(MODEL, max_len=2))))
    assert train(files, config=config) == 1
    assert "fits within max_len=2 pieces; raise max_len" in one_error_line(capsys)
    assert not files["run"].exists()


@pytest.mark.parametrize("change, phrase", [
    ({"model": dict(MODEL, d_model="abc")}, "TrainConfig.model.d_model must be int, got 'abc'"),
    ({"model": dict(MODEL, d_model=30, n_heads=4)}, "TrainConfig.model.d_model=30 is not divisible by n_heads=4"),
    ({"model": dict(MODEL, dropout=-0.5)}, "TrainConfig.model.dropout must lie in [0, 1)"),
    ({"model": dict(MODEL, n_heads=0)}, "TrainConfig.model.n_heads must be a positive integer, got 0"),
    ({"model": dict(MODEL, dtype="float16")}, "TrainConfig.model.dtype must be one of"),
    ({"model": dict(MODEL, max_len=0)}, "TrainConfig.model.max_len must be a positive integer, got 0"),
    ({"model": dict(MODEL, layernorm_eps=0.0)}, "TrainConfig.model.layernorm_eps must be positive, got 0.0"),
    ({"model": dict(MODEL, attention_core="flash")}, "TrainConfig.model.attention_core must be one of"),
    ({"model": dict(MODEL, n_layers=2)}, "unknown TrainConfig.model field(s): n_layers"),
    ({"model": dict(MODEL, pad_id=1)}, "TrainConfig.model.pad_id is the tokenizer's"),
    ({"model": dict(MODEL, src_vocab_size=50)}, "TrainConfig.model.src_vocab_size is the tokenizer's"),
    # the earlier flat layout names the field as the model section's
    ({"model": {}, "d_model": 30}, "TrainConfig.model.d_model=30 is not divisible by n_heads=4"),
    ({"vocab_size": 5}, "TrainConfig.vocab_size must be at least 16"),
    ({"lr_factor": float("nan")}, "TrainConfig.lr_factor must be a finite number"),
    ({"max_steps": 2.5}, "TrainConfig.max_steps must be int or None"),
])
def test_bad_config_fields_before_any_work(files, capsys, monkeypatch, change, phrase):
    def no_tokenizer(*args, **kwargs):
        raise AssertionError("the tokenizer was trained before the config was checked")

    monkeypatch.setattr(Tokenizer, "train", no_tokenizer)
    monkeypatch.setattr("minitransformer.train.load_pairs", no_tokenizer)
    config = files["dir"] / "bad.json"
    config.write_text(json.dumps(dict(TINY, **change)))
    assert train(files, config=config) == 1
    line = one_error_line(capsys)
    assert phrase in line and str(config) in line
    assert not files["run"].exists()


def test_resume_of_a_run_killed_before_its_first_checkpoint(files, capsys):
    files["run"].mkdir()  # as an older version left it, or an empty directory
    assert cli.main(["train", "--resume", "--out", str(files["run"]), "--backend", "numpy"]) == 1
    line = one_error_line(capsys)
    assert "no checkpoint was written yet" in line and f"minitransformer train --out {files['run']}" in line


def test_resume_with_another_vocabularys_tokenizer_names_the_tokenizer(files, capsys):
    assert train(files) == 0
    Tokenizer.train(["completely different words here"] * 3, ["d'autres mots"] * 3, files["run"] / "tokenizer",
                    vocab_size=30)
    capsys.readouterr()
    assert cli.main(["train", "--resume", "--out", str(files["run"]), "--backend", "numpy", "--no-progress"]) == 1
    line = one_error_line(capsys)
    assert "tokenizer: this tokenizer's vocabularies" in line and "was replaced" in line
    assert "config" not in line.split("tokenizer:")[1].split("was replaced")[0]


def test_resume_and_overwrite_together(files, capsys):
    assert train(files, "--resume", "--overwrite") == 1
    assert "give one of them" in one_error_line(capsys)


def test_a_directory_that_is_not_a_run_is_never_replaced(files, capsys):
    files["run"].mkdir()
    (files["run"] / "notes.txt").write_text("mine")
    assert train(files, "--overwrite") == 1
    assert "is not a run directory" in one_error_line(capsys)
    assert (files["run"] / "notes.txt").read_text() == "mine"


def test_terminal_escapes_in_the_data_are_not_echoed(files, capsys):
    hostile = files["dir"] / "hostile\x1b]0;owned\x07.tsv"
    assert train(files, data=hostile) == 1
    line = one_error_line(capsys)
    assert "\x1b" not in line and "\\x1b]0;owned\\x07" in line and "no such file" in line
    # sample translations print sources from the data file: escapes are shown, not obeyed
    pairs = files["dir"] / "escapes.tsv"
    pairs.write_text(files["pairs"].read_text(encoding="utf-8").replace("the black", "the \x1b[2Jblack"),
                     encoding="utf-8")
    assert train(files, "--max-steps", "1", data=pairs) == 0
    captured = capsys.readouterr()
    assert "\x1b" not in captured.out + captured.err


def test_the_training_command_line_documents_its_exit_codes():
    from minitransformer import train as train_module

    assert train_module.EXIT_CODES == {2: 130, 15: 143}
    assert "143" in cli.__doc__ and "130" in cli.__doc__
