"""Data parallel (minitransformer/parallel/): the step of P ranks equals one process on the
same global batch, simulated and over `mpiexec -n 2`; training, resume and faults over MPI."""

import numpy as np
import pytest

from helpers import data_parallel_case
from minitransformer.parallel.data_parallel import balanced_split, shard_batch, simulated_data_parallel
from mpi_launch import ROOT, run_mpi

# float64: the shares' gradients are summed in another order than one batch's, so they
# agree to rounding (measured ~1e-16 relative), far inside 1e-12
TOLERANCE = 1e-12


def single_process(model, batch, smoothing):
    loss = model.loss_and_grads(batch.src, batch.tgt_in, batch.tgt_out, smoothing, None)
    return loss, {key: value.copy() for key, value in model.grads.items()}


def assert_grads_close(label, grads, expected):
    for key, want in expected.items():
        # relative to the tensor's largest entry, floored at 1e-3: a gradient that is 0 in
        # exact arithmetic (b_k: the softmax ignores a shift shared by a row's scores) is
        # rounding noise of ~1e-17 in both, and has no relative error to speak of
        error = np.max(np.abs(grads[key] - want)) / max(np.max(np.abs(want)), 1e-3)
        assert error <= TOLERANCE, f"{label}: {key} relative error {error:.2e}"


def test_balanced_split_gives_every_part_rows_and_even_tokens():
    costs = np.array([5, 5, 5, 5, 20])
    assert balanced_split(costs, 2) == [0, 4, 5]
    assert balanced_split(np.array([1, 1]), 3)[-1] == 2  # more ranks than rows: some get none
    for parts in (1, 2, 3, 4):
        starts = balanced_split(np.ones(9), parts)
        assert starts[0] == 0 and starts[-1] == 9 and all(b > a for a, b in zip(starts, starts[1:]))


def test_shards_cover_the_batch_and_drop_only_padding():
    model, batch, _ = data_parallel_case()
    shards = [shard_batch(batch, rank, 3, model.config.pad_id) for rank in range(3)]
    assert sum(shard.src.shape[0] for shard in shards) == batch.size
    assert sum(shard.n_tgt_tokens for shard in shards) == batch.n_tgt_tokens
    assert sum(int((shard.src != 0).sum()) for shard in shards) == batch.n_src_tokens


@pytest.mark.parametrize("ranks", [1, 2, 3, 7, 9])
def test_simulated_ranks_equal_one_process(ranks):
    model, batch, smoothing = data_parallel_case()
    expected_loss, expected = single_process(model, batch, smoothing)
    loss = simulated_data_parallel(model, batch, ranks, smoothing)
    assert abs(loss - expected_loss) <= TOLERANCE * abs(expected_loss)
    assert_grads_close(f"{ranks} simulated ranks", model.grads, expected)


def test_the_launcher_turns_the_pid_mpiexec_reports_into_a_rank(tmp_path):
    from minitransformer.parallel.launch import who_died

    (tmp_path / "rank-0").write_text("4241")
    (tmp_path / "rank-1").write_text("4242")
    report = "=   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES\n=   PID 4242 RUNNING AT vm\n=   EXIT CODE: 9\n"
    assert who_died(report, tmp_path, 2) == (
        "minitransformer: rank 1 of 2 (pid 4242) died without a word (signal 9: SIGKILL, as the out-of-memory "
        "killer sends); mpiexec stopped every rank")
    assert who_died("Abort(1) on node 1", tmp_path, 2) is None  # a rank that said why itself


def test_two_ranks_over_mpi_equal_one_process(tmp_path):
    model, batch, smoothing = data_parallel_case()
    expected_loss, expected = single_process(model, batch, smoothing)
    result_path = tmp_path / "step.npz"
    run_mpi(2, [str(ROOT / "tests" / "mpi" / "data_parallel_worker.py"), str(result_path)])
    result = np.load(result_path)
    assert abs(float(result["loss"]) - expected_loss) <= TOLERANCE * abs(expected_loss)
    assert_grads_close("2 ranks over MPI", {key: result[f"grad/{key}"] for key in expected}, expected)


# --- training over MPI: the loop, resume, faults --------------------------------------------

import io  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402

from minitransformer.checkpoint import load_checkpoint  # noqa: E402
from minitransformer.config import ModelConfig  # noqa: E402
from minitransformer.configs import TrainConfig  # noqa: E402
from minitransformer.train import Trainer  # noqa: E402
from test_train import write_tiny_corpus  # noqa: E402

# a rank killed mid-run must end the job within this (MPICH stops the others at once; the
# collectives' own timeout, MINITRANSFORMER_MPI_TIMEOUT, is the fallback for other launchers)
FAULT_SECONDS = 30


@pytest.fixture(scope="module")
def tiny_run_config(tmp_path_factory):
    """A float64 run of 6 steps on the tiny corpus, a checkpoint every 3 steps."""
    train, valid, test = write_tiny_corpus(tmp_path_factory.mktemp("dp-corpus"))
    return TrainConfig(
        name="tiny-dp", train_data=str(train), valid_data=str(valid), test_data=str(test),
        compositional_test_data=None, vocab_size=50,
        model=ModelConfig(d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1, n_decoder_layers=1, dropout=0.0,
                          max_len=16, share_embeddings=True, dtype="float64"),
        max_tokens=300, warmup_steps=4, epochs=None, minutes=None,
        max_steps=6, eval_every=1000, eval_sentences=2, samples=0, log_every=1, checkpoint_every=3,
        keep_checkpoints=2, average_checkpoints=False, seed=3,
    )


def train_over_mpi(config, tmp_path, run_dir, extra=(), env=None, check=True):
    config_path = tmp_path / f"{run_dir.name}-config.json"
    config_path.write_text(json.dumps(config.to_dict()), encoding="utf-8")
    args = ["-m", "minitransformer", "train", "--config", str(config_path), "--out", str(run_dir),
            "--backend", "numpy", "--no-progress", *extra]
    return run_mpi(2, args, env=env, check=check, cwd=tmp_path)


def train_losses(run_dir):
    return [entry["loss"] for entry in json.loads((run_dir / "metrics.json").read_text())["history"]["train"]]


def single_process_losses(config, run_dir):
    """Train ``config`` in this process (the reference run), -> its training losses."""
    single = Trainer(config, run_dir, backend="numpy", progress=False, out=io.StringIO())
    single.train()
    single.finish()
    return train_losses(run_dir)


def test_two_rank_training_equals_one_process(tiny_run_config, tmp_path):
    mpiexec_check = train_over_mpi(tiny_run_config, tmp_path, tmp_path / "two")
    assert mpiexec_check.stdout.count("Training 6,") == 1, "progress must print once, not once per rank"
    one, two = single_process_losses(tiny_run_config, tmp_path / "one"), train_losses(tmp_path / "two")
    assert len(one) == len(two) == 6
    # six Adam steps carry the rounding of the first gradients along: still ~1e-15
    np.testing.assert_allclose(two, one, rtol=1e-12, atol=0)
    params_one = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.npz")["params"]
    params_two = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.npz")["params"]
    # 1e-9, not 1e-12, for one reason: b_k's gradient is 0 in exact arithmetic (a shift shared
    # by a row's scores), so both runs feed Adam rounding noise of ~1e-17 there, which its
    # m/(√v + ε) turns into steps of up to lr·1e-8, different in each run; no loss sees b_k
    for key, value in params_one.items():
        np.testing.assert_allclose(params_two[key], value, rtol=0, atol=1e-9, err_msg=key)


def test_a_killed_rank_ends_the_job_naming_it_and_resume_continues_exactly(tiny_run_config, tmp_path):
    config = tiny_run_config.with_model(dropout=0.1)  # on: each rank's own stream must resume exactly
    train_over_mpi(config, tmp_path, tmp_path / "whole")
    started = time.monotonic()
    killed = train_over_mpi(config, tmp_path, tmp_path / "killed", check=False,
                            env={"MINITRANSFORMER_KILL_RANK_AT_STEP": "1:5"})
    assert time.monotonic() - started < FAULT_SECONDS
    assert killed.returncode != 0
    lines = [line for line in killed.stderr.splitlines() if line.startswith("minitransformer: rank 1 of 2")]
    assert len(lines) == 1 and "SIGKILL" in lines[0], killed.stderr
    checkpoint = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.npz")
    assert checkpoint["state"]["step"] == 3 and checkpoint["state"]["world_size"] == 2
    resumed = train_over_mpi(config, tmp_path, tmp_path / "killed", extra=["--resume"])
    assert "note:" not in resumed.stdout
    assert train_losses(tmp_path / "killed") == train_losses(tmp_path / "whole")


def test_an_exception_on_a_rank_ends_the_job_with_one_line(tiny_run_config, tmp_path):
    failed = train_over_mpi(tiny_run_config, tmp_path, tmp_path / "failed", check=False,
                            env={"MINITRANSFORMER_FAIL_RANK_AT_STEP": "1:2"})
    assert failed.returncode != 0
    lines = [line for line in failed.stderr.splitlines() if line.startswith("minitransformer: rank 1 of 2 failed")]
    assert len(lines) == 1 and "RuntimeError" in lines[0], failed.stderr
    assert "Traceback" not in failed.stderr


def test_a_rank_that_stops_answering_ends_the_job_at_the_timeout(tiny_run_config, tmp_path):
    started = time.monotonic()
    hung = train_over_mpi(tiny_run_config, tmp_path, tmp_path / "hung", check=False,
                          env={"MINITRANSFORMER_HANG_RANK_AT_STEP": "1:2", "MINITRANSFORMER_MPI_TIMEOUT": "5"})
    assert time.monotonic() - started < FAULT_SECONDS
    assert hung.returncode != 0
    lines = [line for line in hung.stderr.splitlines() if line.startswith("minitransformer: rank 0 of 2: no answer")]
    assert len(lines) == 1 and "within 5 s in the gradient all-reduce of step 2" in lines[0], hung.stderr


def test_resuming_on_another_world_size_says_so(tiny_run_config, tmp_path):
    train_over_mpi(replace(tiny_run_config, max_steps=3), tmp_path, tmp_path / "run")
    out = io.StringIO()
    trainer = Trainer(tiny_run_config, tmp_path / "run", backend="numpy", resume=True, progress=False, out=out)
    trainer.train()
    trainer.close()
    notes = [line for line in out.getvalue().splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "saved by 2 rank(s) and resumes on 1" in notes[0]
    assert len(train_losses(tmp_path / "run")) == 6
