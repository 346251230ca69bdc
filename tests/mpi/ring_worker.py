"""Run by tests/test_ring_attention.py under `mpiexec -n P`: ring attention over MPI on the
cases of ring_cases(), each rank's blocks gathered to rank 0 and saved to argv[1] (.npz)."""

import sys
from pathlib import Path

import numpy as np
from mpi4py import MPI

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ring_cases import ring_cases  # noqa: E402 (tests/ring_cases.py)

from minitransformer.parallel.ring_attention import block_bounds  # noqa: E402
from minitransformer.parallel.ring_mpi import ring_attention_backward_mpi, ring_attention_forward_mpi  # noqa: E402

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
results = {}
for name, (q, k, v, dout, key_valid, causal) in ring_cases().items():
    start, stop = block_bounds(q.shape[2], size)[rank]
    mine = lambda x: np.ascontiguousarray(x[:, :, start:stop])  # noqa: E731
    valid = None if key_valid is None else np.ascontiguousarray(key_valid[:, start:stop])
    out, lse = ring_attention_forward_mpi(comm, mine(q), mine(k), mine(v), q.shape[2], valid, causal, block_size=3)
    grads = ring_attention_backward_mpi(comm, mine(dout), mine(q), mine(k), mine(v), out, lse, q.shape[2], valid, causal,
                                        block_size=3)
    for label, piece in zip(("out", "lse", "dq", "dk", "dv"), (out, lse) + grads):
        gathered = comm.gather(piece, root=0)
        if rank == 0:
            results[f"{name}/{label}"] = np.concatenate(gathered, axis=2)
if rank == 0:
    np.savez(sys.argv[1], **results)
