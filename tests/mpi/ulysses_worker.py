"""Run by tests/test_ulysses.py under `mpiexec -n P`: head-parallel attention over MPI on the
cases of ring_cases(heads=12), each rank's blocks gathered to rank 0 and saved to argv[1]."""

import sys
from pathlib import Path

import numpy as np
from mpi4py import MPI

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ring_cases import ring_cases  # noqa: E402 (tests/ring_cases.py)

from minitransformer.parallel.ring_attention import block_bounds  # noqa: E402
from minitransformer.parallel.ulysses import ulysses_attention_backward_mpi, ulysses_attention_forward_mpi  # noqa: E402

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
results = {}
for name, (q, k, v, dout, key_valid, causal) in ring_cases(heads=12).items():
    start, stop = block_bounds(q.shape[2], size)[rank]
    mine = lambda x: np.ascontiguousarray(x[:, :, start:stop])  # noqa: E731
    valid = None if key_valid is None else np.ascontiguousarray(key_valid[:, start:stop])
    out, cache = ulysses_attention_forward_mpi(comm, mine(q), mine(k), mine(v), q.shape[2], valid, causal)
    grads = ulysses_attention_backward_mpi(comm, mine(dout), cache, q.shape[2])
    for label, piece in zip(("out", "dq", "dk", "dv"), (out,) + grads):
        gathered = comm.gather(piece, root=0)
        if rank == 0:
            results[f"{name}/{label}"] = np.concatenate(gathered, axis=2)
if rank == 0:
    np.savez(sys.argv[1], **results)
