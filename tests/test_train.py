"""The training loop: exact resumption, a non-finite loss, Ctrl-C, the final evaluation, and
a few steps on the real Tatoeba data. Tiny models on a tiny corpus, NumPy backend."""

import json
import os
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from minitransformer.checkpoint import load_checkpoint, load_for_inference
from minitransformer.config import ModelConfig
from minitransformer.configs import TrainConfig
from minitransformer.evaluate import corpus_bleu
from minitransformer.train import Trainer, TrainingDiverged
from helpers import rewrite_record, tiny_pair_lines

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

def write_tiny_corpus(directory):
    """48 toy pairs: 40 to train on, 4 valid, 4 test. Returns the three paths."""
    lines = tiny_pair_lines()
    np.random.default_rng(0).shuffle(lines)
    paths = []
    for name, part in (("train", lines[:40]), ("valid", lines[40:44]), ("test", lines[44:])):
        path = directory / f"{name}.tsv"
        path.write_text("\n".join(part) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    train, valid, test = write_tiny_corpus(tmp_path_factory.mktemp("corpus"))
    return TrainConfig(
        name="tiny",
        train_data=str(train),
        valid_data=str(valid),
        test_data=str(test),
        compositional_test_data=None,
        vocab_size=50,
        # dropout on: the resume test needs the random stream to matter
        model=ModelConfig(d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1, n_decoder_layers=1, dropout=0.1,
                          max_len=16, share_embeddings=True),
        max_tokens=300,  # 10 pairs a batch, 4 batches an epoch: six steps cross an epoch boundary
        warmup_steps=4,
        epochs=None,
        minutes=None,
        max_steps=6,
        eval_every=1000,
        eval_sentences=2,
        samples=1,
        log_every=1,
        checkpoint_every=1000,
        keep_checkpoints=3,
        seed=3,
    )


def make_trainer(config, run_dir, **kwargs):
    return Trainer(config, run_dir, backend="numpy", progress=False, **kwargs)



@pytest.fixture(scope="module")
def uninterrupted(tiny_config, tmp_path_factory):
    """Six steps in one go: the reference that every interrupted run must reproduce."""
    trainer = make_trainer(tiny_config, tmp_path_factory.mktemp("run"))
    assert trainer.train() == "max_steps"
    assert trainer.epoch >= 1, "the run should cross an epoch boundary"
    return trainer


def assert_same_state(trainer, reference):
    assert trainer.step == reference.step
    assert (trainer.epoch, trainer.batch_index) == (reference.epoch, reference.batch_index)
    for key, value in reference.model.params.items():
        np.testing.assert_array_equal(trainer.model.params[key], value, err_msg=key)
    for key, value in reference.optimizer.state_dict().items():
        np.testing.assert_array_equal(trainer.optimizer.state_dict()[key], value, err_msg=key)
    assert trainer.rng.state() == reference.rng.state()


def test_losses_are_finite_and_fall(uninterrupted):
    losses = uninterrupted.step_losses
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert losses[-1] < losses[0]


def test_resume_is_bit_identical(tiny_config, uninterrupted, tmp_path):
    first = make_trainer(replace(tiny_config, max_steps=3), tmp_path)
    assert first.train() == "max_steps"
    assert load_checkpoint(tmp_path / "checkpoints" / "last")["state"]["step"] == 3
    second = make_trainer(tiny_config, tmp_path, resume=True)  # a fresh Trainer, from the files alone
    assert second.step == 3
    assert second.train() == "max_steps"
    assert first.step_losses + second.step_losses == uninterrupted.step_losses  # exact, not approximate
    assert_same_state(second, uninterrupted)


def test_resume_depends_on_the_saved_random_state(tiny_config, uninterrupted, tmp_path):
    """Shows the resume test has teeth: with dropout on, a wrong random state changes the losses."""
    first = make_trainer(replace(tiny_config, max_steps=3), tmp_path)
    first.train()
    rewrite_record(tmp_path / "checkpoints" / "last.npz",
                   lambda record: record["rng"]["dropout"].update(calls=record["rng"]["dropout"]["calls"] + 1))
    second = make_trainer(tiny_config, tmp_path, resume=True)
    second.train()
    assert second.step_losses != uninterrupted.step_losses[3:]


def test_resume_of_a_checkpoint_from_before_the_counter_based_stream(tiny_config, tmp_path, capsys):
    """A checkpoint that saved a NumPy bit-generator state (before the dropout stream was
    counter-based) still resumes, and says that its dropout masks start afresh."""
    first = make_trainer(replace(tiny_config, max_steps=3), tmp_path)
    first.train()
    rewrite_record(tmp_path / "checkpoints" / "last.npz",
                   lambda record: record["rng"].update(dropout=np.random.default_rng(12345).bit_generator.state))
    second = make_trainer(tiny_config, tmp_path, resume=True)
    assert second.train() == "max_steps" and second.step == tiny_config.max_steps
    assert "predates the counter-based dropout stream" in capsys.readouterr().out


# config.json as the code before the "model" section wrote it (the model's fields at the top
# level), for the tiny config above and its RNNsearch twin, with the complete model configs
# that code built for a vocabulary of 46 pieces
FLAT_LAYOUT = json.loads((Path(__file__).parent / "fixtures" / "config_flat_layout.json").read_text())


@pytest.mark.parametrize("architecture", ["transformer", "rnnsearch"])
def test_a_flat_layout_config_reads_as_the_same_run(tiny_config, architecture):
    saved = FLAT_LAYOUT[architecture]
    config = TrainConfig.from_dict(saved["train"])
    assert "d_model" not in config.to_dict() and config.to_dict()["model"]
    assert config.architecture == architecture and config.model.max_len == 16 and config.seed == 3
    # the same model as the flat layout built, field for field
    assert config.model.with_vocabulary(vocabulary_of(46)).to_dict() == saved["model"]
    assert TrainConfig.from_dict(config.to_dict()) == config  # the nested layout reads back the same
    if architecture == "transformer":
        assert replace(config, train_data=tiny_config.train_data, valid_data=tiny_config.valid_data,
                       test_data=tiny_config.test_data) == tiny_config


def vocabulary_of(size):
    """What with_vocabulary reads of a tokenizer."""
    from types import SimpleNamespace

    return SimpleNamespace(src_vocab_size=size, tgt_vocab_size=size, pad_id=0)


def test_a_run_directory_of_the_flat_layout_resumes_exactly(tiny_config, uninterrupted, tmp_path, capsys):
    """A run whose config.json (and checkpoint record) hold the flat layout resumes, through
    the command line too, and ends exactly as the run that never stopped."""
    from minitransformer import cli

    first = make_trainer(replace(tiny_config, max_steps=3), tmp_path)
    first.train()
    flat = dict(FLAT_LAYOUT["transformer"]["train"], train_data=tiny_config.train_data,
                valid_data=tiny_config.valid_data, test_data=tiny_config.test_data, max_steps=3)
    written = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({"train": flat, "model": written["model"]}))
    rewrite_record(tmp_path / "checkpoints" / "last.npz", lambda record: record.update(train_config=flat))
    assert cli.main(["train", "--resume", "--out", str(tmp_path), "--max-steps", "6", "--backend", "numpy",
                     "--no-progress"]) == 0
    assert "Resuming" in capsys.readouterr().out
    final = load_checkpoint(tmp_path / "checkpoints" / "last")
    assert final["state"]["step"] == 6
    for key, value in uninterrupted.model.params.items():
        np.testing.assert_array_equal(final["params"][key], value, err_msg=key)
    # and a flat config that differs in a model field is refused like a nested one
    (tmp_path / "config.json").write_text(json.dumps({"train": dict(flat, d_model=32), "model": written["model"]}))
    with pytest.raises(Exception, match=r"different settings \(model\.d_model\)"):
        make_trainer(tiny_config, tmp_path, resume=True)


def test_resume_refuses_other_settings(tiny_config, tmp_path):
    make_trainer(replace(tiny_config, max_steps=1), tmp_path).train()
    with pytest.raises(Exception, match="different settings .*d_model"):
        make_trainer(tiny_config.with_model(d_model=32), tmp_path, resume=True)
    with pytest.raises(Exception, match="nothing to resume"):
        make_trainer(tiny_config, tmp_path / "elsewhere", resume=True)


def test_a_fresh_run_replaces_an_old_one_only_when_asked(tiny_config, tmp_path):
    make_trainer(replace(tiny_config, max_steps=2, checkpoint_every=1), tmp_path).train()
    with pytest.raises(Exception, match="already holds a run; nothing was changed.*--resume.*--overwrite"):
        make_trainer(replace(tiny_config, max_steps=1), tmp_path)
    assert load_checkpoint(tmp_path / "checkpoints" / "last")["state"]["step"] == 2
    trainer = make_trainer(replace(tiny_config, max_steps=1, checkpoint_every=1), tmp_path, overwrite=True)
    trainer.train()
    assert load_checkpoint(tmp_path / "checkpoints" / "last")["state"]["step"] == 1
    assert [p.name for p in sorted((tmp_path / "checkpoints").glob("step-*"))] == ["step-00000001.npz"]


# --- a loss that is not finite ---------------------------------------------------------------------


def files_of(directory):
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def test_nan_loss_stops_and_leaves_the_last_good_checkpoint(tiny_config, tmp_path):
    trainer = make_trainer(replace(tiny_config, checkpoint_every=2), tmp_path)
    real = trainer.model.loss_and_grads
    seen = {}

    def nan_at_step_three(*args, **kwargs):
        loss = real(*args, **kwargs)
        if trainer.step == 2:  # computing step 3
            seen["files"] = files_of(tmp_path / "checkpoints")
            seen["params"] = {key: value.copy() for key, value in trainer.model.params.items()}
            return float("nan")
        return loss

    trainer.model.loss_and_grads = nan_at_step_three
    with pytest.raises(TrainingDiverged) as error:
        trainer.train()
    message = str(error.value)
    assert "the loss is nan at step 3" in message
    assert "last good checkpoint, step 2" in message and "untouched" in message
    assert files_of(tmp_path / "checkpoints") == seen["files"]
    assert load_checkpoint(tmp_path / "checkpoints" / "last")["state"]["step"] == 2
    for key, value in seen["params"].items():  # the bad step did not update the weights either
        np.testing.assert_array_equal(trainer.model.params[key], value)


def test_infinite_gradient_stops_before_the_update(tiny_config, tmp_path):
    trainer = make_trainer(tiny_config, tmp_path)
    real = trainer.model.loss_and_grads

    def infinite_gradient(*args, **kwargs):
        loss = real(*args, **kwargs)
        trainer.model.grads["generator.bias"][0] = np.inf
        return loss

    trainer.model.loss_and_grads = infinite_gradient
    with pytest.raises(TrainingDiverged, match="gradient norm is inf at step 1.*no checkpoint had been saved yet"):
        trainer.train()
    assert not (tmp_path / "checkpoints").exists()  # a fresh run that saved nothing leaves nothing


# --- Ctrl-C -------------------------------------------------------------------------------------------


def test_keyboard_interrupt_saves_and_resume_continues_exactly(tiny_config, uninterrupted, tmp_path, capsys):
    trainer = make_trainer(tiny_config, tmp_path)
    real = trainer.model.loss_and_grads

    def interrupt_at_step_four(*args, **kwargs):
        if trainer.step == 3:
            real(*args, **kwargs)  # half-way through the step's random draws, as a real Ctrl-C would be
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    trainer.model.loss_and_grads = interrupt_at_step_four
    assert trainer.train() == "interrupted"
    output = capsys.readouterr().out
    assert "stopped at step 3" in output
    assert f"Resume with: minitransformer train --resume --out {tmp_path}" in output
    assert load_checkpoint(tmp_path / "checkpoints" / "last")["state"]["step"] == 3
    resumed = make_trainer(tiny_config, tmp_path, resume=True)
    resumed.train()
    assert trainer.step_losses + resumed.step_losses == uninterrupted.step_losses
    assert_same_state(resumed, uninterrupted)


def test_sigint_stops_after_the_current_step(tiny_config, uninterrupted, tmp_path, capsys):
    trainer = make_trainer(tiny_config, tmp_path)
    real = trainer.model.loss_and_grads

    def ctrl_c_during_step_two(*args, **kwargs):
        if trainer.step == 1:
            os.kill(os.getpid(), signal.SIGINT)  # the handler only sets a flag: the step completes
        return real(*args, **kwargs)

    trainer.model.loss_and_grads = ctrl_c_during_step_two
    # usually Python's default_int_handler; SIG_IGN where the suite runs as a background job
    handler_before = signal.getsignal(signal.SIGINT)
    assert trainer.train() == "interrupted"
    assert trainer.step == 2
    assert signal.getsignal(signal.SIGINT) is handler_before  # the handler was put back
    assert load_checkpoint(tmp_path / "checkpoints" / "last")["state"]["step"] == 2
    assert "--resume" in capsys.readouterr().out
    resumed = make_trainer(tiny_config, tmp_path, resume=True)
    resumed.train()
    assert trainer.step_losses + resumed.step_losses == uninterrupted.step_losses


# --- the end of a run --------------------------------------------------------------------------------


def test_finish_writes_metrics_plot_and_final_checkpoint(tiny_config, tmp_path):
    trainer = make_trainer(replace(tiny_config, max_steps=4, eval_every=2, checkpoint_every=2), tmp_path)
    trainer.train()
    metrics = trainer.finish()
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("test_bleu", "valid_loss", "valid_bleu", "train_seconds", "tokens_per_second", "backend",
                "steps", "parameters", "final_weights", "history"):
        assert key in on_disk, key
    assert on_disk["finished"] and on_disk["backend"] == "numpy" and on_disk["steps"] == 4
    assert 0.0 <= on_disk["test_bleu"] <= 100.0 and np.isfinite(on_disk["valid_loss"])
    assert on_disk["tokens_per_second"] > 0
    assert [entry["step"] for entry in on_disk["history"]["valid"]] == [2, 4]
    assert metrics["test_bleu"] == on_disk["test_bleu"]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["train"]["model"]["d_model"] == 16 and config["model"]["src_vocab_size"] == trainer.tokenizer.src_vocab_size
    model, tokenizer, info = load_for_inference(tmp_path, backend="numpy")
    assert info["checkpoint"].endswith("final.npz") and info["final_weights"] == metrics["final_weights"]


@pytest.mark.parametrize("average_wins", [True, False])
def test_the_average_is_kept_only_when_it_scores_better(tiny_config, tmp_path, average_wins):
    trainer = make_trainer(replace(tiny_config, max_steps=3, checkpoint_every=1), tmp_path)
    trainer.train()
    last = {key: value.copy() for key, value in trainer.model.params.items()}

    def fake_evaluate(eval_set, samples=0):
        is_last = all(np.array_equal(trainer.model.params[key], value) for key, value in last.items())
        return {"loss": 1.0, "bleu": 40.0 if is_last == average_wins else 50.0}

    trainer.evaluate = fake_evaluate
    metrics = trainer.finish()
    final = load_checkpoint(tmp_path / "checkpoints" / "final")["params"]
    if average_wins:
        assert metrics["final_weights"].startswith("average of the last 3 checkpoints")
        assert not np.array_equal(final["generator.bias"], last["generator.bias"])
    else:
        assert metrics["final_weights"] == "last"
        for key, value in last.items():
            np.testing.assert_array_equal(final[key], value)


def test_corpus_bleu_uses_every_reference():
    references = [["le chat dort .", "le chat est endormi ."], ["le chien mange ."]]
    assert corpus_bleu(["le chat est endormi .", "le chien mange ."], references) == pytest.approx(100.0)
    assert corpus_bleu(["le chat est endormi .", "le chien mange ."], [[r[0]] for r in references]) < 100.0


@pytest.mark.skipif(
    not (SHARED_DATA / "tatoeba-fra-eng-train.tsv").is_file(),
    reason=f"the Tatoeba files are not in {SHARED_DATA} (they live beside the checkout, in shared/data)",
)
def test_a_few_steps_on_tatoeba(tiny_config, tmp_path):
    config = replace(
        tiny_config,
        name="tatoeba-smoke",
        train_data=str(SHARED_DATA / "tatoeba-fra-eng-train.tsv"),
        valid_data=str(SHARED_DATA / "tatoeba-fra-eng-valid.tsv"),
        test_data=None,  # held out of the training file by English source
        held_out_sources=50,
        vocab_size=500,
        model=replace(tiny_config.model, max_len=48),
        max_tokens=600,
        max_steps=3,
    )
    trainer = make_trainer(config, tmp_path)
    assert trainer.train() == "max_steps"
    assert len(trainer.step_losses) == 3 and all(np.isfinite(trainer.step_losses))
    assert trainer.n_train_pairs > 70_000
    assert len(trainer.valid.sources) == 1_000 and len(trainer.test_sets["test"].sources) == 50
    held_out = set(trainer.test_sets["test"].sources)
    assert not held_out & {trainer.tokenizer.decode_src(src) for src, _ in trainer.batcher.examples[:5000]}
