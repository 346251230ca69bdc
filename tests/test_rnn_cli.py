"""RNNenc and RNNsearch through the project's pipeline: `minitransformer train --model …`
writes a run directory (format-2 checkpoints, one .npz each, under the run directory's
lock) that `translate` decodes greedily and with a beam, that `--resume` continues, and
whose RNNsearch cross-attention the trace and the views show."""

import json

import numpy as np
import pytest

from minitransformer import cli
from minitransformer.checkpoint import FORMAT_VERSION, load_checkpoint, load_for_inference
from minitransformer.configs import TrainConfig
from minitransformer.rnn import RNNEncoderDecoder
from minitransformer.rundir import RunLock
from minitransformer.trace import AttentionTrace

from helpers import write_tiny_pairs

TINY = {"name": "tiny", "held_out_sources": 4, "vocab_size": 50, "d_model": 16, "max_len": 24, "max_tokens": 300,
        "warmup_steps": 4, "epochs": None, "minutes": None, "max_steps": 4, "eval_every": 2, "eval_sentences": 2,
        "samples": 1, "log_every": 1, "checkpoint_every": 2}


@pytest.fixture
def files(tmp_path):
    pairs = write_tiny_pairs(tmp_path / "pairs.tsv")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    return {"pairs": pairs, "config": config, "dir": tmp_path}


def train(files, model, run, *more):
    return cli.main(["train", "--config", str(files["config"]), "--data", str(files["pairs"]), "--model", model,
                     "--out", str(run), "--backend", "numpy", "--no-progress", *more])


@pytest.mark.parametrize("architecture", ["rnnenc", "rnnsearch"])
def test_train_translate_resume(files, capsys, architecture):
    run = files["dir"] / architecture
    assert train(files, architecture, run) == 0
    assert "Done:" in capsys.readouterr().out
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["architecture"] == architecture and saved["model"]["architecture"] == architecture
    checkpoint = load_checkpoint(run / "checkpoints" / "last.npz")
    assert checkpoint["state"]["format_version"] == FORMAT_VERSION and checkpoint["optimizer"] is not None
    assert ("attention.w_score" in checkpoint["params"]) == (architecture == "rnnsearch")
    model, _, _ = load_for_inference(run, backend="numpy")
    assert isinstance(model, RNNEncoderDecoder) and model.config.architecture == architecture
    for beam in ("1", "3"):
        assert cli.main(["translate", "--checkpoint", str(run), "--beam", beam, "--backend", "numpy",
                         "the black cat sleeps ."]) == 0
        assert capsys.readouterr().out.strip()
    assert cli.main(["train", "--resume", "--out", str(run), "--max-steps", "6", "--backend", "numpy",
                     "--no-progress"]) == 0
    assert "Resuming" in capsys.readouterr().out
    assert json.loads((run / "metrics.json").read_text())["steps"] == 6
    if architecture == "rnnsearch":
        check_attention_trace_and_views(run, files["dir"] / "views")


def check_attention_trace_and_views(run, out):
    assert cli.main(["translate", "--checkpoint", str(run), "--backend", "numpy", "--attention",
                     "--trace", str(out / "cat"), "--png", str(out / "cat.png"), "--html", str(out / "cat.html"),
                     "the black cat sleeps ."]) == 0
    trace = AttentionTrace.load(out / "cat")
    # one "layer" of one "head": Bahdanau's α, one row per decoding step, each summing to 1
    assert trace.cross.shape[:2] == (1, 1) and trace.encoder.shape[0] == 0 and trace.decoder_self.shape[0] == 0
    np.testing.assert_allclose(trace.cross[0, 0].sum(axis=1), 1.0, atol=1e-6)
    assert (out / "cat.png").stat().st_size > 0 and (out / "cat.html").stat().st_size > 0


def test_the_run_directory_lock_applies_to_rnn_runs(files, capsys):
    run = files["dir"] / "locked"
    run.mkdir()
    lock = RunLock.acquire(run)
    try:
        assert train(files, "rnnsearch", run) == 1
        assert "another training process" in capsys.readouterr().err
    finally:
        lock.release()


def test_an_unknown_architecture_is_a_config_error():
    with pytest.raises(ValueError, match="architecture"):
        TrainConfig(architecture="lstm")
