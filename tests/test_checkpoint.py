"""Checkpoints: a round trip, one file committed by one rename (so an interruption leaves a
whole checkpoint, old or new), the previous generation as a fallback, format-1 pairs still
read, clear errors for unusable checkpoints, and averaging."""

import json
import os

import numpy as np
import pytest

from minitransformer import checkpoint as checkpoint_module
from minitransformer.checkpoint import (
    CheckpointError,
    average_checkpoints,
    load_checkpoint,
    load_for_inference,
    save_checkpoint,
    save_step_checkpoint,
    step_checkpoints,
)
from minitransformer.config import ModelConfig
from minitransformer.layers.dropout import DropoutStream
from minitransformer.model import make_model
from minitransformer.optim import Adam
from minitransformer.tokenizer import Tokenizer
from helpers import rewrite_record


def tiny_model(vocab_size=40, seed=0, **overrides):
    values = dict(src_vocab_size=vocab_size, tgt_vocab_size=vocab_size, d_model=8, n_heads=2, d_ff=16,
                  n_encoder_layers=1, n_decoder_layers=1, max_len=16, share_embeddings=True)
    values.update(overrides)
    return make_model(ModelConfig(**values), seed=seed, backend="numpy")


def trained_a_little(model, steps=2):
    """A model and an Adam whose moments are not zero, so that a round trip means something."""
    optimizer = Adam(model.params)
    rng = np.random.default_rng(0)
    src = rng.integers(4, model.config.src_vocab_size, (3, 5))
    tgt = rng.integers(4, model.config.tgt_vocab_size, (3, 6))
    for _ in range(steps):
        model.loss_and_grads(src, tgt[:, :-1], tgt[:, 1:], 0.1, rng)
        optimizer.step(model.params, model.grads, 1e-3)
    return optimizer


def snapshot(directory):
    """Every file in a directory, by name, with its bytes."""
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def test_round_trip(tmp_path):
    model = tiny_model()
    optimizer = trained_a_little(model)
    stream = DropoutStream(seed=2**64 - 5)
    stream.next_key()
    state = {"step": 2, "epoch": 0, "data_position": {"epoch": 0, "batch": 2}, "rng": {"dropout": stream.state()}}
    path = save_checkpoint(tmp_path, model, optimizer, state)
    assert path == tmp_path / "checkpoints" / "last.npz"
    loaded = load_checkpoint(path)
    assert set(loaded["params"]) == set(model.params)
    for key, value in model.params.items():
        assert loaded["params"][key].dtype == np.float32
        np.testing.assert_array_equal(loaded["params"][key], value)
    for key, value in optimizer.state_dict().items():
        np.testing.assert_array_equal(loaded["optimizer"][key], value)
    record = loaded["state"]
    assert record["step"] == 2 and record["optimizer_step_count"] == 2 and record["format_version"] == 2
    assert ModelConfig.from_dict(record["model_config"]) == model.config
    # the dropout stream's state survives JSON (a 64-bit seed too): it continues the same keys
    restored = DropoutStream.from_state(record["rng"]["dropout"])
    assert restored.next_key() == stream.next_key()
    # the same paths work with either suffix or none
    for spelling in ("last.npz", "last"):
        assert load_checkpoint(tmp_path / "checkpoints" / spelling)["state"] == record


def test_files_are_named_as_documented(tmp_path):
    model = tiny_model()
    save_checkpoint(tmp_path, model, Adam(model.params), {"step": 1})
    with np.load(tmp_path / "checkpoints" / "last.npz") as archive:
        names = set(archive.files)
    assert "param.embed.weight" in names and "optim.m.embed.weight" in names and "optim.v.embed.weight" in names
    assert "meta.record" in names
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.npz"]
    save_checkpoint(tmp_path, model, Adam(model.params), {"step": 2})  # the old last steps back
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.npz", "previous.npz"]
    assert load_checkpoint(tmp_path / "checkpoints" / "previous")["state"]["step"] == 1


def test_state_that_is_not_json_fails_before_touching_the_files(tmp_path):
    model = tiny_model()
    save_checkpoint(tmp_path, model, None, {"step": 1})
    before = snapshot(tmp_path / "checkpoints")
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path, model, None, {"step": 2, "bad": object()})
    assert snapshot(tmp_path / "checkpoints") == before


# --- atomic writes -------------------------------------------------------------------------------


def test_a_crash_while_writing_the_npz_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model = tiny_model()
    optimizer = trained_a_little(model, steps=1)
    save_checkpoint(tmp_path, model, optimizer, {"step": 1})
    before = snapshot(tmp_path / "checkpoints")
    trained_a_little(model, steps=1)  # the weights move on

    real_savez = np.savez

    def savez_then_crash(file, **arrays):
        real_savez(file, **arrays)  # a complete archive has been written to the temporary file…
        file.write(b"\0" * 100)
        raise OSError(28, "No space left on device")  # …and then the disk fills up

    monkeypatch.setattr(checkpoint_module.np, "savez", savez_then_crash)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tmp_path, model, optimizer, {"step": 2})
    # nothing changed, and no temporary file was left behind to be mistaken for a checkpoint
    assert snapshot(tmp_path / "checkpoints") == before
    assert load_checkpoint(tmp_path / "checkpoints" / "last")["state"]["step"] == 1


def test_an_interrupt_during_the_first_rename_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model = tiny_model()
    save_checkpoint(tmp_path, model, None, {"step": 1})
    before = snapshot(tmp_path / "checkpoints")

    def interrupted(source, destination):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, model, None, {"step": 2})
    assert snapshot(tmp_path / "checkpoints") == before
    assert load_checkpoint(tmp_path / "checkpoints" / "last")["state"]["step"] == 1


def test_a_kill_at_either_rename_of_a_save_leaves_a_whole_checkpoint(tmp_path, monkeypatch):
    """A save of "last" renames twice (old last -> previous, new -> last); whichever rename
    is cut, what load_resumable finds is a whole checkpoint of one save, never a mix."""
    model = tiny_model()
    optimizer = trained_a_little(model, steps=1)
    save_checkpoint(tmp_path, model, optimizer, {"step": 1})
    real_replace = os.replace
    calls = []

    def replace_until(n):
        def replace(source, destination):
            calls.append(os.path.basename(destination))
            if len(calls) == n:
                raise KeyboardInterrupt  # the kill: nothing after this happens
            real_replace(source, destination)
        return replace

    for cut in (1, 2):
        calls.clear()
        monkeypatch.setattr(checkpoint_module.os, "replace", replace_until(cut))
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint(tmp_path, model, optimizer, {"step": 1 + cut})
        monkeypatch.setattr(checkpoint_module.os, "replace", real_replace)
        assert calls == ["previous.npz", "last.npz"][:cut]
        notes = []
        found = checkpoint_module.load_resumable(tmp_path, notes.append)
        assert found["state"]["step"] == 1 and found["optimizer"] is not None  # the old save, whole
        assert ("falling back" in " ".join(notes)) == (cut == 2)  # last.npz was moved away, not replaced
        assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.endswith(".tmp")]
        save_checkpoint(tmp_path, model, optimizer, found["state"])  # as the resumed run would


def test_a_damaged_last_falls_back_to_previous_and_says_so(tmp_path):
    model = tiny_model()
    optimizer = trained_a_little(model, steps=1)
    save_checkpoint(tmp_path, model, optimizer, {"step": 4})
    save_checkpoint(tmp_path, model, optimizer, {"step": 8})
    last = tmp_path / "checkpoints" / "last.npz"
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the zip's CRC catches it
    last.write_bytes(bytes(data))
    notes = []
    found = checkpoint_module.load_resumable(tmp_path, notes.append)
    assert found["state"]["step"] == 4
    assert len(notes) == 1 and "last.npz" in notes[0] and "previous good checkpoint" in notes[0] and "step 4" in notes[0]


def test_resume_before_the_first_checkpoint_says_so(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint was written yet.*without --resume"):
        checkpoint_module.load_resumable(tmp_path)


def test_a_format_1_pair_is_still_read(tmp_path):
    """Runs saved before one-file checkpoints: an .npz beside a .json, paired by a token."""
    model = tiny_model()
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    arrays = {f"param.{key}": value for key, value in model.params.items()}
    np.savez(directory / "last.npz", **arrays, **{"meta.token": np.array("abc"), "meta.step": np.array(5)})
    record = {"format_version": 1, "token": "abc", "step": 5, "model_config": model.config.to_dict()}
    (directory / "last.json").write_text(json.dumps(record))
    assert load_checkpoint(directory / "last")["state"]["step"] == 5
    record["token"] = "another save"
    (directory / "last.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="different saves"):
        load_checkpoint(directory / "last")


# --- errors for unusable checkpoints --------------------------------------------------------------


@pytest.fixture
def run_dir(tmp_path):
    """A run directory as training leaves it: tokenizer/ and checkpoints/last."""
    english = [f"the {w} cat sleeps ." for w in ("black", "white", "small", "old")] * 5
    french = [f"le chat {w} dort ." for w in ("noir", "blanc", "petit", "vieux")] * 5
    tokenizer = Tokenizer.train(english, french, tmp_path / "tokenizer", vocab_size=40)
    model = tiny_model(vocab_size=tokenizer.src_vocab_size)
    save_checkpoint(tmp_path, model, Adam(model.params), {"step": 7, "metrics": {"valid_bleu": 1.0}})
    return tmp_path


def test_load_for_inference_from_a_run_directory_or_a_checkpoint(run_dir):
    model, tokenizer, info = load_for_inference(run_dir, backend="numpy")
    assert info["step"] == 7 and info["metrics"] == {"valid_bleu": 1.0}
    assert model.config.src_vocab_size == tokenizer.src_vocab_size
    assert info["checkpoint"].endswith("last.npz")
    src = np.array([tokenizer.encode_src("the black cat sleeps .")])
    logits, _ = model.forward(src, np.array([[tokenizer.bos_id]]))
    assert logits.shape == (1, 1, tokenizer.tgt_vocab_size)
    for path in (run_dir / "checkpoints" / "last", run_dir / "checkpoints" / "last.npz", run_dir / "checkpoints"):
        assert load_for_inference(path, backend="numpy")[2]["step"] == 7


def test_load_for_inference_prefers_the_final_checkpoint(run_dir):
    model, _, _ = load_for_inference(run_dir, backend="numpy")
    save_checkpoint(run_dir, model, None, {"step": 9}, name="final")
    assert load_for_inference(run_dir, backend="numpy")[2]["step"] == 9


def test_missing_run_or_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no such run directory or checkpoint") as error:
        load_for_inference(tmp_path / "nope")
    assert "nope" in str(error.value)
    with pytest.raises(CheckpointError, match="not a run directory"):
        load_for_inference(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        load_for_inference(tmp_path)



def test_config_that_does_not_match_the_weights_names_the_tensor(run_dir):
    rewrite_record(run_dir / "checkpoints" / "last.npz", lambda record: record["model_config"].update(d_ff=32))
    with pytest.raises(CheckpointError) as error:
        load_for_inference(run_dir, backend="numpy")
    message = str(error.value)
    assert "last.npz" in message and "encoder.layers.0.ffn" in message and "(8, 16)" in message


def test_config_with_more_layers_names_the_missing_tensors(run_dir):
    rewrite_record(run_dir / "checkpoints" / "last.npz", lambda record: record["model_config"].update(n_decoder_layers=2))
    with pytest.raises(CheckpointError, match="missing decoder.layers.1"):
        load_for_inference(run_dir, backend="numpy")


def test_unreadable_files(run_dir):
    directory = run_dir / "checkpoints"
    (directory / "last.npz").write_bytes(b"this is not a zip archive")
    with pytest.raises(CheckpointError, match="last.npz: unreadable checkpoint arrays"):
        load_for_inference(run_dir, backend="numpy")
    np.savez(directory / "last.npz", **{"param.x": np.zeros(2), "meta.record": np.array("{ not json")})
    with pytest.raises(CheckpointError, match="last.npz: unreadable checkpoint record"):
        load_checkpoint(directory / "last")
    np.savez(directory / "last.npz", **{"param.x": np.zeros(2), "meta.record": np.array('{"something": "else"}')})
    with pytest.raises(CheckpointError, match="not a minitransformer checkpoint"):
        load_checkpoint(directory / "last")


def test_the_checkpoint_file_missing(run_dir):
    (run_dir / "checkpoints" / "last.npz").unlink()
    with pytest.raises(CheckpointError, match="last.npz: checkpoint file not found"):
        load_checkpoint(run_dir / "checkpoints" / "last")


def test_missing_tokenizer(run_dir):
    for path in (run_dir / "tokenizer").iterdir():
        path.unlink()
    with pytest.raises(CheckpointError, match="tokenizer.json is missing"):
        load_for_inference(run_dir, backend="numpy")


def test_tokenizer_of_another_size(run_dir):
    Tokenizer.train(["completely different words here"] * 3, ["d'autres mots"] * 3, run_dir / "tokenizer", vocab_size=30)
    with pytest.raises(CheckpointError, match="vocabularies .* do not match"):
        load_for_inference(run_dir, backend="numpy")


# --- the ring and averaging ----------------------------------------------------------------------


def test_ring_keeps_the_newest_and_averaging_is_the_mean(tmp_path):
    models = [tiny_model(seed=seed) for seed in range(4)]
    for step, model in zip((100, 200, 300, 400), models):
        save_step_checkpoint(tmp_path, model, {"step": step}, keep=3)
    ring = step_checkpoints(tmp_path)
    assert [path.name for path in ring] == ["step-00000200", "step-00000300", "step-00000400"]
    averaged = average_checkpoints(ring)
    for key in models[0].params:
        expected = (models[1].params[key].astype(np.float64) + models[2].params[key] + models[3].params[key]) / 3
        assert averaged[key].dtype == np.float32
        np.testing.assert_allclose(averaged[key], expected, rtol=1e-6, atol=1e-7)


def test_averaging_different_models_is_an_error(tmp_path):
    save_step_checkpoint(tmp_path, tiny_model(), {"step": 1}, keep=5)
    save_step_checkpoint(tmp_path, tiny_model(d_ff=32), {"step": 2}, keep=5)
    with pytest.raises(CheckpointError, match="has shape"):
        average_checkpoints(step_checkpoints(tmp_path))
    with pytest.raises(CheckpointError, match="no checkpoints"):
        average_checkpoints([])
