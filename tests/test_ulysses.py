"""Head-parallel attention (minitransformer/parallel/ulysses.py) against the reference core,
forward and backward: simulated on 1 to 4 ranks, and over MPI with 2 and 3
processes started from the test."""

import numpy as np
import pytest

from minitransformer.layers.attention import attention_backward, attention_forward
from minitransformer.parallel.ulysses import pieces_by_heads, ulysses_attention_simulated
from mpi_launch import ROOT, run_mpi
from ring_cases import reference_mask, ring_cases

# float64: each head's attention is the reference core itself, on one rank; only the
# layout changes, so the agreement is exact up to the order of a few sums
TOLERANCE = {np.float64: 1e-12, np.float32: 1e-5}
HEADS = 12  # divisible by every rank count tested


def reference(q, k, v, dout, key_valid, causal):
    mask = reference_mask(key_valid, q.shape[2], causal)
    out, probs = attention_forward(q, k, v, mask)
    return (out,) + attention_backward(dout, q, k, v, probs)


def assert_close(name, got, expected, tol):
    assert np.all(np.isfinite(got)), f"{name}: not finite"
    error = np.max(np.abs(got - expected)) / max(1.0, np.max(np.abs(expected)))
    assert error <= tol, f"{name}: relative error {error:.2e} > {tol:.0e}"


@pytest.mark.parametrize("ranks, dtype", [(1, np.float64), (2, np.float64), (3, np.float64), (4, np.float64),
                                          (3, np.float32)])
@pytest.mark.parametrize("case", list(ring_cases()))
def test_simulated_ulysses_equals_the_reference_core(case, ranks, dtype):
    q, k, v, dout, key_valid, causal = ring_cases(dtype, heads=HEADS)[case]
    expected = reference(q, k, v, dout, key_valid, causal)
    got = ulysses_attention_simulated(q, k, v, dout, ranks, key_valid, causal)
    for name, value, want in zip(("out", "dq", "dk", "dv"), got, expected):
        assert value.dtype == dtype, f"{name}: {value.dtype}"
        assert_close(f"{case}, {ranks} ranks, {name}", value, want, TOLERANCE[dtype])
    if key_valid is not None:  # the batch row that is all padding: zero output, zero gradients
        assert np.all(got[0][-1] == 0) and np.all(got[1][-1] == 0)


def test_each_rank_sends_every_other_rank_its_heads():
    x = np.arange(2 * 6 * 3 * 1).reshape(2, 6, 3, 1)  # (B, H, Tr, Dh)
    pieces = pieces_by_heads(x, 3)
    assert [piece.shape for piece in pieces] == [(2, 2, 3, 1)] * 3
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), x)


def test_heads_that_do_not_divide_by_the_ranks_are_refused_in_one_line():
    q = np.zeros((1, 4, 6, 2))
    with pytest.raises(ValueError, match="H = 4 does not divide by 3"):
        ulysses_attention_simulated(q, q, q, q, 3)


@pytest.mark.parametrize("ranks", [2, 3])
def test_ulysses_over_mpi_equals_the_reference_core(tmp_path, ranks):
    result_path = tmp_path / "ulysses.npz"
    run_mpi(ranks, [str(ROOT / "tests" / "mpi" / "ulysses_worker.py"), str(result_path)], timeout=120)
    results = np.load(result_path)
    for case, (q, k, v, dout, key_valid, causal) in ring_cases(heads=HEADS).items():
        expected = reference(q, k, v, dout, key_valid, causal)
        for name, want in zip(("out", "dq", "dk", "dv"), expected):
            assert_close(f"{case} over MPI, {ranks} ranks, {name}", results[f"{case}/{name}"], want,
                         TOLERANCE[np.float64])
