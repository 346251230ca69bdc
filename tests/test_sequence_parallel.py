"""Sequence parallel (minitransformer/parallel/sequence_parallel.py): the encoder's positions
split over P ranks, its self-attention on the ring. The step equals one process on the same
batch, simulated on threads with P = 1, 2, 3 (and more ranks than positions) and over
`mpiexec -n 2`; a 2-rank `minitransformer train` with the switch repeats one process's losses."""

import json
from dataclasses import replace

import numpy as np
import pytest

from helpers import SEQUENCE_PARALLEL_MODELS, sequence_parallel_case
from minitransformer.backends import cython_backend
from minitransformer.configs import TrainConfig
from minitransformer.layers.dropout import DropoutStream, dropout_forward
from minitransformer.parallel.links import run_on_threads
from minitransformer.parallel.ring_attention import block_bounds
from minitransformer.parallel.sequence_parallel import (
    SequenceParallelStep,
    block_index,
    simulate_ranks,
    simulated_sequence_parallel,
    unsupported,
)
from mpi_launch import ROOT, run_mpi

# float64: a rank's encoder gradients are sums over its block, added over the ranks, so they
# agree with one process's sums over all positions to rounding (~1e-16), far inside 1e-12
TOLERANCE = 1e-12


def stream_of(model):
    return DropoutStream(7) if model.config.dropout > 0 else None


def single_process(model, batch, smoothing):
    rng = stream_of(model)
    loss = model.loss_and_grads(batch.src, batch.tgt_in, batch.tgt_out, smoothing, rng)
    return loss, {key: value.copy() for key, value in model.grads.items()}, rng


def assert_grads_close(label, grads, expected):
    assert set(grads) == set(expected), f"{label}: keys differ"
    for key, want in expected.items():
        # relative to the tensor's largest entry, floored at 1e-3 (b_k's exact gradient is
        # 0: both sides hold rounding noise there; see tests/test_data_parallel.py)
        error = np.max(np.abs(grads[key] - want)) / max(np.max(np.abs(want)), 1e-3)
        assert error <= TOLERANCE, f"{label}: {key} relative error {error:.2e}"


def test_block_index_numbers_the_blocks_as_the_whole_tensor():
    whole = np.arange(3 * 7 * 5).reshape(3, 7, 5)
    blocks = [block_index((3, stop - start, 5), 7, start) for start, stop in block_bounds(7, 3)]
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), whole)
    assert block_index((2, 4, 3, 2), 9, 5).shape == (2, 4, 3, 2)  # trailing axes flattened in order


def test_a_block_draws_the_whole_tensors_dropout_mask():
    x = np.random.default_rng(0).standard_normal((2, 7, 6))
    whole, cache = dropout_forward(x, 0.4, DropoutStream(11))
    for start, stop in block_bounds(7, 3):
        part, part_cache = dropout_forward(x[:, start:stop], 0.4, DropoutStream(11),
                                           block_index((2, stop - start, 6), 7, start))
        np.testing.assert_array_equal(part, whole[:, start:stop])
        np.testing.assert_array_equal(part_cache.keep, cache.keep[:, start:stop])


@pytest.mark.parametrize("name", list(SEQUENCE_PARALLEL_MODELS))
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_simulated_ranks_equal_one_process(name, ranks):
    model, batch, smoothing = sequence_parallel_case(name)
    expected_loss, expected, expected_rng = single_process(model, batch, smoothing)
    rng = stream_of(model)
    results = simulate_ranks(model, batch, ranks, smoothing, rng)
    for rank, (loss, grads) in enumerate(results):
        assert abs(loss - expected_loss) <= TOLERANCE * abs(expected_loss), f"rank {rank}: loss {loss} != {expected_loss}"
        assert_grads_close(f"{name}, rank {rank} of {ranks}", grads, expected)
    # the decoder is replicated: every rank ends with the very same loss and gradients
    for loss, grads in results[1:]:
        assert loss == results[0][0]
        assert all(np.array_equal(grads[key], results[0][1][key]) for key in grads)
    if rng is not None:  # the stream moved on by exactly the single-process step's calls
        assert rng.calls == expected_rng.calls


def test_more_ranks_than_source_positions_pad_the_source():
    model, batch, smoothing = sequence_parallel_case("post-norm")
    expected_loss, expected, _ = single_process(model, batch, smoothing)
    ranks = batch.src.shape[1] + 2  # two ranks hold padding only
    loss = simulated_sequence_parallel(model, batch, ranks, smoothing)
    assert abs(loss - expected_loss) <= TOLERANCE * abs(expected_loss)
    assert_grads_close(f"{ranks} ranks", model.grads, expected)


def test_the_switch_refuses_what_the_ring_cannot_compute():
    model, _, _ = sequence_parallel_case("post-norm")
    assert unsupported(model.config) is None
    assert "attention_window=2" in unsupported(replace(model.config, attention_window=2))
    assert "performer:8" in unsupported(replace(model.config, encoder_attention="performer:8"))
    assert "cupy" in unsupported(model.config, "cupy")
    assert "rnnsearch" in unsupported(TrainConfig().with_architecture("rnnsearch"))
    windowed = sequence_parallel_case("post-norm")[0]
    windowed.config = replace(windowed.config, attention_window=2)
    with pytest.raises(ValueError, match="sequence_parallel cannot train with attention_window=2"):
        SequenceParallelStep(world=None, model=windowed)


def test_a_simulated_rank_that_fails_stops_the_others():
    def program(link):
        if link.rank == 1:
            raise RuntimeError("rank 1 broke")
        link.exchange("waiting for rank 1")  # would wait forever without the broken barrier

    with pytest.raises(RuntimeError, match="rank 1 broke"):
        run_on_threads(3, program)


@pytest.mark.parametrize("name, backend", [("shared-embedding", "numpy"), ("dropout", "numpy"), ("dropout", "cython")])
def test_two_ranks_over_mpi_equal_one_process(name, backend, tmp_path):
    # on the Cython backend: its compiled LayerNorm, loss and dropout masks around the ring
    # (the ring's pairs are NumPy's), against one process on the same backend
    if backend == "cython" and cython_backend.unavailable_reason() is not None:
        pytest.skip(f"Cython kernels not built: {cython_backend.unavailable_reason()}")
    model, batch, smoothing = sequence_parallel_case(name, backend)
    expected_loss, expected, _ = single_process(model, batch, smoothing)
    run_mpi(2, [str(ROOT / "tests" / "mpi" / "sequence_parallel_worker.py"), str(tmp_path / "step.npz"), name,
                backend])
    for rank in range(2):
        result = np.load(tmp_path / f"step-rank{rank}.npz")
        assert abs(float(result["loss"]) - expected_loss) <= TOLERANCE * abs(expected_loss)
        assert_grads_close(f"{name}, rank {rank} of 2 over MPI", {key: result[f"grad/{key}"] for key in expected},
                           expected)


# --- training over MPI with the switch ------------------------------------------------------

from test_data_parallel import single_process_losses, tiny_run_config, train_losses, train_over_mpi  # noqa: E402, F401


@pytest.fixture(scope="module")
def sequence_run_config(tiny_run_config):  # noqa: F811
    """data parallel's float64 run of 6 steps on the tiny corpus, sequence-parallel, with
    2 encoder layers (the ring between them) and dropout on."""
    model = replace(tiny_run_config.model, n_encoder_layers=2, dropout=0.1)
    return replace(tiny_run_config, name="tiny-sp", model=model, sequence_parallel=True)


def test_two_rank_sequence_parallel_training_repeats_one_process(sequence_run_config, tmp_path):
    train_over_mpi(sequence_run_config, tmp_path, tmp_path / "two")
    one, two = single_process_losses(sequence_run_config, tmp_path / "one"), train_losses(tmp_path / "two")
    assert len(one) == len(two) == 6
    # dropout is on, and each rank drew the single-process masks of its positions: the
    # losses agree to the rounding that six Adam steps carry along
    np.testing.assert_allclose(two, one, rtol=1e-12, atol=0)
    saved = json.loads((tmp_path / "two" / "config.json").read_text())
    assert saved["train"]["sequence_parallel"] is True


def test_the_switch_with_local_attention_is_one_line_over_mpi(sequence_run_config, tmp_path):
    windowed = replace(sequence_run_config, model=replace(sequence_run_config.model, attention_window=2))
    failed = train_over_mpi(windowed, tmp_path, tmp_path / "windowed", check=False)
    assert failed.returncode != 0
    lines = [line for line in failed.stderr.splitlines() if "sequence_parallel" in line]
    assert lines == ["minitransformer: error: TrainConfig.sequence_parallel cannot train with attention_window=2 "
                     "(the ring computes global attention)"], failed.stderr


def test_a_resumed_sequence_parallel_run_continues_exactly(sequence_run_config, tmp_path):
    train_over_mpi(sequence_run_config, tmp_path, tmp_path / "whole")
    train_over_mpi(replace(sequence_run_config, max_steps=3), tmp_path, tmp_path / "halves")
    resumed = train_over_mpi(sequence_run_config, tmp_path, tmp_path / "halves", extra=["--resume"])
    assert "note:" not in resumed.stdout
    # every rank saved the same (single-process) dropout stream, and picks it up again
    assert train_losses(tmp_path / "halves") == train_losses(tmp_path / "whole")
