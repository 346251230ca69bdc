"""The command line end to end: `minitransformer train` on a tiny config writes a complete
run directory that `translate` can use and `--resume` continues; bad input ends with one
line and an exit code, never a traceback."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from minitransformer import backends, cli
from minitransformer.model import Transformer
from helpers import write_tiny_pairs


TINY = {
    "name": "tiny",
    "held_out_sources": 4,
    "vocab_size": 50,
    "d_model": 16,
    "n_heads": 2,
    "d_ff": 32,
    "n_encoder_layers": 1,
    "n_decoder_layers": 1,
    "max_len": 24,
    "max_tokens": 300,
    "warmup_steps": 4,
    "epochs": None,
    "minutes": None,
    "max_steps": 6,
    "eval_every": 3,
    "eval_sentences": 2,
    "samples": 1,
    "log_every": 1,
    "checkpoint_every": 2,
}


@pytest.fixture
def files(tmp_path):
    """A pair file of 48 toy pairs and a tiny config."""
    pairs = tmp_path / "pairs.tsv"
    write_tiny_pairs(pairs)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    return {"pairs": pairs, "config": config, "run": tmp_path / "run", "dir": tmp_path}


def train_args(files, *more):
    return ["train", "--config", str(files["config"]), "--data", str(files["pairs"]), "--out", str(files["run"]),
            "--backend", "numpy", "--no-progress", *more]


def one_error_line(capsys):
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert "Traceback" not in captured.err + captured.out
    assert len(lines) == 1, captured.err
    return lines[0]


def test_train_writes_the_run_directory_and_translate_uses_it(files, capsys):
    assert cli.main(train_args(files)) == 0
    out = capsys.readouterr().out
    assert "source:" in out and "reference:" in out and "hypothesis:" in out and "Done:" in out
    run = files["run"]
    for name in ("config.json", "metrics.json", "curves.png", "tokenizer/tokenizer.json", "tokenizer/shared.model",
                 "checkpoints/last.npz", "checkpoints/final.npz"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 6 and metrics["backend"] == "numpy" and metrics["finished"]
    for key in ("test_bleu", "valid_loss", "train_seconds", "tokens_per_second", "valid_bleu", "parameters"):
        assert metrics[key] is not None, key
    # --data holds valid and test out of the one file, by English source
    assert metrics["train_pairs"] == 48 - 8

    # the batch translation of the decode engineer, through this run's checkpoint and tokenizer
    english = files["dir"] / "english.txt"
    english.write_text("the black cat sleeps .\nthe old horse sings .\n", encoding="utf-8")
    french = files["dir"] / "french.txt"
    code = cli.main(["translate", "--checkpoint", str(run), "--input", str(english), "--output", str(french),
                     "--backend", "numpy"])
    assert code == 0
    assert len(french.read_text(encoding="utf-8").splitlines()) == 2

    # --resume continues the same run with a larger budget
    assert cli.main(["train", "--resume", "--out", str(run), "--max-steps", "8", "--backend", "numpy",
                     "--no-progress"]) == 0
    assert "Resuming" in capsys.readouterr().out
    assert json.loads((run / "metrics.json").read_text())["steps"] == 8


def test_python_dash_m_shows_both_subcommands():
    result = subprocess.run([sys.executable, "-m", "minitransformer", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    assert "train" in result.stdout and "translate" in result.stdout


def test_ctrl_c_saves_and_says_how_to_resume(files, capsys, monkeypatch):
    real = Transformer.loss_and_grads
    calls = itertools.count(1)

    def interrupted_on_the_third_step(self, *args, **kwargs):
        if next(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Transformer, "loss_and_grads", interrupted_on_the_third_step)
    assert cli.main(train_args(files)) == 130
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert f"Resume with: minitransformer train --resume --out {files['run']}" in captured.out
    from minitransformer.checkpoint import load_checkpoint

    assert load_checkpoint(files["run"] / "checkpoints" / "last")["state"]["step"] == 2


def test_divergence_is_one_line(files, capsys, monkeypatch):
    monkeypatch.setattr(Transformer, "loss_and_grads", lambda self, *args, **kwargs: float("inf"))
    assert cli.main(train_args(files)) == 1
    line = one_error_line(capsys)
    assert line.startswith("minitransformer: training diverged: the loss is inf at step 1")


# --- errors: one line, an exit code ------------------------------------------------------------


def test_unavailable_backend(files, capsys, monkeypatch):
    def unavailable(name=None):
        raise backends.BackendUnavailable(f"the {name!r} backend cannot run: no GPU here")

    monkeypatch.setattr(backends, "get", unavailable)
    assert cli.main(["train", "--config", str(files["config"]), "--backend", "cupy"]) == 2
    assert one_error_line(capsys) == "minitransformer: error: the 'cupy' backend cannot run: no GPU here"


def test_backend_from_the_environment(files, capsys, monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "tpu")
    assert cli.main(train_args(files)[:-3]) == 2  # without --backend: the variable decides
    assert "unknown backend 'tpu'" in one_error_line(capsys)


def test_missing_data_file(files, capsys):
    args = train_args(files)
    args[args.index("--data") + 1] = str(files["dir"] / "absent.tsv")
    assert cli.main(args) == 1
    line = one_error_line(capsys)
    assert "absent.tsv: no such file" in line


def test_non_utf8_data_file(files, capsys):
    files["pairs"].write_bytes(b"the cat .\tle chat .\nthe tea .\tle th\xe9 .\n")
    assert cli.main(train_args(files)) == 1
    assert "line 2 is not valid UTF-8" in one_error_line(capsys)


def test_malformed_lines_are_one_warning(files, capsys):
    with files["pairs"].open("a", encoding="utf-8") as handle:
        handle.write("no tab here\n")
    assert cli.main(train_args(files, "--max-steps", "1")) == 0
    warnings_printed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings_printed) == 1 and "skipped 1 malformed line(s)" in warnings_printed[0]


def test_resume_without_a_run(files, capsys):
    assert cli.main(["train", "--resume", "--out", str(files["dir"] / "nothing"), "--backend", "numpy"]) == 1
    assert "nothing to resume" in one_error_line(capsys)


def test_resume_from_a_damaged_checkpoint(files, capsys):
    assert cli.main(train_args(files, "--max-steps", "2")) == 0
    capsys.readouterr()
    (files["run"] / "checkpoints" / "last.npz").write_bytes(b"garbage")
    assert cli.main(["train", "--resume", "--out", str(files["run"]), "--backend", "numpy", "--no-progress"]) == 1
    assert "last.npz: unreadable checkpoint arrays" in one_error_line(capsys)


def test_unknown_config(capsys):
    assert cli.main(["train", "--config", "enormous", "--backend", "numpy"]) == 1
    assert "unknown config 'enormous'" in one_error_line(capsys)


def test_bad_config_value(files, capsys):
    files["config"].write_text(json.dumps(dict(TINY, max_tokens=0)))
    assert cli.main(train_args(files)) == 1
    assert "max_tokens must be a positive integer" in one_error_line(capsys)


def test_translate_without_a_run(files, capsys):
    code = cli.main(["translate", "--checkpoint", str(files["dir"] / "nope"), "the cat .", "--backend", "numpy"])
    assert code == 1
    assert "no such run directory or checkpoint" in one_error_line(capsys)


def test_weights_are_float32(files):
    # the config's dtype reaches the model: float32 weights in the saved checkpoint
    assert cli.main(train_args(files, "--max-steps", "1")) == 0
    with np.load(files["run"] / "checkpoints" / "last.npz") as archive:
        assert archive["param.embed.weight"].dtype == np.float32


def test_resume_keeps_the_data_and_seed(files, capsys):
    assert cli.main(train_args(files, "--max-steps", "1")) == 0
    capsys.readouterr()
    other = files["dir"] / "other.tsv"
    other.write_text("a\tb\n", encoding="utf-8")
    resume = ["train", "--resume", "--out", str(files["run"]), "--backend", "numpy", "--no-progress"]
    assert cli.main(resume + ["--data", str(other)]) == 1
    line = one_error_line(capsys)
    assert "--data differs" in line and "train_data" in line and "a resumed run keeps its settings" in line
    assert cli.main(resume + ["--seed", "99"]) == 1
    line = one_error_line(capsys)
    assert "--seed differs" in line and "seed 99 (the run has 0)" in line
    # a --config that changes what is trained is refused the same way, naming the fields
    changed = files["dir"] / "changed.json"
    changed.write_text(json.dumps(dict(TINY, d_model=32)))
    assert cli.main(resume + ["--config", str(changed), "--data", str(files["pairs"])]) == 1
    line = one_error_line(capsys)
    assert f"--config {changed} differs" in line and "d_model 32 (the run has 16)" in line
    # the same config (its budget may differ) is accepted, and its budget applies
    longer = files["dir"] / "longer.json"
    longer.write_text(json.dumps(dict(TINY, max_steps=2)))
    assert cli.main(resume + ["--config", str(longer), "--data", str(files["pairs"])]) == 0
    assert json.loads((files["run"] / "metrics.json").read_text())["steps"] == 2
