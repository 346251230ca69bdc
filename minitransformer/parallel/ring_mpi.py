"""Ring attention over MPI: the algorithm of ring_attention.py, one rank per process.

Size letters as there: B batch, H heads, Tr this rank's block, Sb a travelling block, Dh.

    mpiexec -n 4 python -m mpi4py my_script.py

    from mpi4py import MPI
    from minitransformer.parallel.ring_mpi import ring_attention_forward_mpi, ring_attention_backward_mpi
    out, lse = ring_attention_forward_mpi(MPI.COMM_WORLD, q, k, v, total_len, key_valid, causal=True)
    dq, dk, dv = ring_attention_backward_mpi(MPI.COMM_WORLD, dout, q, k, v, out, lse, total_len, key_valid, True)

Each process passes its own block (rows block_bounds(total_len, size)[rank] of the
sequence) and gets its block of the result. The steps are RingForward.step and
RingBackward.step, exactly as in the simulation; only the hop differs. Each step first
posts the hop of the block it is about to use (Isend to rank + 1, Irecv from rank − 1),
then computes on it, then waits: the wire and the arithmetic run at the same time, and a
step costs max(compute, transfer) instead of their sum.

The backward has a second message per hop, the dK/dV accumulator. It cannot leave before
this rank has added its terms, so each step computes its terms into fresh arrays while the
accumulator of the same block is still arriving from rank − 1, then waits for it, adds,
and sends it on; after the last step one more hop brings every accumulator home.

Messages are plain contiguous NumPy buffers (mpi4py's upper-case Isend/Irecv, no pickling):
K and V stacked into one (2, B, H, Sb, Dh) array, the padding mask as (B, Sb) uint8.
"""

import numpy as np

from .ring_attention import PAIR_BLOCK, KVBlock, RingBackward, RingForward, add_terms, block_bounds

TAG_KV, TAG_VALID, TAG_DKV = 11, 12, 13


def _check_block(comm, x, total_len):
    bounds = block_bounds(total_len, comm.Get_size())
    start, stop = bounds[comm.Get_rank()]
    if x.shape[2] != stop - start:
        raise ValueError(f"rank {comm.Get_rank()} holds {x.shape[2]} positions; block_bounds({total_len}, "
                         f"{comm.Get_size()}) gives it rows {start}:{stop}")
    return bounds


class _Hop:
    """One hop of one block: posted at once, waited on later."""

    def __init__(self, comm, block, bounds, with_valid):
        size, rank = comm.Get_size(), comm.Get_rank()
        right, left = (rank + 1) % size, (rank - 1) % size
        self.index = (block.index - 1) % size  # what rank − 1 holds now: the block we get next
        start, stop = bounds[self.index]
        batch, heads, _, head_dim = block.k.shape
        self.kv_out = np.ascontiguousarray(np.stack([block.k, block.v]))  # (2, B, H, Sb, Dh)
        self.kv_in = np.empty((2, batch, heads, stop - start, head_dim), dtype=block.k.dtype)  # (2, B, H, Sb', Dh)
        self.requests = [comm.Isend(self.kv_out, dest=right, tag=TAG_KV),
                         comm.Irecv(self.kv_in, source=left, tag=TAG_KV)]
        self.valid_in = None
        if with_valid:
            self.valid_out = np.ascontiguousarray(block.key_valid, dtype=np.uint8)  # (B, Sb)
            self.valid_in = np.empty((batch, stop - start), dtype=np.uint8)  # (B, Sb')
            self.requests += [comm.Isend(self.valid_out, dest=right, tag=TAG_VALID),
                              comm.Irecv(self.valid_in, source=left, tag=TAG_VALID)]

    def wait(self):
        from mpi4py import MPI

        MPI.Request.Waitall(self.requests)
        valid = None if self.valid_in is None else self.valid_in.astype(bool)
        return KVBlock(self.index, self.kv_in[0], self.kv_in[1], valid)


def ring_attention_forward_mpi(comm, q, k, v, total_len, key_valid=None, causal=False, block_size=PAIR_BLOCK):
    """This rank's q, k, v (B, H, Tr, Dh), key_valid (B, Tr) bool or None
    -> this rank's out (B, H, Tr, Dh), lse (B, H, Tr)."""
    bounds = _check_block(comm, q, total_len)
    size, rank = comm.Get_size(), comm.Get_rank()
    state = RingForward(q, rank, bounds, causal, block_size)
    block = KVBlock(rank, k, v, key_valid)
    for step in range(size):
        # post the hop of this block before computing on it
        hop = _Hop(comm, block, bounds, key_valid is not None) if step < size - 1 else None
        state.step(block)
        if hop is not None:
            block = hop.wait()
    return state.out, state.lse


def ring_attention_backward_mpi(comm, dout, q, k, v, out, lse, total_len, key_valid=None, causal=False,
                                block_size=PAIR_BLOCK):
    """This rank's dout, q, k, v, out (B, H, Tr, Dh) and lse (B, H, Tr) from the forward
    -> this rank's dq, dk, dv (B, H, Tr, Dh)."""
    from mpi4py import MPI

    bounds = _check_block(comm, q, total_len)
    size, rank = comm.Get_size(), comm.Get_rank()
    right, left = (rank + 1) % size, (rank - 1) % size
    state = RingBackward(dout, q, out, lse, rank, bounds, causal, block_size)
    block = KVBlock(rank, k, v, key_valid)
    incoming = None  # the accumulator of the block in use, arriving from rank − 1 (none at step 0)
    sent = None
    for step in range(size):
        hop = _Hop(comm, block, bounds, key_valid is not None) if step < size - 1 else None
        terms = state.step(block)  # (dk, dv) of this rank, or None for a skipped pair
        if incoming is None:
            accumulator = (np.zeros_like(block.k), np.zeros_like(block.v))
        else:
            MPI.Request.Waitall(incoming[1])
            accumulator = (incoming[0][0], incoming[0][1])
        accumulator = add_terms(accumulator, terms)
        if sent is not None:
            MPI.Request.Waitall(sent[1])  # the previous send's buffer may be reused only now
        # send this block's accumulator on, and post the receive of the next one
        out_buffer = np.ascontiguousarray(np.stack(accumulator))  # (2, B, H, Sb, Dh)
        next_index = (block.index - 1) % size
        start, stop = bounds[next_index]
        batch, heads, _, head_dim = q.shape
        in_buffer = np.empty((2, batch, heads, stop - start, head_dim), dtype=out_buffer.dtype)  # (2, B, H, Sb', Dh)
        sent = (out_buffer, [comm.Isend(out_buffer, dest=right, tag=TAG_DKV)])
        incoming = (in_buffer, [comm.Irecv(in_buffer, source=left, tag=TAG_DKV)])
        if hop is not None:
            block = hop.wait()
    # the last hop brought this rank's own accumulator home
    MPI.Request.Waitall(incoming[1] + sent[1])
    return state.dq, incoming[0][0], incoming[0][1]
