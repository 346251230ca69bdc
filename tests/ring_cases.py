"""The inputs on which ring attention is checked against the reference core, shared by the
simulated tests and the MPI worker (tests/mpi/ring_worker.py): padding, causal, fully
masked rows, and lengths that do not divide by the number of ranks."""

import numpy as np


def ring_cases(dtype=np.float64, heads=2):
    """{name: (q, k, v, dout, key_valid or None, causal)}, q, k, v, dout (B, H, T, Dh), H = ``heads``
    (head-parallel attention, tests/test_ulysses.py, needs H divisible by the ranks)."""
    rng = np.random.default_rng(13)
    cases = {}
    for name, (batch, length, head_dim, padded, causal) in {
        "plain": (2, 8, 4, False, False),
        "odd_length": (2, 11, 4, False, False),
        "padding": (3, 10, 4, True, False),
        "causal": (2, 9, 4, False, True),
        "causal_padding": (3, 13, 4, True, True),
    }.items():
        q, k, v, dout = (rng.standard_normal((batch, heads, length, head_dim)).astype(dtype) for _ in range(4))
        key_valid = None
        if padded:
            lengths = rng.integers(1, length, size=batch)
            key_valid = np.arange(length)[None, :] < lengths[:, None]  # (B, T): right padding
            key_valid[-1] = False  # a row of the batch that is all padding: every query fully masked
            if causal:
                key_valid[0, :3] = False  # left padding: the first queries see no key at all
        cases[name] = (q, k, v, dout, key_valid, causal)
    return cases


def reference_mask(key_valid, length, causal):
    """The same mask for the reference core: ~(B, 1, T, T) bool, or None."""
    mask = None if key_valid is None else key_valid[:, None, None, :]
    if causal:
        allowed = np.tril(np.ones((length, length), dtype=bool))[None, None]
        mask = allowed if mask is None else mask & allowed
    return mask
