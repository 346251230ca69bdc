"""Ring attention (minitransformer/parallel/) against the reference core, forward and backward:
simulated with 1 to 4 ranks, and over MPI with 2 processes started from the test."""

import numpy as np
import pytest

from minitransformer.layers.attention import attention_backward, attention_forward
from minitransformer.parallel.ring_attention import (
    block_bounds,
    merge_partials,
    ring_attention_backward_simulated,
    ring_attention_forward_simulated,
)
from mpi_launch import ROOT, run_mpi
from ring_cases import reference_mask, ring_cases

# float64: merging by logsumexp reorders sums of a few terms, so agreement is at rounding
# (measured ~1e-15); float32: the same at its precision, with room for the exp rescalings
TOLERANCE = {np.float64: 1e-12, np.float32: 1e-5}


def reference(q, k, v, dout, key_valid, causal):
    mask = reference_mask(key_valid, q.shape[2], causal)
    out, probs = attention_forward(q, k, v, mask)
    return (out,) + attention_backward(dout, q, k, v, probs)


def assert_close(name, got, expected, tol):
    error = np.max(np.abs(got - expected)) / max(1.0, np.max(np.abs(expected)))
    assert np.all(np.isfinite(got)), f"{name}: not finite"
    assert error <= tol, f"{name}: relative error {error:.2e} > {tol:.0e}"


def test_block_bounds_cover_the_sequence_unevenly():
    assert block_bounds(11, 4) == [(0, 3), (3, 6), (6, 9), (9, 11)]
    assert block_bounds(8, 1) == [(0, 8)]
    with pytest.raises(ValueError, match="cannot be split"):
        block_bounds(2, 3)


def test_merge_of_two_empty_partials_is_zero_not_nan():
    out = np.zeros((1, 1, 2, 3))
    lse = np.full((1, 1, 2), -np.inf)
    merged, merged_lse = merge_partials(out, lse, out, lse)
    assert np.all(merged == 0) and np.all(np.isneginf(merged_lse))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
@pytest.mark.parametrize("case", list(ring_cases()))
@pytest.mark.parametrize("block_size", [2, 128])  # a pair in tiles of 2, or in one tile
def test_simulated_ring_equals_the_reference_core(case, ranks, dtype, block_size):
    q, k, v, dout, key_valid, causal = ring_cases(dtype)[case]
    expected = reference(q, k, v, dout, key_valid, causal)
    out, lse = ring_attention_forward_simulated(q, k, v, ranks, key_valid, causal, block_size)
    grads = ring_attention_backward_simulated(dout, q, k, v, out, lse, ranks, key_valid, causal, block_size)
    for name, got, want in zip(("out", "dq", "dk", "dv"), (out,) + grads, expected):
        assert got.dtype == dtype, f"{name}: {got.dtype}"
        assert_close(f"{case}, {ranks} ranks, {name}", got, want, TOLERANCE[dtype])
    if key_valid is not None:  # the batch row that is all padding: zero output, zero gradients
        assert np.all(out[-1] == 0) and np.all(grads[0][-1] == 0)


@pytest.mark.parametrize("ranks", [2, 3])
def test_ring_over_mpi_equals_the_reference_core(tmp_path, ranks):
    result_path = tmp_path / "ring.npz"
    run_mpi(ranks, [str(ROOT / "tests" / "mpi" / "ring_worker.py"), str(result_path)], timeout=120)
    results = np.load(result_path)
    for case, (q, k, v, dout, key_valid, causal) in ring_cases().items():
        expected = reference(q, k, v, dout, key_valid, causal)
        for name, want in zip(("out", "dq", "dk", "dv"), expected):
            assert_close(f"{case} over MPI, {ranks} ranks, {name}", results[f"{case}/{name}"], want, TOLERANCE[np.float64])
