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

Messages are plain contiguous NumPy buffers (mpi4py's upper-case Isend/Irecv, no pickling,
no copies): K, V, dK and dV as (B, H, Sb, Dh) arrays, the padding mask as (B, Sb) uint8.
"""

import numpy as np

from .ring_attention import PAIR_BLOCK, KVBlock, RingBackward, RingForward, block_bounds

TAG_K, TAG_V, TAG_VALID, TAG_DK, TAG_DV = 11, 12, 13, 14, 15


def _check_block(comm, x, total_len):
    bounds = block_bounds(total_len, comm.Get_size())
    start, stop = bounds[comm.Get_rank()]
    if x.shape[2] != stop - start:
        raise ValueError(f"rank {comm.Get_rank()} holds {x.shape[2]} positions; block_bounds({total_len}, "
                         f"{comm.Get_size()}) gives it rows {start}:{stop}")
    return bounds


class _Hop:
    """One hop of one block: posted at once, waited on later. K and V go as they are (no
    copy: the block is held until the hop is waited on), into fresh arrays for the next."""

    def __init__(self, comm, block, bounds, with_valid):
        size, rank = comm.Get_size(), comm.Get_rank()
        right, left = (rank + 1) % size, (rank - 1) % size
        self.index = (block.index - 1) % size  # what rank − 1 holds now: the block we get next
        start, stop = bounds[self.index]
        batch, heads, _, head_dim = block.k.shape
        self.sent = [np.ascontiguousarray(block.k), np.ascontiguousarray(block.v)]  # (B, H, Sb, Dh) each
        self.k_in, self.v_in = (np.empty((batch, heads, stop - start, head_dim), dtype=block.k.dtype)
                                for _ in range(2))  # (B, H, Sb', Dh)
        self.requests = [comm.Isend(self.sent[0], dest=right, tag=TAG_K), comm.Isend(self.sent[1], dest=right, tag=TAG_V),
                         comm.Irecv(self.k_in, source=left, tag=TAG_K), comm.Irecv(self.v_in, source=left, tag=TAG_V)]
        self.valid_in = None
        if with_valid:
            self.sent.append(np.ascontiguousarray(block.key_valid, dtype=np.uint8))  # (B, Sb)
            self.valid_in = np.empty((batch, stop - start), dtype=np.uint8)  # (B, Sb')
            self.requests += [comm.Isend(self.sent[2], dest=right, tag=TAG_VALID),
                              comm.Irecv(self.valid_in, source=left, tag=TAG_VALID)]

    def wait(self):
        from mpi4py import MPI

        MPI.Request.Waitall(self.requests)
        valid = None if self.valid_in is None else self.valid_in.astype(bool)
        return KVBlock(self.index, self.k_in, self.v_in, valid)


def _post_accumulator(comm, accumulator, incoming_shape):
    """Send (dk, dv) to rank + 1 and post the receive of the next pair from rank − 1."""
    size, rank = comm.Get_size(), comm.Get_rank()
    right, left = (rank + 1) % size, (rank - 1) % size
    received = tuple(np.empty(incoming_shape, dtype=accumulator[0].dtype) for _ in range(2))  # (B, H, Sb', Dh)
    sent = (accumulator, [comm.Isend(accumulator[0], dest=right, tag=TAG_DK),
                          comm.Isend(accumulator[1], dest=right, tag=TAG_DV)])
    incoming = (received, [comm.Irecv(received[0], source=left, tag=TAG_DK),
                           comm.Irecv(received[1], source=left, tag=TAG_DV)])
    return sent, incoming


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
    batch, heads, _, head_dim = q.shape
    state = RingBackward(dout, q, out, lse, rank, bounds, causal, block_size)
    block = KVBlock(rank, k, v, key_valid)
    sent = incoming = None  # the accumulator of the block in use arrives from rank − 1 (none at step 0)
    for step in range(size):
        hop = _Hop(comm, block, bounds, key_valid is not None) if step < size - 1 else None
        terms = state.step(block)  # this rank's (dk, dv) of the block, or None for a skipped pair
        if incoming is None:  # step 0: the accumulator starts here, at its owner, as this rank's terms
            accumulator = terms if terms is not None else (np.zeros_like(block.k), np.zeros_like(block.v))
        else:
            MPI.Request.Waitall(incoming[1])
            accumulator = incoming[0]
            if terms is not None:  # in place: the received arrays are this rank's to change
                accumulator[0][...] += terms[0]
                accumulator[1][...] += terms[1]
        if sent is not None:
            MPI.Request.Waitall(sent[1])  # the previous accumulator's buffers are free only now
        start, stop = bounds[(block.index - 1) % size]  # the block of the next step (last: our own)
        sent, incoming = _post_accumulator(comm, accumulator, (batch, heads, stop - start, head_dim))
        if hop is not None:
            block = hop.wait()
    # the last hop brought this rank's own accumulator home
    MPI.Request.Waitall(incoming[1] + sent[1])
    return state.dq, incoming[0][0], incoming[0][1]
